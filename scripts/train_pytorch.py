#!/usr/bin/env python3
"""Trains one of pneumoscope's three classifiers in PyTorch with the seed project's recipe, on exactly the
train/validation split pneumoscope uses, so the two can be compared side by side (docs/evaluation.md, "Parity").

The split comes from pneumoscope:  pneumoscope data split --data DIR --out split.json  (same seed and fractions
as the run it is compared with). The recipe, as pneumoscope runs it with scripts/parity.sh's seed-recipe config (the simple CNN's convolutions start
He-uniform as pneumoscope's do; --init default for PyTorch's own): images decoded to
luminance, resized to SIZE x SIZE (antialiased bilinear, as pneumoscope and Pillow do), repeated in 3 channels,
ImageNet normalisation; training images rotated by a uniform random angle in +-ROTATION degrees (bilinear, black
fill: torchvision's RandomAffine(ROTATION)); batch 16 (a last batch of one image dropped); Adam (betas 0.9/0.999,
eps 1e-8, L2 weight decay 1e-4); one-cycle learning rate per batch (max 1e-3, 30 % warm-up, cosine, no momentum
cycling: pneumoscope's schedule); gradient clipping by value at 0.1; cross-entropy. Validation after every epoch.

Prints one JSON object per epoch and a summary: validation loss, accuracy at 0.5, ROC-AUC, and the wall time
since training started (training and validation, excluding decoding), so that time-to-accuracy compares with
pneumoscope's metrics.jsonl.

Usage: train_pytorch.py --split split.json --model simple|regularized|resnet34 --size PX --epochs N
                        [--seed S] [--threads 2] [--rotation 90] [--batch-size 16] [--max-lr 1e-3]
Needs torch, torchvision and Pillow (../shared/pytorch-cpu-venv.sh makes such a virtualenv).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms.functional as TF
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pytorch import MODELS  # noqa: E402  (the same three architectures)

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def load(root, items, size):
    """Decodes every image once: luminance, SIZE x SIZE, uint8 (N, SIZE, SIZE)."""
    out = np.empty((len(items), size, size), dtype=np.uint8)
    for i, it in enumerate(items):
        with Image.open(os.path.join(root, it["path"])) as im:
            out[i] = np.asarray(im.convert("L").resize((size, size), Image.BILINEAR))
    labels = np.array([1 if it["label"] == "PNEUMONIA" else 0 for it in items], dtype=np.int64)
    return torch.from_numpy(out), torch.from_numpy(labels)


def normalise(x):
    """uint8 (N, S, S) -> float (N, 3, S, S), ImageNet normalisation per channel."""
    x = x.float().div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def rotate_batch(x, degrees, gen):
    """Each image rotated by its own uniform angle in +-degrees (bilinear, black fill)."""
    if degrees <= 0:
        return x
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        angle = float(torch.empty(1).uniform_(-degrees, degrees, generator=gen))
        out[i] = TF.rotate(x[i:i + 1], angle, interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)[0]
    return out


def auc(scores, truth):
    """ROC-AUC by ranks (ties averaged), as pneumoscope's metrics.roc_auc."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    pos, neg = truth.sum(), (~truth).sum()
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[truth].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def evaluate(model, x, y, batch=32):
    model.eval()
    scores, loss_sum = [], 0.0
    with torch.inference_mode():
        for i in range(0, len(y), batch):
            logits = model(normalise(x[i:i + batch]))
            loss_sum += float(nn.functional.cross_entropy(logits, y[i:i + batch], reduction="sum"))
            scores.extend(torch.softmax(logits, 1)[:, 1].tolist())
    truth = y.numpy() == 1
    acc = float(np.mean((np.array(scores) >= 0.5) == truth))
    return {"loss": loss_sum / len(y), "accuracy": acc, "auc": auc(scores, truth)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", required=True)
    ap.add_argument("--model", choices=MODELS, required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rotation", type=float, default=90.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--init", choices=["he", "default"], default="he",
                    help="simple CNN's convolutions: He uniform as pneumoscope (default) or PyTorch's default")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    split = json.load(open(a.split))
    root = split["root"]
    t0 = time.perf_counter()
    xtr, ytr = load(root, split["train"], a.size)
    xva, yva = load(root, split["validation"], a.size)
    decode_secs = time.perf_counter() - t0
    model = MODELS[a.model](a.dropout) if a.model != "simple" else MODELS[a.model]()
    if a.model == "simple" and a.init == "he":
        # pneumoscope's simple CNN: He-uniform convolutions, weights and biases in +-sqrt(6 / fan_in) (burn's
        # KaimingUniform with gain sqrt(2), which it also applies to the bias); PyTorch's default is +-sqrt(1 / fan_in).
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                bound = math.sqrt(6.0 / (m.in_channels * m.kernel_size[0] * m.kernel_size[1]))
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.uniform_(m.bias, -bound, bound)
    opt = torch.optim.Adam(model.parameters(), lr=a.max_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)
    n = len(ytr)
    steps_per_epoch = math.ceil(n / a.batch_size)
    if n % a.batch_size == 1:
        steps_per_epoch -= 1
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.max_lr, total_steps=steps_per_epoch * a.epochs,
                                                pct_start=0.3, anneal_strategy="cos", cycle_momentum=False)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(a.seed)
    print(json.dumps({"event": "start", "model": a.model, "size": a.size, "epochs": a.epochs, "seed": a.seed,
                      "train": n, "validation": len(yva), "decode_secs": decode_secs,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
    start = time.perf_counter()
    first90 = None
    for epoch in range(1, a.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen)[: steps_per_epoch * a.batch_size]
        loss_sum, seen = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * a.batch_size:(b + 1) * a.batch_size]
            x = normalise(rotate_batch(xtr[idx], a.rotation, gen))
            y = ytr[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 0.1)
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
        v = evaluate(model, xva, yva)
        elapsed = time.perf_counter() - start
        if first90 is None and v["accuracy"] >= 0.9:
            first90 = elapsed
        print(json.dumps({"event": "epoch", "epoch": epoch, "train_loss": loss_sum / seen, "val_loss": v["loss"],
                          "val_accuracy": v["accuracy"], "val_auc": v["auc"], "elapsed_secs": elapsed}), flush=True)
    print(json.dumps({"event": "done", "model": a.model, "size": a.size, "seed": a.seed, "val_accuracy": v["accuracy"],
                      "val_auc": v["auc"], "train_secs": time.perf_counter() - start,
                      "secs_to_90": first90}), flush=True)


if __name__ == "__main__":
    main()
