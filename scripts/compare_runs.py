#!/usr/bin/env python3
"""Paired comparison of two training recipes over several seeds, from pneumoscope run folders.

Each argument pair names two run folders trained with the same seed (so the same split: the same validation
and held-out test images) and the two recipes. For every pair the test scores and truth come from report.json;
the statistic is the difference B − A of the model's test ROC-AUC and of its accuracy at its own operating point
(chosen on validation), averaged over the seeds; the 95 % interval is a paired percentile bootstrap that
resamples each seed's test images (the same resample for A and B). An interval that excludes 0 beats the noise.

Usage: compare_runs.py MODEL A1 B1 [A2 B2 ...]   (MODEL: simple | regularized | resnet34 | ensemble)
"""
import glob
import json
import os
import random
import sys


def load(run, model):
    rep = glob.glob(os.path.join(run, "**", "report.json"), recursive=True)[0]
    r = json.load(open(rep))
    m = next(m for m in r["models"] if m["model"] == model)
    return m["test_scores"], r["test_truth"], m["evaluation"]["threshold"], m["evaluation"]["validation_auc"]


def auc(scores, truth):
    pairs = sorted(zip(scores, truth))
    pos = sum(truth)
    neg = len(truth) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        r = (i + j) / 2 + 1
        rank_sum += r * sum(1 for k in range(i, j + 1) if pairs[k][1])
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def acc(scores, truth, t):
    return sum((s >= t) == y for s, y in zip(scores, truth)) / len(truth)


def main():
    model, runs = sys.argv[1], sys.argv[2:]
    pairs = []
    for a, b in zip(runs[::2], runs[1::2]):
        sa, ta, tha, va = load(a, model)
        sb, tb, thb, vb = load(b, model)
        assert ta == tb, f"{a} and {b} were not tested on the same images (different seeds?)"
        pairs.append((sa, sb, ta, tha, thb, va, vb))
    point_auc = sum(auc(p[1], p[2]) - auc(p[0], p[2]) for p in pairs) / len(pairs)
    point_acc = sum(acc(p[1], p[2], p[4]) - acc(p[0], p[2], p[3]) for p in pairs) / len(pairs)
    val = sum(p[6] - p[5] for p in pairs) / len(pairs)
    rng = random.Random(2026)
    d_auc, d_acc = [], []
    for _ in range(1000):
        sa_, sc_ = 0.0, 0.0
        for sa, sb, t, tha, thb, _, _ in pairs:
            idx = [rng.randrange(len(t)) for _ in t]
            ra, rb, rt = [sa[i] for i in idx], [sb[i] for i in idx], [t[i] for i in idx]
            sa_ += auc(rb, rt) - auc(ra, rt)
            sc_ += acc(rb, rt, thb) - acc(ra, rt, tha)
        d_auc.append(sa_ / len(pairs))
        d_acc.append(sc_ / len(pairs))
    d_auc.sort()
    d_acc.sort()
    lo, hi = 25, 974
    print(f"{model}, {len(pairs)} seeds, B − A on the held-out test: "
          f"AUC {point_auc:+.4f} [{d_auc[lo]:+.4f}, {d_auc[hi]:+.4f}], "
          f"accuracy at the operating point {100 * point_acc:+.2f} [{100 * d_acc[lo]:+.2f}, {100 * d_acc[hi]:+.2f}] points; "
          f"validation AUC {val:+.4f} (mean of seeds)")


if __name__ == "__main__":
    main()
