#!/usr/bin/env python3
"""Writes DICOM test files with pydicom, and what pydicom makes of their pixels.

Usage: make_dicom_fixtures.py OUT_DIR

Each readable case is a DICOM file plus CASE.expected.bin: the pixels as
pydicom computes them (pixel_array, then apply_modality_lut, then
apply_voi_lut when the file has a VOI LUT or a window, else a min-max
window), scaled to [0, 1] over the VOI output range and inverted for
MONOCHROME1: float32 little-endian, rows x columns. Cases that must be
refused carry the text their error must contain. manifest.json lists them.

Exits with 77 (CTest's skip code here) when pydicom or numpy is missing.
"""

import json
import os
import sys

try:
    import numpy as np
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.pixel_data_handlers.util import (apply_modality_lut,
                                                  apply_voi_lut)
    from pydicom.uid import (ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                             JPEG2000Lossless, RLELossless, generate_uid)
except ImportError as error:
    print(f"SKIP: python3 with pydicom and numpy is needed ({error})")
    sys.exit(77)

ROWS, COLUMNS = 20, 24


def new_dataset(path, bits_stored, signed, photometric="MONOCHROME2",
                syntax=ExplicitVRLittleEndian, samples=1):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = syntax == ImplicitVRLittleEndian
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    return ds


def stored_values(rng, bits, signed):
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    values = rng.integers(low, high + 1, size=(ROWS, COLUMNS))
    values[0, 0], values[0, 1] = low, high  # the full range occurs
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[
        (8 if bits <= 8 else 16, signed)]
    return values.astype(dtype)


def set_pixels(ds, values):
    ds.PixelData = values.tobytes()


def expected(ds):
    """What the model must see, computed by pydicom from the file."""
    ds = pydicom.dcmread(ds.filename)
    modality = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = apply_voi_lut(ds.pixel_array, ds).astype(np.float64) / ((1 << lut_bits) - 1)
    elif "WindowCenter" in ds:
        out = apply_voi_lut(modality, ds, prefer_lut=False).astype(np.float64)
        # The window's output range, found by windowing far-out values.
        probe = apply_voi_lut(np.array([-1e9, 1e9]), ds, prefer_lut=False)
        out = (out - probe[0]) / (probe[1] - probe[0])
    else:
        out = (modality - modality.min()) / (modality.max() - modality.min())
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 1.0 - out
    return out.astype("<f4")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(5)
    cases = []

    def save(name, ds, error=None):
        path = os.path.join(out_dir, name)
        ds.filename = path
        ds.save_as(path, write_like_original=False)
        case = {"name": name, "file": path}
        if error is None:
            data = expected(ds)
            data.tofile(path + ".expected.bin")
            case.update(shape=list(data.shape), expected=path + ".expected.bin")
        else:
            case["error"] = error
        cases.append(case)
        return path

    # 8-bit MONOCHROME2, no window: a min-max window.
    ds = new_dataset("", 8, False)
    set_pixels(ds, stored_values(rng, 8, False))
    save("mono2_8bit.dcm", ds)

    # 12 bits stored in 16, rescale slope/intercept, a linear window.
    ds = new_dataset("", 12, False)
    set_pixels(ds, stored_values(rng, 12, False))
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.WindowCenter, ds.WindowWidth = 1500, 3000
    save("mono2_12bit_rescale_window.dcm", ds)
    twelve = ds

    # 16-bit MONOCHROME1 (inverted), with a window.
    ds = new_dataset("", 16, False, photometric="MONOCHROME1")
    set_pixels(ds, stored_values(rng, 16, False))
    ds.WindowCenter, ds.WindowWidth = 30000, 40000
    save("mono1_16bit_window.dcm", ds)

    # Signed 16-bit, rescale intercept, no window.
    ds = new_dataset("", 16, True)
    set_pixels(ds, stored_values(rng, 16, True))
    ds.RescaleSlope, ds.RescaleIntercept = 1, 100
    save("mono2_16bit_signed.dcm", ds)

    # A sigmoid VOI LUT function; two windows, the first one applies.
    ds = new_dataset("", 12, False)
    set_pixels(ds, stored_values(rng, 12, False))
    ds.WindowCenter, ds.WindowWidth = [2048, 1000], [2000, 500]
    ds.VOILUTFunction = "SIGMOID"
    save("mono2_12bit_sigmoid.dcm", ds)

    # Implicit VR little endian and no file extension: found by its DICM mark.
    ds = new_dataset("", 16, False, syntax=ImplicitVRLittleEndian)
    set_pixels(ds, stored_values(rng, 16, False))
    save("implicit_vr_no_extension", ds)

    # RLE Lossless, compressed by pydicom's own encoder.
    ds = pydicom.dcmread(os.path.join(out_dir, "mono2_12bit_rescale_window.dcm"))
    ds.compress(RLELossless)
    save("mono2_12bit_rle.dcm", ds)

    # Refused: several frames, colour, JPEG 2000, a truncated file.
    ds = new_dataset("", 8, False)
    ds.NumberOfFrames = 3
    ds.PixelData = np.zeros((3, ROWS, COLUMNS), np.uint8).tobytes()
    save("multiframe.dcm", ds, error="multi-frame")

    ds = new_dataset("", 8, False, photometric="RGB", samples=3)
    ds.PlanarConfiguration = 0
    ds.PixelData = np.zeros((ROWS, COLUMNS, 3), np.uint8).tobytes()
    save("rgb.dcm", ds, error="photometric interpretation")

    ds = new_dataset("", 16, False, syntax=JPEG2000Lossless)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    ds["PixelData"].is_undefined_length = True
    save("jpeg2000.dcm", ds, error="JPEG 2000")

    with open(os.path.join(out_dir, "mono2_8bit.dcm"), "rb") as f:
        head = f.read(300)
    truncated = os.path.join(out_dir, "truncated.dcm")
    with open(truncated, "wb") as f:
        f.write(head)
    cases.append({"name": "truncated.dcm", "file": truncated, "error": "DICOM"})

    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump({"pydicom": pydicom.__version__, "cases": cases}, f, indent=1)
    print(f"pydicom {pydicom.__version__}: {len(cases)} DICOM cases written to {out_dir}")


if __name__ == "__main__":
    main()
