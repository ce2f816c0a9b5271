#!/usr/bin/env bash
# The CUDA verification of docs/benchmarks.md in one go, for a machine with an NVIDIA GPU.
#
#   scripts/gpu_check.sh [OUT_DIR]          (default OUT_DIR: gpu-check)
#
# Env: PNEUMOSCOPE_BIN  a binary built elsewhere with `cargo build --release --features cuda` (for a GPU machine
#                       without a Rust toolchain); unset: built here.
#      PYTHON           an interpreter whose torch is a CUDA build (unset: .venv-torch, see scripts/bench_compare.sh).
#      T_PRE, T_DEMO, T_SYNTH, T_BENCH   time limits in seconds per step (defaults 90, 300, 180, 300).
#
# 0. prints the GPU (nvidia-smi) and runs one tiny training step on cuda, stopping at once if that fails;
# 1. the main job on the GPU: the three models and their ensemble on the built-in real subset (64 px, 6 epochs);
# 2. the three models on a SYNTHETIC set at 256 px, batch 16, one epoch; a GPU-trained checkpoint evaluated on the
#    CPU;
# 3. the side-by-side model benchmark against PyTorch on the same GPU (scripts/bench_compare.sh, DEVICE=cuda).
# Each step runs under its own time limit and the next one runs even if it fails or runs out of time, so one slow
# step does not hide the others. Everything printed goes to OUT_DIR/gpu-check.log as well.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-gpu-check}
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
if [ -n "${PNEUMOSCOPE_BIN:-}" ]; then
  bin=$PNEUMOSCOPE_BIN
else
  cargo build --release --features cuda || exit 1
  bin="$root/target/release/pneumoscope"
fi
export PNEUMOSCOPE_BIN=$bin
step() { echo; echo "== $(date -u +%H:%M:%S) $*"; }
timed() { # timed SECONDS CMD...: the command's wall time and exit status
  local t0=$SECONDS
  timeout "$@"
  local rc=$?
  echo "-- exit $rc after $((SECONDS - t0)) s"
  return $rc
}
step "0. the GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timed "${T_PRE:-90}" "$bin" bench model-one --model simple --size 64 --batch-size 16 --steps 2 --device cuda \
  || { echo "cuda does not run: stopping"; exit 1; }
step "1. the main job on cuda: three models and the ensemble, built-in real subset, 64 px, 6 epochs"
timed "${T_DEMO:-300}" "$bin" train --no-tui --device cuda --runs-dir "$out/runs-demo" | tee "$out/demo.log"
step "2. three models, SYNTHETIC, 256 px, batch 16, 1 epoch, cuda"
"$bin" data synth --out "$out/data" --train 800 --test 160 --seed 6 >/dev/null
timed "${T_SYNTH:-180}" "$bin" train --no-tui --data "$out/data" --device cuda --image-size 256 --batch-size 16 \
  --epochs 1 --runs-dir "$out/runs" | tee "$out/train.log"
run=$(ls -d "$out"/runs/* 2>/dev/null | tail -n 1)
if [ -n "$run" ] && [ -f "$run/checkpoints/resnet34-best.ckpt" ]; then
  step "a checkpoint trained on the GPU, evaluated on the CPU"
  timed 120 "$bin" eval --checkpoint "$run/checkpoints/resnet34-best.ckpt" --data "$out/data"
fi
step "3. side by side with PyTorch on the same GPU"
DEVICE=cuda STEPS=${STEPS:-10} timed "${T_BENCH:-300}" scripts/bench_compare.sh "${REPS:-2}" "${SIZES:-128,256}" \
  | tee "$out/bench.log"
step "done"
