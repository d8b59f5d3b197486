"""Golden files (tests/golden/): every platform must decode them like the machine that made them.

Symbols must be bit-identical (entropy decoding is exact); decoded pixels may
differ from the stored decoded PNG by at most one rounding step, since float
convolutions may round differently on other CPUs, GPUs or ONNX Runtime
versions.  When a shipped model is replaced, rerun tests/golden/make_golden.py.
"""
import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from runtime import read_info
from runtime.image import psnr

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
with open(os.path.join(HERE, "golden.json")) as f:
    GOLDEN = json.load(f)
CASES = sorted(GOLDEN["cases"])
REGENERATE = "the shipped %r model changed: rerun tests/golden/make_golden.py and commit its output" % GOLDEN["model"]


def read(name):
    with open(os.path.join(HERE, name), "rb") as f:
        return f.read()


def pixels(name):
    with Image.open(os.path.join(HERE, name)) as image:
        return np.asarray(image)


@pytest.fixture(scope="module", autouse=True)
def same_model(codec):
    assert codec.model.name == GOLDEN["model"]
    assert codec.model.manifest["files"]["decoder.onnx"]["sha256"] == GOLDEN["decoder_sha256"], REGENERATE


@pytest.mark.parametrize("case", CASES)
def test_golden_file_is_intact(case):
    data = read(case + ".l3ic")
    expected = GOLDEN["cases"][case]
    assert hashlib.sha256(data).hexdigest() == expected["l3ic_sha256"]
    info = read_info(data)
    assert (info["width"], info["height"], info["mode"]) == (expected["width"], expected["height"], expected["mode"])


@pytest.mark.parametrize("case", CASES)
def test_symbols_are_bit_identical(case):
    from golden.make_golden import symbols_sha256
    assert symbols_sha256(read(case + ".l3ic")) == GOLDEN["cases"][case]["symbols_sha256"]


@pytest.mark.parametrize("case", CASES)
def test_decoded_pixels_within_one_rounding_step(codec, case):
    expected = pixels(case + ".decoded.png")
    decoded = codec.decode(read(case + ".l3ic"))
    assert decoded.shape == expected.shape and decoded.dtype == np.uint8
    diff = np.abs(decoded.astype(np.int16) - expected.astype(np.int16))
    assert int(diff.max()) <= 1, "decoded pixels differ by up to %d from the golden decode" % int(diff.max())
    assert abs(psnr(pixels(case + ".source.png"), decoded) - GOLDEN["cases"][case]["psnr"]) < 0.05


@pytest.mark.parametrize("case", CASES)
def test_encoder_reproduces_the_symbols(codec, case):
    """Re-encoding the source gives the golden symbols, except where float rounding lands on a quantiser boundary."""
    from runtime import read_latents
    golden = read_latents(read(case + ".l3ic"))
    ours = codec.encode_latents(pixels(case + ".source.png"))
    assert ours.shape == golden.shape
    assert np.mean(ours == golden) > 0.99
    assert int(np.abs(ours.astype(np.int32) - golden).max()) <= 1


# A file of format version 1 (before the CONTEXT coding mode), made by the
# previous runtime with the same medium model as rgb.l3ic; frozen: never regenerated.
VERSION_1 = {"file": "rgb.v1.l3ic", "l3ic_sha256": "084f17e97fd75f952a2075fc7fa7f489853809e10228910853328c147655e141",
             "symbols_sha256": "6bc56a770a9a0ed09ef024f4554c0de196c0438826169d0a017b9d9ec502a63f"}


def test_version_1_files_still_decode():
    from golden.make_golden import symbols_sha256
    data = read(VERSION_1["file"])
    assert hashlib.sha256(data).hexdigest() == VERSION_1["l3ic_sha256"]
    assert read_info(data)["format_version"] == 1 and read_info(read("rgb.l3ic"))["format_version"] == 2
    assert symbols_sha256(data) == VERSION_1["symbols_sha256"]
