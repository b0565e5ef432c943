#!/usr/bin/env bash
# The zoo's training recipe: one base model at a middle rate, then a chain of
# fine-tunes up the rate axis, each from the one before (a fine-tune costs a
# fraction of a run from scratch, and a small step in λ converges fastest),
# then exported with float16 weights and a model card each. An optional
# polish trains chosen fine-tunes on at the base's learning rate (measured
# 2026-12-03 and not shipped: docs/models.md).
#
#   bin/train_zoo.sh train    # base, then every fine-tune (resumes; rerun after a kill)
#   bin/train_zoo.sh export   # saved_models/dcae-small-mse-<λ digits>, cards, DEFAULT
#
# Every stage checkpoints into runs/zoo_<λ digits> and resumes from there when
# rerun; a stage whose run has reached its step count is skipped. The base
# starts from INIT (default: the shipped 0.0035 model's export), the first
# fine-tune from the base's newest checkpoint when it first starts, every
# later one from the fine-tune before it. Every stage decays its learning
# rate x0.1 over its last fifth. The polish resumes each run of
# POLISH_LAMBDAS (Adam state kept) for POLISH_STEPS more, all at once with
# an even share of the cores each (measured 2026-12-03 on 2 cores: two
# one-thread runs 6.8 images/s in all, one two-thread run 4.9).
# Settings come from the environment:
#   BASE_LAMBDA (0.0067)  FT_LAMBDAS ("0.013 0.025 0.05", in chain order)
#   SHIP_FT_LAMBDAS ("0.025 0.05": the fine-tunes export puts in the zoo;
#   the others are steps of the chain, left out for the size budget)
#   BASE_STEPS (2000)     FT_STEPS (600)
#   POLISH_LAMBDAS ("": none)  POLISH_STEPS (1500)
#   KEEP_LAMBDAS ("0.0018 0.0035": models already in MODELS_DIR that stay
#   in the zoo; export evaluates them with the others and rewrites their
#   cards, and with FORCE_EXPORT=1 re-exports them from their newest
#   version as a new one)
#   FORCE_EXPORT (0; 1: re-export every model, changed or not)
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
POLISH_LAMBDAS="${POLISH_LAMBDAS:-}"
POLISH_STEPS="${POLISH_STEPS:-1500}"
INIT="${INIT:-saved_models/dcae-small-mse-0035}"
RUNS_DIR="${RUNS_DIR:-runs}"
MODELS_DIR="${MODELS_DIR:-saved_models}"
GLOB="${GLOB:-data/zoo_train}"
KEEP_LAMBDAS="${KEEP_LAMBDAS:-0.0018 0.0035}"

digits() { echo "${1#0.}"; }          # 0.0067 -> 0067
run_dir() { echo "$RUNS_DIR/zoo_$(digits "$1")"; }
model_name() { echo "dcae-$PRESET-mse-$(digits "$1")"; }

# An export's versions (numeric folders), oldest first; the newest; and
# the training step the newest export or a run (model.json) records.
versions() { ls "$1" 2>/dev/null | grep -E '^[0-9]+$' | sort -n || true; }
newest_version() { versions "$1" | tail -n 1; }
json_step() {
  "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("step", ""))' "$1" 2>/dev/null || true
}
exported_step() {
  local newest
  newest="$(newest_version "$1")"
  [ -n "$newest" ] && json_step "$1/$newest/metadata.json"
}
run_step() {
  if [ -f "$1/model.json" ]; then json_step "$1/model.json"; else exported_step "$1"; fi
}

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
    polish=($POLISH_LAMBDAS)
    if [ "${#polish[@]}" -gt 0 ] && [ "$POLISH_STEPS" -gt 0 ]; then
      threads=$(( $(nproc) / ${#polish[@]} ))
      [ "$threads" -ge 1 ] || threads=1
      last=$((FT_STEPS + POLISH_STEPS))
      pids=()
      for lmbda in "${polish[@]}"; do
        TF_NUM_INTRAOP_THREADS="$threads" \
          train "$lmbda" "$last" "$(run_dir "$lmbda")" 3e-4 \
          $((FT_STEPS + POLISH_STEPS * 4 / 5)) &
        pids+=($!)
      done
      for pid in "${pids[@]}"; do wait "$pid"; done
    fi
    ;;
  export)
    # A trained model is exported from its run when its newest export holds
    # an earlier step (or there is none); with FORCE_EXPORT=1 every model,
    # the kept ones from their own exports (the same weights, this code's
    # graphs). A new export's older versions are removed: each model's
    # weights are kept once, and saved_models/ within its budget.
    for lmbda in $KEEP_LAMBDAS $BASE_LAMBDA $SHIP_FT_LAMBDAS; do
      name="$(model_name "$lmbda")"
      source="$(run_dir "$lmbda")"
      case " $KEEP_LAMBDAS " in
        *" $lmbda "*) source="$MODELS_DIR/$name" ;;
      esac
      step="$(run_step "$source")"
      if [ "${FORCE_EXPORT:-0}" != 1 ] && [ -n "$step" ] && \
          [ "$(exported_step "$MODELS_DIR/$name")" = "$step" ]; then
        echo "$name: its export already holds step $step"
        continue
      fi
      "$PYTHON" bin/export.py --checkpoint "$source" \
        --name "$name" --models_dir "$MODELS_DIR" \
        --weight_dtype float16
      newest="$(newest_version "$MODELS_DIR/$name")"
      for version in $(versions "$MODELS_DIR/$name"); do
        [ "$version" = "$newest" ] || rm -rf "${MODELS_DIR:?}/$name/$version"
      done
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
