#!/usr/bin/env bash
# The zoo's training recipe: one base model at a middle rate, then a chain of
# fine-tunes up the rate axis, each from the one before (a fine-tune costs a
# fraction of a run from scratch, and a small step in λ converges fastest),
# then exported with float16 weights and a model card each.
#
#   bin/train_zoo.sh train    # base, then every fine-tune (resumes; rerun after a kill)
#   bin/train_zoo.sh export   # saved_models/dcae-small-mse-<λ digits>, cards, DEFAULT
#
# Every stage checkpoints into runs/zoo_<λ digits> and resumes from there when
# rerun; a stage whose run has reached its step count is skipped. The base
# starts from INIT (default: the shipped 0.0035 model's export), the first
# fine-tune from the base's newest checkpoint when it first starts, every
# later one from the fine-tune before it. Every stage decays its learning
# rate x0.1 over its last fifth. Settings come from the environment:
#   BASE_LAMBDA (0.0067)  FT_LAMBDAS ("0.013 0.025 0.05", in chain order)
#   SHIP_FT_LAMBDAS ("0.025 0.05": the fine-tunes export puts in the zoo;
#   the others are steps of the chain, left out for the size budget)
#   BASE_STEPS (2000)     FT_STEPS (600)
#   KEEP_LAMBDAS ("0.0018 0.0035": models already in MODELS_DIR that stay
#   in the zoo; export re-exports them from their newest version as a new
#   one, evaluates them with the new models and rewrites their cards)
#   PRESET (small)  CROP (128)  BATCH (8)  GLOB (data/zoo_train)
#   PRECISION of a new run (default: mixed_bfloat16 where the CPU has
#   AVX512_BF16 or AMX, float32 elsewhere, as bench/train_throughput.py
#   measured, docs/training.md); a resumed run keeps its own
#   RUNS_DIR (runs)  MODELS_DIR (saved_models)  PYTHON (.venv/bin/python)
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT_DIR"
PYTHON="${PYTHON:-.venv/bin/python}"
PRESET="${PRESET:-small}"
BASE_LAMBDA="${BASE_LAMBDA:-0.0067}"
FT_LAMBDAS="${FT_LAMBDAS:-0.013 0.025 0.05}"
SHIP_FT_LAMBDAS="${SHIP_FT_LAMBDAS:-0.025 0.05}"
BASE_STEPS="${BASE_STEPS:-2000}"
FT_STEPS="${FT_STEPS:-600}"
INIT="${INIT:-saved_models/dcae-small-mse-0035}"
RUNS_DIR="${RUNS_DIR:-runs}"
MODELS_DIR="${MODELS_DIR:-saved_models}"
GLOB="${GLOB:-data/zoo_train}"
KEEP_LAMBDAS="${KEEP_LAMBDAS:-0.0018 0.0035}"

digits() { echo "${1#0.}"; }          # 0.0067 -> 0067
run_dir() { echo "$RUNS_DIR/zoo_$(digits "$1")"; }
model_name() { echo "dcae-$PRESET-mse-$(digits "$1")"; }

# bfloat16 pays only where the CPU computes it natively; emulated, it is
# slower than float32.
default_precision() {
  if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo 2>/dev/null; then
    echo mixed_bfloat16
  else
    echo float32
  fi
}

train() {  # lambda steps init lr decay_step
  local precision=()
  # A run that has started keeps the precision its model.json records
  # (bin/train.py refuses another), whichever machine resumes it.
  if [ -n "${PRECISION:-}" ] || [ ! -f "$(run_dir "$1")/model.json" ]; then
    precision=(--precision "${PRECISION:-$(default_precision)}")
  fi
  "$PYTHON" bin/train.py --preset "$PRESET" --lmbda "$1" \
    --train_glob "$GLOB" --val_glob data/test --model_path "$(run_dir "$1")" \
    --init_from "$3" --steps "$2" --learning_rate "$4" --lr_decay_step "$5" \
    --batch_size "${BATCH:-8}" --crop_size "${CROP:-128}" \
    "${precision[@]}" \
    --checkpoint_every 250 --validate_every 500 --log_every 50 \
    --keep_checkpoints 2
}

case "${1:-}" in
  train)
    [ -d "$GLOB" ] || bash bin/get_training_data.sh "$GLOB"
    train "$BASE_LAMBDA" "$BASE_STEPS" "$INIT" 3e-4 $((BASE_STEPS * 4 / 5))
    from="$(run_dir "$BASE_LAMBDA")"
    for lmbda in $FT_LAMBDAS; do
      train "$lmbda" "$FT_STEPS" "$from" 1e-4 $((FT_STEPS * 4 / 5))
      from="$(run_dir "$lmbda")"
    done
    ;;
  export)
    # The kept models are re-exported from their own exports (the same
    # weights, this code's graphs); the trained ones from their runs.
    for lmbda in $KEEP_LAMBDAS $BASE_LAMBDA $SHIP_FT_LAMBDAS; do
      source="$(run_dir "$lmbda")"
      case " $KEEP_LAMBDAS " in
        *" $lmbda "*) source="$MODELS_DIR/$(model_name "$lmbda")" ;;
      esac
      "$PYTHON" bin/export.py --checkpoint "$source" \
        --name "$(model_name "$lmbda")" --models_dir "$MODELS_DIR" \
        --weight_dtype float16
    done
    echo "$(model_name "$BASE_LAMBDA")" > "$MODELS_DIR/DEFAULT"
    models=()
    for lmbda in $KEEP_LAMBDAS $BASE_LAMBDA $SHIP_FT_LAMBDAS; do
      models+=("$MODELS_DIR/$(model_name "$lmbda")")
    done
    "$PYTHON" bin/evaluate.py --models "${models[@]}" --images data/test \
      --output results/zoo --model_cards \
      --qualities 1,2,3,5,7,10,15,20,30,50,70,90
    ;;
  *)
    echo "usage: bin/train_zoo.sh {train|export}" >&2
    exit 2
    ;;
esac
