#!/usr/bin/env python3
"""Writes the small torchvision-layout ResNet-34 state dicts that the import tests read.

    .venv-torch/bin/python scripts/make_resnet_fixture.py tests/fixtures

(.venv-torch from ../shared/pytorch-cpu-venv.sh, plus `pip install safetensors`.)

The network is torchvision's ResNet-34 exactly (BasicBlocks [3, 4, 6, 3], the same module names, downsample as
nn.Sequential(conv, bn), a 1000-class fc) with the stem at WIDTH channels instead of 64, so the files stay small.
Every float tensor number i (in state_dict order) holds i + (j mod 1000) / 1000 at flat position j, so the tests
can check each value landed in the right place without reading the file another way. Written with torch.save
(the zip format torchvision's downloads use) and with safetensors.torch.save_file.

resnet34-w2-random.pth holds the same network with PyTorch's own random initialisation (and BatchNorm running
statistics made non-trivial), and resnet34-w2-random.json the pooled features (the 16 inputs of fc) that PyTorch
computes in eval mode for two fixed 3x40x40 images, so a test can check our forward pass matches PyTorch's.
"""
import json
import sys
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

WIDTH = 2
LAYERS = [3, 4, 6, 3]


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet34(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for i, n in enumerate(LAYERS):
            c = width << i
            blocks = [BasicBlock(cin if b == 0 else c, c, (1 if i == 0 else 2) if b == 0 else 1) for b in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = c
        self.fc = nn.Linear(width * 8, 1000)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
    out.mkdir(parents=True, exist_ok=True)
    state = ResNet34(WIDTH).state_dict()
    filled = OrderedDict()
    for i, (name, t) in enumerate(state.items()):
        if t.is_floating_point():
            j = torch.arange(t.numel(), dtype=torch.float32)
            filled[name] = (torch.remainder(j, 1000.0) / 1000.0 + float(i)).reshape(t.shape).contiguous()
        else:
            filled[name] = t.clone()
    torch.save(filled, out / f"resnet34-w{WIDTH}.pth")
    save_file(filled, str(out / f"resnet34-w{WIDTH}.safetensors"))
    # The order and shapes, one tensor per line (the tests compute the expected values from the index).
    lines = [json.dumps([name, list(t.shape)]) for name, t in filled.items()]
    text = '{"width": %d, "tensors": [\n%s\n]}\n' % (WIDTH, ",\n".join(lines))
    (out / f"resnet34-w{WIDTH}.json").write_text(text)
    print(f"wrote {len(filled)} tensors to {out}/resnet34-w{WIDTH}.{{pth,safetensors,json}}")

    torch.manual_seed(34)
    net = ResNet34(WIDTH)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    torch.save(net.state_dict(), out / f"resnet34-w{WIDTH}-random.pth")
    n, size = 2, 40
    k = torch.arange(n * 3 * size * size, dtype=torch.float64)  # exact: k * 7919 exceeds float32 integers
    x = (torch.remainder(k * 7919.0, 255.0) / 128.0 - 1.0).float().reshape(n, 3, size, size)
    with torch.no_grad():
        h = net.bn1(net.conv1(x)).relu()
        h = nn.functional.max_pool2d(h, 3, 2, 1)
        for layer in [net.layer1, net.layer2, net.layer3, net.layer4]:
            for b in layer:
                idt = b.downsample(h) if b.downsample is not None else h
                o = b.bn1(b.conv1(h)).relu()
                h = (b.bn2(b.conv2(o)) + idt).relu()
        feats = h.mean(dim=(2, 3))
    expected = {"input": "x[k] = ((k * 7919) mod 255) / 128 - 1, shape [2, 3, 40, 40]", "features": feats.tolist()}
    (out / f"resnet34-w{WIDTH}-random.json").write_text(json.dumps(expected) + "\n")
    print(f"wrote {out}/resnet34-w{WIDTH}-random.{{pth,json}}")


if __name__ == "__main__":
    main()
