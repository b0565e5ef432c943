#!/usr/bin/env bash
# One command on a fresh machine: a virtualenv with dcae_tf installed, then a
# held-out photograph compressed and decompressed with the shipped model,
# printing its bpp and PSNR.
#
#   bash bin/quickstart.sh [IMAGE]      (default: data/test/coffee.png)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
IMAGE=${1:-data/test/coffee.png}
OUT=${TMPDIR:-/tmp}/dcae_quickstart
mkdir -p "$OUT"

if [ ! -x .venv/bin/dcae-tf ]; then
  echo "== installing dcae_tf into .venv (once; a few minutes)"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e .
fi

echo "== shipped models"
.venv/bin/dcae-tf models
NAME=$(basename "$IMAGE")
echo "== compress $IMAGE"
.venv/bin/dcae-tf compress "$IMAGE" "$OUT/$NAME.dcae"
echo "== decompress"
.venv/bin/dcae-tf decompress "$OUT/$NAME.dcae" "$OUT/$NAME.dcae.png" \
    --compare_to "$IMAGE"
echo "== files in $OUT"
