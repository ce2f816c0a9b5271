#!/usr/bin/env bash
# Soak test (not part of `cargo test`): many short runs interrupted at random points with SIGINT, SIGTERM or
# SIGKILL, each resumed (and interrupted again) until it finishes; every final checkpoint must load and evaluate.
# Usage: scripts/soak.sh [RUNS] [path/to/pneumoscope]      (default: 10 runs, target/release/pneumoscope)
set -euo pipefail
runs=${1:-10}
bin=$(realpath "${2:-target/release/pneumoscope}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin" data synth --out data --train 80 --test 16 --min-side 64 --max-side 96 >/dev/null
signals=(INT TERM KILL)
for i in $(seq 1 "$runs"); do
  args=(train --no-tui --data data --models regularized,simple --epochs 15 --image-size 16 --runs-dir "runs$i")
  attempt=0
  while :; do
    attempt=$((attempt + 1))
    if [ "$attempt" -eq 1 ]; then cmd=("$bin" "${args[@]}"); else cmd=("$bin" train --no-tui --resume "$(ls -d runs$i/*)"); fi
    "${cmd[@]}" >"log$i.$attempt" 2>&1 &
    pid=$!
    # Interrupt most attempts at a random point (0.2–3 s), let some run to the end.
    if [ $((RANDOM % 4)) -ne 0 ] && [ "$attempt" -lt 6 ]; then
      sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.2 + 2.8 * r / 32767 }')"
      sig=${signals[$((RANDOM % 3))]}
      kill -s "$sig" "$pid" 2>/dev/null || true
    fi
    set +e; wait "$pid"; code=$?; set -e
    echo "run $i attempt $attempt: exit $code${sig:+ after SIG$sig}"
    unset sig
    if [ "$code" -eq 0 ]; then break; fi
    case "$code" in 130|137|143) ;; *) echo "unexpected exit $code"; cat "log$i.$attempt"; exit 1 ;; esac
  done
  run=$(ls -d runs$i/*)
  grep -q '"stopped": false' "$run/report.json" || { echo "run $i: report not finished"; exit 1; }
  for ck in "$run"/checkpoints/*.ckpt; do
    "$bin" eval --checkpoint "$ck" --data data >/dev/null || { echo "run $i: $ck does not evaluate"; exit 1; }
  done
  echo "run $i: finished after $attempt attempts; $(ls "$run"/checkpoints | wc -l) checkpoints load and evaluate"
done
echo "soak: $runs runs, all resumed to the end, all checkpoints load and evaluate"
