#!/usr/bin/env python3
"""The same three classifiers as pneumoscope, in PyTorch, measured the way `pneumoscope bench model-one` measures
ours: training images/s (Adam, weight decay 1e-4, gradient clipping by value 0.1, cross-entropy, one warm-up
step then STEPS timed steps), inference images/s on one batch, single-image latency (median of 5) and the process's
peak resident memory. Prints one JSON object with the same keys as pneumoscope's.

Usage: bench_pytorch.py --model simple|regularized|resnet34 --size PX [--batch-size 16] [--steps 5] [--threads N]
       bench_pytorch.py --params      (prints each model's trainable parameter count and exits)
Needs torch and torchvision (scripts/bench_compare.sh makes a CPU virtualenv with ../shared/pytorch-cpu-venv.sh).
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torchvision

SIMPLE_WIDTHS = [16, 32, 32, 64, 64, 128, 128]
SIMPLE_POOL = [True, False, True, False, True, False, True]
REG_WIDTHS = [16, 32, 32, 64, 64, 128, 128, 256, 256]
REG_POOL = [True, False, True, False, True, False, True, False, True]


def simple_cnn(classes=2):
    layers, cin = [], 3
    for c, pool in zip(SIMPLE_WIDTHS, SIMPLE_POOL):
        layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=True)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        cin = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def regularized_cnn(dropout=0.5, classes=2):
    layers, cin = [], 3
    for c, pool in zip(REG_WIDTHS, REG_POOL):
        layers += [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        cin = c
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, 128), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(128, classes)]
    return nn.Sequential(*layers, *head)


def resnet34(dropout=0.5, classes=2):
    m = torchvision.models.resnet34(weights=None)
    m.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, classes))
    return m


MODELS = {"simple": simple_cnn, "regularized": regularized_cnn, "resnet34": resnet34}


def params(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=MODELS)
    ap.add_argument("--size", type=int)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--params", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (a CUDA build of torch and a GPU)")
    a = ap.parse_args()
    if a.params:
        for name, f in MODELS.items():
            print(name, params(f()))
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = MODELS[a.model]().to(dev)
    bs, s = a.batch_size, a.size
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(bs, 3, s, s, device=dev)
    y = torch.tensor([0 if i % 3 == 0 else 1 for i in range(bs)], device=dev)
    model.train()
    timed, done, per_step = 0.0, 0, []
    for step in range(a.steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.1)
        opt.step()
        _ = float(loss.detach())
        per_step.append(time.perf_counter() - t)
        if step > 0:
            timed += per_step[-1]
            done += bs
    model.eval()
    with torch.inference_mode():
        torch.softmax(model(x), 1)
        t = time.perf_counter()
        for _ in range(a.steps):
            torch.softmax(model(x), 1)[:, 1].tolist()
        infer = a.steps * bs / (time.perf_counter() - t)
        one = x[:1]
        torch.softmax(model(one), 1)
        lat = []
        for _ in range(5):
            t = time.perf_counter()
            torch.softmax(model(one), 1)[:, 1].tolist()
            lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    print(json.dumps({
        "device": a.device if dev.type == "cpu" else f"{a.device} ({torch.cuda.get_device_name(dev)})",
        "model": a.model, "size": s, "batch_size": bs, "threads": torch.get_num_threads(), "params": params(model),
        "train_images_per_sec": done / timed, "train_step_secs": timed / a.steps, "infer_images_per_sec": infer,
        "single_image_ms": lat[len(lat) // 2],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loader_wait_share": 0.0, "step_secs": per_step,
    }))


if __name__ == "__main__":
    main()
