#!/usr/bin/env bash
# The CUDA verification of docs/benchmarks.md in one go, for a machine with an NVIDIA GPU (needs no internet once
# the crates are vendored or cached; PyTorch comes from .venv-torch, see ../shared/pytorch-cpu-venv.sh).
#
#   scripts/gpu_check.sh [OUT_DIR]          (default OUT_DIR: gpu-check)
#
# 1. builds with --features cuda and prints the GPU (nvidia-smi);
# 2. trains all three models headless on a SYNTHETIC set at 256 px, batch 16, for 1 epoch on cuda, and checks a
#    checkpoint written on the GPU evaluates on the CPU;
# 3. runs the side-by-side model benchmark against PyTorch on the same GPU (scripts/bench_compare.sh, DEVICE=cuda).
# Everything it prints goes to OUT_DIR/*.log as well.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-gpu-check}
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
cargo build --release --features cuda
bin="$root/target/release/pneumoscope"
"$bin" data synth --out "$out/data" --train 800 --test 160 --seed 6 >/dev/null
echo "== train: 3 models, 256 px, batch 16, 1 epoch, cuda"
/usr/bin/time -v "$bin" train --no-tui --data "$out/data" --device cuda --image-size 256 --batch-size 16 \
  --epochs 1 --runs-dir "$out/runs" 2>&1 | tee "$out/train.log"
run=$(ls -d "$out"/runs/* | tail -n 1)
echo "== a checkpoint trained on the GPU, evaluated on the CPU"
"$bin" eval --checkpoint "$run/checkpoints/resnet34-best.ckpt" --data "$out/data"
echo "== side by side with PyTorch on the same GPU"
DEVICE=cuda STEPS=${STEPS:-10} scripts/bench_compare.sh "${REPS:-2}" "${SIZES:-128,256}" | tee "$out/bench.log"
