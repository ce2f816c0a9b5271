#!/usr/bin/env python3
"""PyTorch counterparts of the profiling examples, on the same shapes, batch and thread count (2 by default).

  layers_pytorch.py conv SIZE      per-convolution forward and forward+backward times of ResNet-34's distinct
                                   conv shapes (MODEL=simple or regularized: that CNN's), as examples/conv_layers.rs
  layers_pytorch.py phases SIZE [MODEL]
                                   one training step's forward (with the loss), backward and optimiser (Adam, weight
                                   decay, clipping by value) times of one model (resnet34), as examples/step_phases.rs
  layers_pytorch.py ops SIZE       the simple CNN's non-convolution ops (bias gradient, ReLU and its gradient,
                                   2×2 max pooling with and without indices, its gradient) and ResNet-34's 3×3/2
                                   stem pool, as examples/simple_ops.rs

Env: BATCH (16), THREADS (2), NOMKLDNN=1 (switch oneDNN off). A profiling aid, not a test. Run it with the
virtualenv scripts/bench_compare.sh makes: .venv-torch/bin/python scripts/layers_pytorch.py conv 128
"""
import os
import sys
import time

import torch

torch.set_num_threads(int(os.environ.get("THREADS", 2)))
if os.environ.get("NOMKLDNN"):
    torch.backends.mkldnn.enabled = False
BATCH = int(os.environ.get("BATCH", 16))


def timed(n, f):
    for _ in range(2):
        f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e3


def conv(s):
    # (name, C_in, C_out, kernel, stride, padding, input size, how many in the model)
    layers = [("stem", 3, 64, 7, 2, 3, s, 1), ("l1", 64, 64, 3, 1, 1, s // 4, 6),
              ("l2a", 64, 128, 3, 2, 1, s // 4, 1), ("l2ds", 64, 128, 1, 2, 0, s // 4, 1),
              ("l2", 128, 128, 3, 1, 1, s // 8, 7), ("l3a", 128, 256, 3, 2, 1, s // 8, 1),
              ("l3ds", 128, 256, 1, 2, 0, s // 8, 1), ("l3", 256, 256, 3, 1, 1, s // 16, 11),
              ("l4a", 256, 512, 3, 2, 1, s // 16, 1), ("l4ds", 256, 512, 1, 2, 0, s // 16, 1),
              ("l4", 512, 512, 3, 1, 1, s // 32, 5)]
    if os.environ.get("MODEL") in ("simple", "regularized"):
        layers = [("c1", 3, 16, 3, 1, 1, s, 1), ("c2", 16, 32, 3, 1, 1, s // 2, 1),
                  ("c3", 32, 32, 3, 1, 1, s // 2, 1), ("c4", 32, 64, 3, 1, 1, s // 4, 1),
                  ("c5", 64, 64, 3, 1, 1, s // 4, 1), ("c6", 64, 128, 3, 1, 1, s // 8, 1),
                  ("c7", 128, 128, 3, 1, 1, s // 8, 1)]
    if os.environ.get("MODEL") == "regularized":
        layers += [("c8", 128, 256, 3, 1, 1, s // 16, 1), ("c9", 256, 256, 3, 1, 1, s // 16, 1)]
    tot_f = tot_b = 0.0
    for name, ci, co, k, st, p, hw, cnt in layers:
        c = torch.nn.Conv2d(ci, co, k, st, p, bias=False)
        x = torch.randn(BATCH, ci, hw, hw, requires_grad=name not in ("stem", "c1"))

        def fwd():
            with torch.no_grad():
                c(x)

        def fb():
            y = c(x)
            y.backward(torch.ones_like(y))

        tf, tb = timed(5, fwd), timed(5, fb)
        tot_f += tf * cnt
        tot_b += tb * cnt
        print(f"{name:5} {ci:4}->{co:4} k{k} s{st} {hw:4}px  fwd {tf:7.2f} ms  fwd+bwd {tb:7.2f} ms  x{cnt}")
    print(f"total fwd {tot_f:.0f} ms  fwd+bwd {tot_b:.0f} ms")


def ops(s):
    F = torch.nn.functional
    shapes = [(16, s, True), (32, s // 2, False), (32, s // 2, True), (64, s // 4, False), (64, s // 4, True),
              (128, s // 8, False), (128, s // 8, True)]
    names = ["bias grad", "relu", "relu grad", "pool", "pool idx", "pool grad"]
    tot = [0.0] * 6
    for c, hw, pool in shapes:
        x = torch.randn(BATCH, c, hw, hw)
        g = torch.randn(BATCH, c, hw, hw)
        row = [timed(10, lambda: g.sum((0, 2, 3))), timed(10, lambda: torch.relu(x)),
               timed(10, lambda: torch.ops.aten.threshold_backward(g, x, 0.0)), 0.0, 0.0, 0.0]
        if pool:
            row[3] = timed(10, lambda: F.max_pool2d(x, 2))
            row[4] = timed(10, lambda: F.max_pool2d(x, 2, return_indices=True))
            y, idx = F.max_pool2d(x, 2, return_indices=True)
            row[5] = timed(10, lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                y, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx))
        tot = [a + r for a, r in zip(tot, row)]
        print(f"{c:4}x{hw:<4} " + "  ".join(f"{n} {r:6.2f}" for n, r in zip(names, row)) + " ms")
    print("total     " + "  ".join(f"{n} {r:6.2f}" for n, r in zip(names, tot)) + " ms")
    x = torch.randn(BATCH, 64, s // 2, s // 2)
    pool = timed(10, lambda: F.max_pool2d(x, 3, 2, 1))
    pool_idx = timed(10, lambda: F.max_pool2d(x, 3, 2, 1, return_indices=True))
    print(f"ResNet-34 stem pool 3x3/2 on 64x{s // 2}: {pool:6.2f} ms, with indices {pool_idx:6.2f} ms")


def phases(s, model="resnet34"):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_pytorch import MODELS
    m = MODELS[model]()
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-4, eps=1e-8, weight_decay=1e-4)
    x = torch.randn(BATCH, 3, s, s)
    y = torch.tensor([0 if i % 3 == 0 else 1 for i in range(BATCH)])
    f, b, o = [], [], []
    for step in range(int(os.environ.get("STEPS", 8))):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(m(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_value_(m.parameters(), 0.1)
        opt.step()
        float(loss.detach())
        t3 = time.perf_counter()
        if os.environ.get("VERBOSE"):
            print(f"step {step}: {(t1 - t0) * 1e3:.1f} {(t2 - t1) * 1e3:.1f} {(t3 - t2) * 1e3:.1f}")
        if step >= 2:
            f.append((t1 - t0) * 1e3)
            b.append((t2 - t1) * 1e3)
            o.append((t3 - t2) * 1e3)
    med = lambda v: sorted(v)[len(v) // 2]
    f, b, o = med(f), med(b), med(o)
    print(f"{model} {s}px batch {BATCH}: forward {f:.1f} ms  backward {b:.1f} ms  optimiser {o:.1f} ms  "
          f"total {f + b + o:.1f} ms")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "conv"
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    if what == "phases":
        phases(size, *sys.argv[3:4])
    else:
        {"conv": conv, "ops": ops}[what](size)
