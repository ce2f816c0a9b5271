#!/usr/bin/env python3
"""Writes the DICOM test files of tests/fixtures/dicom/ from a real chest radiograph: RG1_UNCR.dcm of PyPI's
pydicom-data (MIT; a CR film, 1955 x 1841, MONOCHROME1, 15 bits stored, window 15000/30000), shrunk tenfold.
The references (*-ref.png) are the display computed here with pydicom and numpy, which tests/dicom.rs holds pneumoscope's against.

Usage: python3 -m venv /tmp/pyd && /tmp/pyd/bin/pip install pydicom pydicom-data numpy pillow pylibjpeg \
         pylibjpeg-openjpeg
       /tmp/pyd/bin/python scripts/make_dicom_fixtures.py [NAME.dcm ...]   (only those files; default: all)
"""
import copy
import glob
import io
import os
import sys

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless,
                         generate_uid)

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "tests", "fixtures", "dicom")
os.makedirs(out, exist_ok=True)
src = glob.glob(os.path.join(os.path.dirname(pydicom.__file__), "..", "data_store", "data", "RG1_UNCR.dcm"))[0]
film = pydicom.dcmread(src)
raw = film.pixel_array.astype(np.float64)
h, w = raw.shape[0] // 10, raw.shape[1] // 10
small = raw[: h * 10, : w * 10].reshape(h, 10, w, 10).mean(axis=(1, 3)).round().astype(np.uint16)


def dataset(pixels, photometric="MONOCHROME1", bits=16, stored=15, window=(15000, 30000), patient="9RG1"):
    ds = copy.deepcopy(film)
    for tag in ["WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept", "PatientID", "PatientName"]:
        if tag in ds:
            delattr(ds, tag)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, stored, stored - 1, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if patient:
        ds.PatientID = patient
        ds.PatientName = "Anonymous"
    ds.PixelData = pixels.astype(np.uint16 if bits == 16 else np.uint8).tobytes()
    return ds


only = set(sys.argv[1:])


def save(ds, name):
    if only and name not in only:
        return
    ds.save_as(os.path.join(out, name), enforce_file_format=True)


def render(ds):
    """The display: pydicom's modality LUT, DICOM's linear window (or the 0.5-99.5 percentile window), MONOCHROME1
    inverted."""
    arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    if "WindowCenter" in ds:
        # DICOM's linear VOI function (PS3.3 C.11.2.1.2).
        c, wd = float(ds.WindowCenter), float(ds.WindowWidth)
        arr = np.clip((arr - (c - 0.5)) / (wd - 1) + 0.5, 0, 1) * 255
    else:
        lo, hi = np.percentile(arr, [0.5, 99.5])
        arr = np.clip((arr - lo) / (hi - lo), 0, 1) * 255
    if ds.PhotometricInterpretation == "MONOCHROME1":
        arr = 255 - arr
    return Image.fromarray(arr.round().astype(np.uint8))


# 1. The film as stored: MONOCHROME1, 15 bits, its own window.
m1 = dataset(small)
save(m1, "cr-m1.dcm")
render(m1).save(os.path.join(out, "cr-m1-ref.png"))
# 2. The same, RLE Lossless.
rle = dataset(small)
rle.compress(RLELossless, encoding_plugin="pydicom")
save(rle, "cr-m1-rle.dcm")
# 2b. The same, JPEG 2000 lossless (pylibjpeg-openjpeg's encoder).
j2k = dataset(small)
j2k.compress(JPEG2000Lossless)
save(j2k, "cr-m1-j2k.dcm")
# 3. The same film as MONOCHROME2 with a rescale slope of 2: stored (30000 - v) / 2, window on the modality values.
m2 = dataset(((30000 - small.astype(np.int64)) // 2).astype(np.uint16), photometric="MONOCHROME2", stored=16)
m2.RescaleSlope, m2.RescaleIntercept = 2, 0
save(m2, "cr-m2-rescaled.dcm")
# 4. No window: the percentile window.
nowin = dataset(small, window=None, patient=None)
save(nowin, "cr-nowindow.dcm")
render(nowin).save(os.path.join(out, "cr-nowindow-ref.png"))
# 5. 8 bits stored, MONOCHROME2, the display itself with an identity window (centre 128, width 256).
eight = dataset(np.asarray(render(m1)), photometric="MONOCHROME2", bits=8, stored=8, window=(128, 256))
save(eight, "cr-8bit.dcm")
# 5b. The 8-bit display as JPEG baseline (quality 95, by Pillow; pydicom does not encode JPEG), encapsulated.
jpg = io.BytesIO()
render(m1).save(jpg, format="JPEG", quality=95)
baseline = dataset(np.asarray(render(m1)), photometric="MONOCHROME2", bits=8, stored=8, window=(128, 256))
baseline.PixelData = encapsulate([jpg.getvalue()])
baseline["PixelData"].VR = "OB"
baseline.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
save(baseline, "cr-jpeg-baseline.dcm")
# 6. Two frames: refused.
two = dataset(np.stack([small[:16, :16], small[16:32, :16]]), window=None)
two.NumberOfFrames = 2
save(two, "multiframe.dcm")
# 7. No pixel data (a structured report, say): refused.
nopix = dataset(small[:8, :8])
del nopix.PixelData
save(nopix, "no-pixels.dcm")
# 8. A transfer syntax pneumoscope's decoders do not read (JPEG-LS): refused, naming it.
jls = dataset(small[:16, :16])
jls.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(60) + b"\xff\xd9"])
jls["PixelData"].VR = "OB"
jls.file_meta.TransferSyntaxUID = JPEGLSLossless
save(jls, "jpeg-ls.dcm")
# 9. Two films of one patient and one of another, small: the patient-level split reads PatientID.
for name, pid in [("pat-a-1.dcm", "PAT-A-0001"), ("pat-a-2.dcm", "PAT-A-0001"), ("pat-b-1.dcm", "PAT-B-0002")]:
    save(dataset(small[:32, :32], window=None, patient=pid), name)
print(sorted(os.listdir(out)), small.shape)
