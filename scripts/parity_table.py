#!/usr/bin/env python3
"""Summarises a scripts/parity.sh folder (target/parity/<model>-<size>-e<epochs>/) as a Markdown table: per seed,
pneumoscope's and PyTorch's validation accuracy (at 0.5) and ROC-AUC after the last epoch, and the wall time
from the start of training until validation accuracy first reached 90 % (training and validation, no decoding);
then the mean with a t-based 95 % interval over seeds and the paired difference (ours − PyTorch).

Usage: parity_table.py DIR
"""
import glob
import json
import math
import os
import re
import statistics
import sys
from datetime import datetime

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def ours(run_root):
    """(val accuracy, val AUC, seconds to 90 % or None, training seconds) from a pneumoscope run folder."""
    runs = glob.glob(os.path.join(run_root, "*", "metrics.jsonl"))
    if not runs:
        return None
    events = [json.loads(line) for line in open(runs[0]) if line.strip()]
    start = next(e for e in events if e["event"] == "model_started")
    t0 = datetime.fromisoformat(start["time"])
    first90, last = None, None
    for e in events:
        if e["event"] != "epoch_ended":
            continue
        last = e
        secs = (datetime.fromisoformat(e["time"]) - t0).total_seconds()
        if first90 is None and e["validation"]["accuracy"] >= 0.9:
            first90 = secs
    train_secs = (datetime.fromisoformat(last["time"]) - t0).total_seconds()
    return last["validation"]["accuracy"], last["validation"]["auc"], first90, train_secs


def torch(path):
    lines = [json.loads(line) for line in open(path) if line.strip()]
    epochs = [e for e in lines if e["event"] == "epoch"]
    if not epochs:
        return None
    first90 = next((e["elapsed_secs"] for e in epochs if e["val_accuracy"] >= 0.9), None)
    last = epochs[-1]
    return last["val_accuracy"], last["val_auc"], first90, last["elapsed_secs"]


def mean_ci(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    m = statistics.mean(xs)
    if len(xs) < 2:
        return f"{m:.4f}"
    h = T95.get(len(xs) - 1, 2.0) * statistics.stdev(xs) / math.sqrt(len(xs))
    return f"{m:.4f} ± {h:.4f}"


def secs(x):
    return "never" if x is None else f"{x:.0f} s"


def main():
    d = sys.argv[1]
    seeds = sorted(int(m.group(1)) for p in os.listdir(d) if (m := re.match(r"ours-s(\d+)\.done$", p)))
    rows = []
    print(f"{os.path.basename(d)}\n")
    print("| seed | ours val acc | ours val AUC | ours to 90 % | ours total | PyTorch val acc | PyTorch val AUC | "
          "PyTorch to 90 % | PyTorch total |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in seeds:
        o = ours(os.path.join(d, f"ours-s{s}"))
        tp = os.path.join(d, f"torch-s{s}.jsonl")
        t = torch(tp) if os.path.exists(tp) else None
        if o is None:
            continue
        rows.append((o, t))
        tcols = [f"{t[0]:.4f}", f"{t[1]:.4f}", secs(t[2]), secs(t[3])] if t else ["-"] * 4
        print(f"| {s} | {o[0]:.4f} | {o[1]:.4f} | {secs(o[2])} | {secs(o[3])} | " + " | ".join(tcols) + " |")
    both = [(o, t) for o, t in rows if t]
    print()
    print(f"ours: val accuracy {mean_ci([o[0] for o, _ in rows])}, AUC {mean_ci([o[1] for o, _ in rows])}")
    if both:
        print(f"PyTorch: val accuracy {mean_ci([t[0] for _, t in both])}, AUC {mean_ci([t[1] for _, t in both])}")
        print(f"ours − PyTorch (paired by seed): accuracy {mean_ci([o[0] - t[0] for o, t in both])}, "
              f"AUC {mean_ci([o[1] - t[1] for o, t in both])}")
        ratio = [o[2] / t[2] for o, t in both if o[2] and t[2]]
        if ratio:
            print(f"time to 90 % validation accuracy, ours / PyTorch: {', '.join(f'{r:.2f}' for r in ratio)}")


if __name__ == "__main__":
    main()
