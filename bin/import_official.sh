#!/usr/bin/env bash
# One command from an official DCAE checkpoint (the authors' PyTorch
# .pth.tar) to an export that `dcae-tf`, the model server and evaluation use:
# bin/convert.py writes a model directory (also a start for --init_from
# fine-tuning), then bin/export.py writes saved_models/NAME/<next version>/.
#
#   bash bin/import_official.sh CHECKPOINT.pth.tar LAMBDA NAME [bin/export.py flags]
#   bash bin/import_official.sh 0.0067checkpoint_best.pth.tar 0.0067 dcae-paper-mse-0067 \
#       --weight_dtype float16
#
# Relative paths are taken from the current directory, as bin/*.py take them.
# Environment:
#   PRESET    architecture of the checkpoint (default paper: the official one)
#   METRIC    mse or ms-ssim (default: from LAMBDA, see below)
#   RUNS_DIR  parent of the converted model directory RUNS_DIR/NAME (default runs)
#   PYTHON    interpreter (default: the repository's .venv, else python3)
# Reading a .pth needs torch: pip install -e '.[torch]'.
set -euo pipefail

ME=import_official
# The official lambdas of the two metrics do not overlap: MSE 0.0018 ... 0.05,
# MS-SSIM 2.40 ... 60.5, so a lambda from this value up is an MS-SSIM model.
MSSSIM_LAMBDA_MIN=1

die() { echo "$ME: error: $*" >&2; exit 1; }

[ $# -ge 3 ] || die "usage: bin/import_official.sh CHECKPOINT.pth.tar LAMBDA NAME [bin/export.py flags]"
CHECKPOINT=$1 LAMBDA=$2 NAME=$3
shift 3
[ -f "$CHECKPOINT" ] || die "checkpoint not found: $CHECKPOINT"
[[ $LAMBDA =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] \
  || die "LAMBDA must be a positive number, got '$LAMBDA'"
awk -v l="$LAMBDA" 'BEGIN { exit !(l > 0) }' \
  || die "LAMBDA must be a positive number, got '$LAMBDA'"
# NAME becomes a directory under RUNS_DIR and under the models directory.
[[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
  || die "NAME must be letters, digits, '.', '_' or '-', got '$NAME'"

if [ -z "${METRIC:-}" ]; then
  if awk -v l="$LAMBDA" -v m="$MSSSIM_LAMBDA_MIN" 'BEGIN { exit !(l >= m) }'; then
    METRIC=ms-ssim
  else
    METRIC=mse
  fi
fi
PRESET=${PRESET:-paper}
MODEL_DIR=${RUNS_DIR:-runs}/$NAME
[ ! -e "$MODEL_DIR" ] || die "$MODEL_DIR exists; remove it or set RUNS_DIR"

BIN=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x "$BIN/../.venv/bin/python" ]; then PY=$BIN/../.venv/bin/python; else PY=python3; fi
fi

echo "== convert $CHECKPOINT (preset $PRESET, lambda $LAMBDA, $METRIC) -> $MODEL_DIR"
"$PY" "$BIN/convert.py" --checkpoint "$CHECKPOINT" --preset "$PRESET" \
    --lmbda "$LAMBDA" --metric "$METRIC" --output "$MODEL_DIR"
echo "== export $NAME"
"$PY" "$BIN/export.py" --checkpoint "$MODEL_DIR" --name "$NAME" "$@"
