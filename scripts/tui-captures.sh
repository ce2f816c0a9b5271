#!/usr/bin/env bash
# Regenerates the text captures of the dashboard in docs/tui.md: runs the real binary in tmux at 80×24 on its
# default job (the built-in small REAL subset: three models, 64 px, 6 epochs) and captures each pane.
# Usage: scripts/tui-captures.sh [path/to/pneumoscope] > captures.md
set -euo pipefail
bin=${1:-target/release/pneumoscope}
bin=$(realpath "$bin")
work=$(mktemp -d)
sock="pneumoscope-captures-$$"
trap 'tmux -L "$sock" kill-server 2>/dev/null; rm -rf "$work"' EXIT
tmux -L "$sock" new-session -d -s cap -x 80 -y 24 \
  "cd $work && XDG_CACHE_HOME=$work/cache PNEUMOSCOPE_IMAGES=halfblocks $bin; sleep 900"
cap() { tmux -L "$sock" capture-pane -p -t cap; }
wait_for() { for _ in $(seq 1 1800); do cap | grep -q -- "$1" && return 0; sleep 0.5; done; echo "timeout: $1" >&2; exit 1; }
show() { echo; echo "### $1"; echo; echo '```'; cap; echo '```'; }
wait_for "training regularized e3"
tmux -L "$sock" send-keys -t cap 2; sleep 1; show "2 Charts (live loss and accuracy, per batch with EMA, per epoch)"
tmux -L "$sock" send-keys -t cap 1; sleep 1; show "1 Data (class balance)"
tmux -L "$sock" send-keys -t cap 4; sleep 1; show "4 Compare (models side by side)"
tmux -L "$sock" send-keys -t cap h 3; sleep 1; show "3 Confusion (simple CNN on the test split)"
tmux -L "$sock" send-keys -t cap 5 j j Enter; sleep 3; show "5 Predict (classify a test image while the next model trains)"
tmux -L "$sock" send-keys -t cap g; sleep 4; show "5 Predict with the Grad-CAM overlay (g)"
tmux -L "$sock" send-keys -t cap 6; sleep 1; show "6 ROC (test and validation curves, operating point)"
tmux -L "$sock" send-keys -t cap '?'; sleep 1; show "? Help (generated from the key map)"
tmux -L "$sock" send-keys -t cap Escape; sleep 0.5; tmux -L "$sock" send-keys -t cap q; sleep 1; show "q while training asks first"
tmux -L "$sock" send-keys -t cap n; wait_for "finished — compare"
tmux -L "$sock" send-keys -t cap 4; sleep 1; show "4 Compare after the run (the three models and their ensemble)"
tmux -L "$sock" send-keys -t cap q; sleep 5
