#!/usr/bin/env python3
"""Writes tests/fixtures/pytorch-state-dicts.json: for each architecture of scripts/bench_pytorch.py, the name and
shape of every tensor of its PyTorch state dict (num_batches_tracked left out: `pneumoscope export` does not
write these counters). tests/export.rs checks that an export holds exactly these, so CI needs no PyTorch.

Usage: .venv-torch/bin/python scripts/make_export_fixture.py   (the virtualenv of ../shared/pytorch-cpu-venv.sh)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pytorch import MODELS  # noqa: E402

out = {
    name: {k: list(v.shape) for k, v in make().state_dict().items() if not k.endswith("num_batches_tracked")}
    for name, make in MODELS.items()
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "pytorch-state-dicts.json")
with open(path, "w") as f:
    # One tensor per line.
    models = [
        f'  "{m}": {{\n' + ",\n".join(f'    "{k}": {json.dumps(s)}' for k, s in sorted(t.items())) + "\n  }"
        for m, t in sorted(out.items())
    ]
    f.write("{\n" + ",\n".join(models) + "\n}\n")
print(path, {k: len(v) for k, v in out.items()})
