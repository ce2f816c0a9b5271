#!/usr/bin/env bash
# Downloads torchvision's ImageNet ResNet-34 weights (the file `torchvision.models.resnet34(weights="IMAGENET1K_V1")`
# fetches) on a machine with internet, checks the file's hash, and optionally writes a .safetensors copy.
#
#   scripts/fetch_resnet34_weights.sh [OUT_DIR] [--safetensors]
#
# Then train with it:  pneumoscope train --pretrained OUT_DIR/resnet34-b627a593.pth
# (or set `pretrained = "…"` under [training] in config.toml). For an offline machine, copy the file over (scp,
# USB) and point `--pretrained` at it: pneumoscope never downloads anything.
#
# The hash check is torchvision's own: the hex digits after the last "-" in the file name (b627a593) must be the
# start of the file's SHA-256. The full SHA-256 is printed so you can record it.
# --safetensors needs a Python with torch and safetensors (e.g. ../shared/pytorch-cpu-venv.sh, then
# `.venv-torch/bin/pip install safetensors`; set PYTHON=.venv-torch/bin/python).
set -euo pipefail

url=https://download.pytorch.org/models/resnet34-b627a593.pth
prefix=b627a593
out=.
convert=0
for arg in "$@"; do
  case "$arg" in
    --safetensors) convert=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) out=$arg ;;
  esac
done
mkdir -p "$out"
file="$out/resnet34-$prefix.pth"

if [ ! -s "$file" ]; then
  echo "downloading $url"
  if command -v curl >/dev/null; then
    curl -fL --retry 3 -o "$file.part" "$url"
  else
    wget -O "$file.part" "$url"
  fi
  mv "$file.part" "$file"
fi

sum=$(sha256sum "$file" | cut -d' ' -f1)
if [ "${sum:0:${#prefix}}" != "$prefix" ]; then
  echo "error: $file has SHA-256 $sum, which does not start with $prefix: damaged or not torchvision's file" >&2
  exit 1
fi
echo "ok: $file (SHA-256 $sum)"

if [ "$convert" = 1 ]; then
  py=${PYTHON:-python3}
  "$py" - "$file" "${file%.pth}.safetensors" <<'EOF'
import sys
import torch
from safetensors.torch import save_file

state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
save_file({k: v.contiguous() for k, v in state.items()}, sys.argv[2])
print(f"ok: {sys.argv[2]} ({len(state)} tensors)")
EOF
fi
