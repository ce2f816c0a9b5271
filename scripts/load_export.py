#!/usr/bin/env python3
"""Loads a model written by `pneumoscope export` into PyTorch and prints P(pneumonia) per image.

Usage: load_export.py EXPORT_DIR IMAGE... [--json] [--compare PREDICT_JSONL] [--tolerance 1e-4]
  EXPORT_DIR holds model.safetensors (PyTorch parameter names) and model.json (architecture, input, threshold).
  --compare reads `pneumoscope predict --json` output for the same images and fails (exit 1) when any
  P(pneumonia) differs by more than the tolerance.
The architectures are those of scripts/bench_pytorch.py. Needs torch, torchvision, numpy and Pillow (the CPU
virtualenv of ../shared/pytorch-cpu-venv.sh); safetensors files are read here without the safetensors package.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pytorch import regularized_cnn, resnet34, simple_cnn  # noqa: E402

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    """name -> torch tensor, from the format's 8-byte header length, JSON header and raw little-endian data."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(data[lo:hi], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def build(manifest):
    arch, dropout, classes = manifest["architecture"], manifest["dropout"], len(manifest["classes"])
    if arch == "simple":
        return simple_cnn(classes)
    if arch == "regularized":
        return regularized_cnn(dropout, classes)
    if arch == "resnet34":
        return resnet34(dropout, classes)
    raise SystemExit(f"error: model.json names architecture {arch!r}, not simple, regularized or resnet34")


def load(export_dir):
    with open(os.path.join(export_dir, "model.json")) as f:
        manifest = json.load(f)
    if manifest.get("format") != "pneumoscope-export":
        raise SystemExit(f"error: {export_dir}/model.json is not a pneumoscope export")
    model = build(manifest)
    state = read_safetensors(os.path.join(export_dir, manifest["weights"]))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise SystemExit(f"error: weights do not fit: missing {missing}, unexpected {result.unexpected_keys}")
    model.eval()
    return model, manifest


def preprocess(path, spec):
    """model.json's input steps: luminance, whole-image bilinear resize, /255, three channels, normalise."""
    s = spec["image_size"]
    img = Image.open(path)
    img = img.convert("L")
    img = img.resize((s, s), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.array(spec["mean"], dtype=np.float32)[:, None, None]
    std = np.array(spec["std"], dtype=np.float32)[:, None, None]
    x = (np.repeat(x[None], 3, axis=0) - mean) / std
    return torch.from_numpy(x.astype(np.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export_dir")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--compare", help="`pneumoscope predict --json` output for the same images")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model, manifest = load(a.export_dir)
    threshold = manifest["threshold"]
    if manifest.get("tta", 1) > 1:
        print(f"note: pneumoscope averages {manifest['tta']} test-time views; these are single-view figures",
              file=sys.stderr)
    probs = {}
    with torch.no_grad():
        for path in a.images:
            x = preprocess(path, manifest["input"])[None]
            row = torch.softmax(model(x).double(), dim=1)[0]
            # P(pneumonia) = 1 - P(NORMAL): PNEUMONIA's probability, or BACTERIAL + VIRAL for a three-class model.
            p = row[1:].sum().item()
            probs[path] = p
            classes = manifest["classes"]
            if p < threshold:
                label = classes[0]
            else:
                label = classes[1 + int(torch.argmax(row[1:]).item())]
            if a.json:
                print(json.dumps({"path": path, "label": label, "p_pneumonia": p, "threshold": threshold}))
            else:
                print(f"{path}\t{label}\tP(pneumonia)={p:.6f}")
    if a.compare:
        worst, seen = 0.0, 0
        with open(a.compare) as f:
            for line in f:
                r = json.loads(line)
                if "p_pneumonia" not in r:
                    continue
                key = next((k for k in probs if os.path.abspath(k) == os.path.abspath(r["path"])), None)
                if key is None:
                    continue
                seen += 1
                worst = max(worst, abs(probs[key] - r["p_pneumonia"]))
        if seen != len(probs):
            raise SystemExit(f"error: {a.compare} has {seen} of the {len(probs)} images")
        verdict = "same" if worst <= a.tolerance else "DIFFERENT"
        print(f"{manifest['architecture']}: {seen} images, largest |PyTorch - pneumoscope| P(pneumonia) difference "
              f"{worst:.2e} ({verdict} within {a.tolerance:g})", file=sys.stderr)
        if worst > a.tolerance:
            sys.exit(1)


if __name__ == "__main__":
    main()
