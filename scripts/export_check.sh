#!/usr/bin/env bash
# Exports every model of a run (`pneumoscope export`), loads each into PyTorch (scripts/load_export.py) and
# compares P(pneumonia) with `pneumoscope predict` on the same images, twice:
#   1. the images as given: each side decodes and resizes them itself (Pillow in PyTorch's, fast_image_resize in
#      pneumoscope), so 1-level rounding differences of the resize reach the figures;
#   2. the same images already at the model's input size (8-bit PNG made by Pillow): both sides see identical
#      pixels, so any difference is the exported weights' or the architecture's. Must agree to 1e-4.
#
# Usage: scripts/export_check.sh RUN_DIR IMAGE...
# Needs a release build and the PyTorch virtualenv (../shared/pytorch-cpu-venv.sh; $PYTHON or .venv-torch/bin/python;
# the binary from $PNEUMOSCOPE_BIN, if set). Output goes to target/export-check/.
set -euo pipefail
cd "$(dirname "$0")/.."
run=$1
shift
py=${PYTHON:-.venv-torch/bin/python}
bin=${PNEUMOSCOPE_BIN:-target/release/pneumoscope}
out=target/export-check
rm -rf "$out"
mkdir -p "$out"
status=0
for ckpt in "$run"/checkpoints/*-best.ckpt; do
  model=$(basename "$ckpt" -best.ckpt)
  "$bin" export --checkpoint "$ckpt" --out "$out/$model" > /dev/null
  size=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["input"]["image_size"])' "$out/$model/model.json")
  mkdir -p "$out/$model/png"
  "$py" - "$size" "$out/$model/png" "$@" <<'PY'
import os, sys
from PIL import Image
size, dest = int(sys.argv[1]), sys.argv[2]
for i, p in enumerate(sys.argv[3:]):
    Image.open(p).convert("L").resize((size, size), Image.BILINEAR).save(os.path.join(dest, f"{i:03d}.png"))
PY
  "$bin" predict --json --checkpoint "$ckpt" "$@" > "$out/$model/predict.jsonl" 2> /dev/null
  echo -n "as given:            "
  "$py" scripts/load_export.py "$out/$model" "$@" --compare "$out/$model/predict.jsonl" --tolerance 1 2>&1 > /dev/null
  "$bin" predict --json --checkpoint "$ckpt" "$out/$model"/png/*.png > "$out/$model/predict-png.jsonl" 2> /dev/null
  echo -n "at the input size:   "
  "$py" scripts/load_export.py "$out/$model" "$out/$model"/png/*.png --compare "$out/$model/predict-png.jsonl" \
    2>&1 > /dev/null || status=1
done
exit $status
