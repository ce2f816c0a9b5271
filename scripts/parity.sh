#!/usr/bin/env bash
# Trains one model with the seed project's recipe in pneumoscope and in PyTorch (scripts/train_pytorch.py) on
# exactly the same train/validation split, for each seed, one after the other on this machine, and prints the
# comparison table of docs/evaluation.md ("Parity with PyTorch"): validation accuracy and AUC per seed with their
# mean, and the wall time until validation accuracy first reached 90 %.
#
# Usage: scripts/parity.sh DATA MODEL SIZE EPOCHS [SEEDS...]      (seeds default: 1 2 3)
#   e.g. scripts/parity.sh ../shared/data/kaggle-224 regularized 128 5
# Needs a release build (cargo build --release) and a PyTorch virtualenv (../shared/pytorch-cpu-venv.sh; its
# python is taken from $PYTHON or .venv-torch/bin/python; the binary from $PNEUMOSCOPE_BIN, if set). Results go to
# target/parity/MODEL-SIZE-eEPOCHS, or with $PARITY_TAG set (e.g. PARITY_TAG=avx2 for a run with PNEUMOSCOPE_GEMM=avx2)
# to target/parity/MODEL-SIZE-eEPOCHS-TAG.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1 model=$2 size=$3 epochs=$4
shift 4
if [ $# -eq 0 ]; then seeds=(1 2 3); else seeds=("$@"); fi
py=${PYTHON:-.venv-torch/bin/python}
bin=${PNEUMOSCOPE_BIN:-target/release/pneumoscope}
out=target/parity/$model-$size-e$epochs${PARITY_TAG:+-$PARITY_TAG}
mkdir -p "$out"
# The seed project's recipe, spelled out (pneumoscope's defaults for real data differ: docs/evaluation.md).
cat > "$out/seed-recipe.toml" <<'TOML'
[data]
rotation_degrees = 90.0
scale = 0.0
translate = 0.0
brightness = 0.0
contrast = 0.0
[training]
max_lr = 0.001
weight_decay = 0.0001
grad_clip = 0.1
batch_size = 16
class_weights = "none"
sampler = "shuffle"
label_smoothing = 0.0
[evaluation]
tta = 1
TOML
for seed in "${seeds[@]}"; do
  "$bin" data split --config "$out/seed-recipe.toml" --data "$data" --seed "$seed" --out "$out/split-s$seed.json"
  if [ ! -f "$out/ours-s$seed.done" ]; then
    rm -rf "$out/ours-s$seed"
    "$bin" train --no-tui --config "$out/seed-recipe.toml" --data "$data" --models "$model" --image-size "$size" \
      --epochs "$epochs" --seed "$seed" --runs-dir "$out/ours-s$seed" > "$out/ours-s$seed.log" 2>&1
    touch "$out/ours-s$seed.done"
  fi
  if [ ! -f "$out/torch-s$seed.done" ]; then
    "$py" scripts/train_pytorch.py --split "$out/split-s$seed.json" --model "$model" --size "$size" \
      --epochs "$epochs" --seed "$seed" --threads 2 > "$out/torch-s$seed.jsonl"
    touch "$out/torch-s$seed.done"
  fi
done
python3 scripts/parity_table.py "$out"
