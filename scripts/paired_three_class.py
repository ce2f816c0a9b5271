#!/usr/bin/env python3
"""Paired difference between two three-class runs tested on the same films (same data folder and seed).

Usage: paired_three_class.py RUN_A RUN_B [--model regularized] [--resamples 1000] [--seed 1]
Reads each run's report.json (test_targets, and the model's test_probs and operating point) and prints A - B for
the three-class accuracy at each one's operating point and for the bacterial-vs-viral AUC among the pneumonia
films, each with a 95 % paired percentile-bootstrap interval (the same images resampled for both). Standard
library only.
"""
import argparse
import json
import os
import random
import sys


def load(run, model):
    with open(os.path.join(run, "report.json")) as f:
        r = json.load(f)
    targets = r.get("test_targets") or []
    for m in r["models"]:
        if m["model"] == model:
            probs = m.get("test_probs") or []
            if not targets or len(probs) != 3 * len(targets):
                sys.exit(f"error: {run} has no three-class test probabilities for {model}")
            rows = [probs[3 * i:3 * i + 3] for i in range(len(targets))]
            return targets, rows, m["evaluation"]["threshold"]
    sys.exit(f"error: {run} has no model {model}")


def decide(row, t):
    if row[1] + row[2] < t:
        return 0
    return 2 if row[2] > row[1] else 1


def accuracy(idx, targets, rows, t):
    return sum(decide(rows[i], t) == targets[i] for i in idx) / len(idx)


def auc(scores, truth):
    pos = [s for s, y in zip(scores, truth) if y]
    neg = [s for s, y in zip(scores, truth) if not y]
    if not pos or not neg:
        return None
    # Rank-sum with ties counted as one half.
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rsum = sum(r for r, y in zip(ranks, truth) if y)
    return (rsum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def cause_auc(idx, targets, rows):
    sick = [i for i in idx if targets[i] > 0]
    share = [rows[i][2] / (rows[i][1] + rows[i][2]) if rows[i][1] + rows[i][2] > 0 else 0.5 for i in sick]
    return auc(share, [targets[i] == 2 for i in sick])


def interval(v):
    v = sorted(x for x in v if x is not None)
    at = lambda q: v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
    return at(0.025), at(0.975)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--model", default="regularized")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    ta, ra, tha = load(a.run_a, a.model)
    tb, rb, thb = load(a.run_b, a.model)
    if ta != tb:
        sys.exit("error: the runs were not tested on the same films (their test classes differ)")
    n = len(ta)
    every = list(range(n))
    d_acc = accuracy(every, ta, ra, tha) - accuracy(every, tb, rb, thb)
    d_auc = cause_auc(every, ta, ra) - cause_auc(every, tb, rb)
    rng = random.Random(a.seed)
    accs, aucs = [], []
    for _ in range(a.resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        accs.append(accuracy(idx, ta, ra, tha) - accuracy(idx, tb, rb, thb))
        x, y = cause_auc(idx, ta, ra), cause_auc(idx, tb, rb)
        aucs.append(None if x is None or y is None else x - y)
    lo, hi = interval(accs)
    print(f"3-class accuracy A - B: {100 * d_acc:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}]")
    lo, hi = interval(aucs)
    print(f"bacterial-vs-viral AUC A - B: {d_auc:+.3f} [{lo:+.3f}, {hi:+.3f}]")


if __name__ == "__main__":
    main()
