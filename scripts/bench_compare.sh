#!/usr/bin/env bash
# Side-by-side benchmark: pneumoscope against PyTorch on this machine, the same three architectures (parameter
# counts printed), sizes, batch and thread count, run alternately (ours, PyTorch, ours, PyTorch, …) so both see
# the same machine state. Prints medians and, per figure, `ratio ours/PyTorch <figure> <model> <size>px: R`
# (training and inference images/s: higher is better for us; latency and peak memory: lower is better).
# Usage: scripts/bench_compare.sh [REPS] [SIZES] [MODELS]      defaults: 3 "64,128,256" "simple,regularized,resnet34"
# Env: STEPS (timed steps per measurement, default 3), BATCH (default 16), DEVICE (cpu, or cuda / cuda:N to compare
# on a GPU: ours is then built with --features cuda, and PyTorch's wheel from PyPI is its CUDA build).
# Each run's JSON line: target/bench-compare/{ours,torch}.jsonl (replaced by the next run).
# Installs PyTorch CPU into .venv-torch with ../shared/pytorch-cpu-venv.sh when missing (PyPI, ~2.5 GB of wheels),
# unless PYTHON names an interpreter that has torch (a CUDA machine's own, say). PNEUMOSCOPE_BIN: a prebuilt binary
# to use instead of building one (a machine without a Rust toolchain).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
reps=${1:-3}
sizes=${2:-64,128,256}
models=${3:-simple,regularized,resnet34}
steps=${STEPS:-3}
batch=${BATCH:-16}
device=${DEVICE:-cpu}
threads=$(nproc)
py=${PYTHON:-$(bash "$root/../shared/pytorch-cpu-venv.sh" "$root/.venv-torch" | tail -n 1)}
if [ -n "${PNEUMOSCOPE_BIN:-}" ]; then
  bin=$PNEUMOSCOPE_BIN
else
  if [ "$device" = cpu ]; then cargo build --release -q; else cargo build --release -q --features cuda; fi
  bin="$root/target/release/pneumoscope"
fi
# Every run's JSON (per-step times included) stays in target/bench-compare/ for a look at what the medians hide.
out="$root/target/bench-compare"
mkdir -p "$out"
rm -f "$out/ours.jsonl" "$out/torch.jsonl"
echo "parameters (PyTorch):"; "$py" scripts/bench_pytorch.py --params | sed 's/^/  /'
echo "date $(date -u +%Y-%m-%dT%H:%MZ) · device $device · $threads threads · batch $batch · $steps timed steps · $reps repetitions"
for m in ${models//,/ }; do
  for s in ${sizes//,/ }; do
    for r in $(seq 1 "$reps"); do
      "$bin" bench model-one --model "$m" --size "$s" --batch-size "$batch" --steps "$steps" --device "$device" \
        >>"$out/ours.jsonl"
      "$py" scripts/bench_pytorch.py --model "$m" --size "$s" --batch-size "$batch" --steps "$steps" \
        --threads "$threads" --device "$device" >>"$out/torch.jsonl"
      echo "  $m ${s}px repetition $r done" >&2
    done
  done
done
python3 - "$out/ours.jsonl" "$out/torch.jsonl" <<'PY'
import json, statistics, sys
def load(p):
    d = {}
    for line in open(p):
        r = json.loads(line)
        d.setdefault((r["model"], r["size"]), []).append(r)
    return d
ours, torch = load(sys.argv[1]), load(sys.argv[2])
figs = [("train_images_per_sec", "training images/s"), ("infer_images_per_sec", "inference images/s"),
        ("single_image_ms", "single-image latency ms"), ("peak_rss_mb", "peak memory MB")]
print(f"{'model':<12} {'px':>4} {'params ours/torch':>20}  " + "  ".join(f"{n:>26}" for _, n in figs))
for key in ours:
    o, t = ours[key], torch[key]
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    cells = "  ".join(f"{med(o, k):>12.2f} /{med(t, k):>12.2f}" for k, _ in figs)
    print(f"{key[0]:<12} {key[1]:>4} {o[0]['params']:>9}/{t[0]['params']:<10}  {cells}")
print()
for key in ours:
    o, t = ours[key], torch[key]
    for k, name in figs:
        mo, mt = statistics.median(r[k] for r in o), statistics.median(r[k] for r in t)
        print(f"ratio ours/PyTorch {name} {key[0]} {key[1]}px: {mo / mt:.2f}")
PY
