"""Golden files (tests/golden/): every platform must decode them like the machine that made them.

Latents, ẑ, table-index maps and symbols must be bit-identical (entropy
decoding and the hyper-synthesis are exact integer work); decoded pixels may
differ from the stored decoded PNG by at most one rounding step, since float
convolutions may round differently on other CPUs, GPUs or ONNX Runtime
versions.  When a shipped model is replaced, rerun tests/golden/make_golden.py.
The files of earlier releases (tests/golden/format2/, tests/golden/l3ic-0.3/, the first format-3 models,
tests/golden/l3ic-0.4/, made before whole-image encodes were padded to whole ẑ cells, tests/golden/l3ic-0.4.1/,
made with the gains before ``export.fit_gains``, tests/golden/l3ic-0.4.3/, made with the hyperprior and tables
before l3ic 0.5, tests/golden/l3ic-0.5/, made before ẑ could have a table of its own, tests/golden/l3ic-0.7/,
the high model of 0.7 with its 32-value codebook, and tests/golden/l3ic-0.8/, coded before latents were coded about
the hyperprior's mean; frozen) must keep decoding.
"""
import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from l3ic import read_info
from l3ic.image import psnr

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
FORMAT2 = os.path.join(HERE, "format2")
RELEASE_03 = os.path.join(HERE, "l3ic-0.3")
RELEASE_04 = os.path.join(HERE, "l3ic-0.4")
RELEASE_041 = os.path.join(HERE, "l3ic-0.4.1")
RELEASE_043 = os.path.join(HERE, "l3ic-0.4.3")
RELEASE_05 = os.path.join(HERE, "l3ic-0.5")
RELEASE_07 = os.path.join(HERE, "l3ic-0.7")
RELEASE_08 = os.path.join(HERE, "l3ic-0.8")
WITH_QUALITY = (HERE, RELEASE_04, RELEASE_041, RELEASE_043, RELEASE_05, RELEASE_07, RELEASE_08)  # models with gains code at a
# quality


def _load(folder):
    with open(os.path.join(folder, "golden.json")) as f:
        return json.load(f)


GOLDEN, GOLDEN2 = _load(HERE), _load(FORMAT2)
CASES = sorted(GOLDEN["cases"])
ALL = [(folder, golden, c) for folder in (HERE, FORMAT2, RELEASE_03, RELEASE_04, RELEASE_041, RELEASE_043, RELEASE_05,
                                          RELEASE_07, RELEASE_08)
       for golden in [_load(folder)] for c in sorted(golden["cases"])]
IDS = [os.path.basename(folder) + "/" + case for folder, _, case in ALL]
REGENERATE = "the shipped %r model changed: rerun tests/golden/make_golden.py and commit its output"


def read(folder, name):
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


def pixels(folder, name):
    with Image.open(os.path.join(folder, name)) as image:
        return np.asarray(image)


@pytest.fixture(scope="module", autouse=True)
def same_models(codecs):
    from golden.make_golden import model_hashes
    assert set(GOLDEN["models"]) == {"low", "medium", "high"}  # every shipped model has golden files
    for name, hashes in GOLDEN["models"].items():
        assert model_hashes(codecs(name).model.manifest) == hashes, REGENERATE % name


@pytest.mark.parametrize("folder, golden, case", ALL, ids=IDS)
def test_golden_file_is_intact(folder, golden, case):
    data = read(folder, case + ".l3ic")
    expected = golden["cases"][case]
    assert hashlib.sha256(data).hexdigest() == expected["l3ic_sha256"]
    info = read_info(data)
    assert (info["width"], info["height"], info["mode"]) == (expected["width"], expected["height"], expected["mode"])
    assert info["format_version"] == (2 if folder == FORMAT2 else 3)
    assert ("quality" in info) == (folder in WITH_QUALITY)


@pytest.mark.parametrize("folder, golden, case", ALL, ids=IDS)
def test_symbols_are_bit_identical(folder, golden, case):
    from golden.make_golden import entropy_sha256, symbols_sha256
    data = read(folder, case + ".l3ic")
    assert symbols_sha256(data) == golden["cases"][case]["symbols_sha256"]
    assert read_info(data).get("mean_shifted", False) == (folder == HERE)  # every release before 0.9 rounded to integers
    if folder != FORMAT2:  # ẑ, the index maps from the integer hyper-synthesis (and gains), the bases and the symbols
        assert entropy_sha256(data) == golden["cases"][case]["entropy_sha256"]


@pytest.mark.parametrize("folder, golden, case", ALL, ids=IDS)
def test_decoded_pixels_within_one_rounding_step(codecs, folder, golden, case):
    expected = pixels(folder, case + ".decoded.png")
    data = read(folder, case + ".l3ic")
    decoded = codecs(read_info(data)["model"]).decode(data)  # earlier releases: through the legacy decoders
    assert decoded.shape == expected.shape and decoded.dtype == np.uint8
    diff = np.abs(decoded.astype(np.int16) - expected.astype(np.int16))
    assert int(diff.max()) <= 1, "decoded pixels differ by up to %d from the golden decode" % int(diff.max())
    assert abs(psnr(pixels(folder, case + ".source.png"), decoded) - golden["cases"][case]["psnr"]) < 0.05


@pytest.mark.parametrize("case", CASES)
def test_encoder_reproduces_the_latents(codecs, case):
    """Re-encoding the source gives the golden latents, except where float rounding lands on a quantiser boundary."""
    from l3ic import read_latents
    from golden.make_golden import model_of, quality_of
    golden = read_latents(read(HERE, case + ".l3ic"))
    ours = codecs(model_of(case)).encode_latents(pixels(HERE, case + ".source.png"), quality=quality_of(case))
    assert ours.shape == golden.shape
    assert np.mean(ours == golden) > 0.99


def test_version_1_files_still_decode():
    from golden.make_golden import symbols_sha256
    v1 = GOLDEN2["version_1"]
    data = read(FORMAT2, v1["file"])
    assert hashlib.sha256(data).hexdigest() == v1["l3ic_sha256"]
    assert read_info(data)["format_version"] == 1
    assert symbols_sha256(data) == v1["symbols_sha256"]
