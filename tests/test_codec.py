"""The Python API end to end with the shipped default model."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from l3ic import Codec, FormatError, L3icError, ModelError, read_info, read_latents
from l3ic.image import psnr
from l3ic.model import find_model

from conftest import photo_like


def manifest(name="medium"):
    with open(os.path.join(find_model(name), "manifest.json")) as f:
        return json.load(f)


def test_sample_round_trip_meets_the_manifest(codec, sample):
    data = codec.encode(sample)
    decoded = codec.decode(data)
    assert decoded.shape == sample.shape and decoded.dtype == np.uint8
    expected = manifest()["sample"]
    assert psnr(sample, decoded) > expected["psnr"] - 0.1
    assert 8.0 * len(data) / (sample.shape[0] * sample.shape[1]) < expected["bpp"] * 1.01


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (13, 17), (8, 8), (33, 65)])
def test_any_size_round_trips(codec, shape):
    image = photo_like(*shape, seed=sum(shape))
    decoded = codec.decode(codec.encode(image))
    assert decoded.shape == image.shape


def test_grayscale_stays_grayscale(codec):
    gray = photo_like(40, 56)[:, :, 1]
    data = codec.encode(gray)
    assert read_info(data)["mode"] == "L"
    decoded = codec.decode(data)
    assert decoded.shape == gray.shape
    assert psnr(gray, decoded) > 20


def test_alpha_is_kept_losslessly(codec):
    rgba = np.dstack([photo_like(30, 41), np.arange(30 * 41, dtype=np.uint32).reshape(30, 41).astype(np.uint8)])
    decoded = codec.decode(codec.encode(rgba))
    assert decoded.shape == rgba.shape
    np.testing.assert_array_equal(decoded[:, :, 3], rgba[:, :, 3])


def test_pil_images_are_accepted(codec, sample):
    decoded = codec.decode_to_pil(codec.encode(Image.fromarray(sample)))
    assert decoded.size == (sample.shape[1], sample.shape[0]) and decoded.mode == "RGB"


def test_encoding_is_deterministic(codec):
    image = photo_like(64, 80)
    assert codec.encode(image) == codec.encode(image)


def test_channel_subset_matches_full_decode(codec, sample):
    data = codec.encode(sample)
    full = read_latents(data)
    subset = [5, 0, 3]
    np.testing.assert_array_equal(read_latents(data, subset), full[subset])
    assert full.shape == (codec.model.channels, 64, 48)
    np.testing.assert_array_equal(full, codec.encode_latents(sample))


def test_fewer_channels_give_a_coarser_but_valid_preview(codec, sample):
    data = codec.encode(sample)
    full = psnr(sample, codec.decode(data))
    first8 = psnr(sample, codec.decode(data, channels=range(8)))
    last8 = psnr(sample, codec.decode(data, channels=range(codec.model.channels - 8, codec.model.channels)))
    assert full > first8 > last8  # channels are ordered by importance


def test_latents_round_trip(codec, sample):
    latents = codec.encode_latents(sample)
    assert latents.dtype == np.int16 and latents.min() >= -15 and latents.max() <= 16
    data = codec.encode(sample)
    np.testing.assert_array_equal(read_latents(data), latents)
    image = codec.decode_latents(latents)
    np.testing.assert_array_equal(image, codec.decode(data))


def test_info(codec, sample):
    data = codec.encode(sample)
    info = read_info(data)
    assert (info["width"], info["height"], info["mode"]) == (384, 512, "RGB")
    assert info["model"] == "medium" and info["bytes"] == len(data)
    assert info["channels"] == codec.model.channels and info["tiles"] == 1


def test_file_from_another_model_is_refused(codec, sample, tmp_path):
    import shutil
    other = tmp_path / "other"
    shutil.copytree(find_model("medium"), other)
    with open(other / "manifest.json") as f:
        m = json.load(f)
    m["files"]["decoder.onnx"]["sha256"] = "0" * 64
    with open(other / "manifest.json", "w") as f:
        json.dump(m, f)
    data = codec.encode(sample)
    with pytest.raises(ModelError, match="made with model"):
        Codec(str(other), "cpu").decode(data)


def test_damaged_model_file_is_refused(tmp_path, sample):
    import shutil
    damaged = tmp_path / "damaged"
    shutil.copytree(find_model("medium"), damaged)
    with open(damaged / "decoder.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    codec = Codec(str(damaged), "cpu")
    with pytest.raises(ModelError, match="sha256"):
        codec.decode(codec.encode(sample[:16, :16]))


def test_unknown_model_and_provider():
    with pytest.raises(ModelError, match="unknown model"):
        Codec("ultra")
    with pytest.raises(ModelError, match="unknown provider"):
        Codec("medium", "tpu")


def test_bad_arrays_are_clear_errors(codec):
    for bad in (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(L3icError):
            codec.encode(bad)


def test_hostile_streams_fail_cleanly(codec):
    """Thousands of truncated, bit-flipped and random streams: each one a clean L3icError."""
    data = codec.encode(photo_like(24, 40))
    rng = np.random.default_rng(1234)
    cases = [data[:n] for n in range(0, len(data))]
    for _ in range(1500):
        flipped = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            flipped[rng.integers(len(data))] ^= 1 << rng.integers(8)
        cases.append(bytes(flipped))
    cases += [rng.bytes(rng.integers(0, 400)) for _ in range(500)]
    cases += [b"L3IC" + rng.bytes(rng.integers(0, 200)) for _ in range(500)]
    for case in cases:
        if case == data:
            continue
        with pytest.raises(L3icError):
            codec.decode(case)
    assert len(cases) > 2500


def test_format_error_is_an_l3ic_error():
    assert issubclass(FormatError, L3icError)
