"""Encoder-side refinement: its rate model, the shipped decoder_gradient.onnx, and what users get from it."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from l3ic import Codec
from l3ic import image as images
from l3ic.errors import L3icError, ModelError
from l3ic.model import find_model
from l3ic.refine.descent import soft_round
from l3ic.refine.rate import hard_bits, soft_bits
from conftest import photo_like


def test_soft_bits_equals_hard_bits_on_integers_and_its_gradient_is_the_derivative():
    rng = np.random.default_rng(0)
    q = np.clip(np.rint(rng.normal(0, 2, (3, 20, 30))), -15, 16)
    assert soft_bits(q, -15, 32)[0] == pytest.approx(hard_bits(q, -15, 32), rel=1e-9)
    y = np.clip(rng.normal(0, 2, (3, 20, 30)), -15, 16).astype(np.float64)
    y[np.abs(y - np.rint(y)) < 0.02] += 0.05  # keep clear of the kinks at integers, where the slope changes
    _, gradient = soft_bits(y, -15, 32)
    direction = rng.normal(size=y.shape)
    eps = 1e-4
    numeric = (soft_bits(y + eps * direction, -15, 32)[0] - soft_bits(y - eps * direction, -15, 32)[0]) / (2 * eps)
    assert float(np.sum(gradient * direction)) == pytest.approx(numeric, rel=1e-3)


def test_soft_round_hardens_to_rounding_and_its_slope_is_the_derivative():
    rng = np.random.default_rng(1)
    y = rng.uniform(-14, 15, 2000)
    y[np.abs(y - np.floor(y) - 0.5) < 0.05] += 0.2  # the cold case needs a clear nearest integer
    cold, _ = soft_round(y, 1e-3, np.random.default_rng(0), -15, 16)
    np.testing.assert_allclose(cold, np.rint(y), atol=1e-6)
    warm, slope = soft_round(y, 0.3, np.random.default_rng(0), -15, 16)
    assert np.all((warm >= np.floor(y)) & (warm <= np.floor(y) + 1))
    eps = 1e-5
    plus, _ = soft_round(y + eps, 0.3, np.random.default_rng(0), -15, 16)
    minus, _ = soft_round(y - eps, 0.3, np.random.default_rng(0), -15, 16)
    inside = (np.abs(y - np.rint(y)) > 1e-3)  # away from the integers, where floor() jumps
    np.testing.assert_allclose(((plus.astype(np.float64) - minus) / (2 * eps))[inside], slope[inside], rtol=0.05, atol=0.05)


def test_decoder_gradient_matches_the_decoder_and_its_own_finite_differences(codec):
    """The forward part reproduces decoder.onnx; the gradient's length matches the slope of the squared error
    along it, and its largest element in several channels matches the slope along that element alone
    (tests/test_export.py checks every element against TensorFlow's own gradient)."""
    model = codec.model
    rgb = photo_like(48, 64, seed=3)
    q = codec.encode_latents(rgb).astype(np.float32)
    sse, gradient = model.squared_error_and_gradient(q, rgb)
    decoded = model.run_decoder(q)  # float, clipped to [0, 1]
    assert sse == pytest.approx(float(np.sum((decoded.astype(np.float64) * 255 - rgb) ** 2)), rel=1e-4)
    direction = gradient / np.linalg.norm(gradient)
    eps = 1e-2
    plus, _ = model.squared_error_and_gradient(q + eps * direction, rgb)
    minus, _ = model.squared_error_and_gradient(q - eps * direction, rgb)
    assert float(np.linalg.norm(gradient)) == pytest.approx((plus - minus) / (2 * eps), rel=1e-2)
    for c in np.linspace(0, q.shape[0] - 1, 4).astype(int):  # element by element, in channels across the range
        at = (c,) + np.unravel_index(np.abs(gradient[c]).argmax(), gradient[c].shape)
        step = np.zeros_like(q)
        step[at] = eps
        slope = (model.squared_error_and_gradient(q + step, rgb)[0] - model.squared_error_and_gradient(q - step, rgb)[0]) / (2 * eps)
        assert gradient[at] == pytest.approx(slope, rel=0.02)


def test_refinement_gives_a_better_rate_distortion_trade_off(codec, sample):
    """On the bundled photo: the refined file decodes to a much better image in the same size (on the medium
    model's curve, 0.5 dB costs about 10 % more bits; refinement measured +0.8 dB for 3 % fewer bytes here)."""
    crop = sample[:192, :256]
    plain, refined = codec.encode(crop), codec.encode(crop, refine=30)
    psnr_plain, psnr_refined = images.psnr(crop, codec.decode(plain)), images.psnr(crop, codec.decode(refined))
    assert 0.95 * len(plain) <= len(refined) <= len(plain)
    assert psnr_refined > psnr_plain + 0.5
    assert codec.encode(crop, refine=30) == refined  # seeded: the same image gives the same file


def test_refinement_keeps_the_size_of_an_image_off_the_side_information_grid(codec, sample):
    """300 x 210 px is not made of whole ẑ cells (32 px): refinement starts from the latents and ẑ the plain file
    codes, so it fills that file's size (it used to refine the image padded to 32 px, whose plain coding is
    smaller, and came out a few per cent smaller than the plain file)."""
    crop = sample[40:250, 30:330]
    plain, refined = codec.encode(crop), codec.encode(crop, refine=30)
    assert 0.98 * len(plain) <= len(refined) <= len(plain)
    assert images.psnr(crop, codec.decode(refined)) > images.psnr(crop, codec.decode(plain)) + 0.5


def test_refinement_of_a_tiled_image_decodes_like_any_file(codec):
    rgb = photo_like(2100, 72, seed=5)  # 263 latent rows: three tiles, the first two cut into two refinement blocks each
    data = codec.encode(rgb, refine=2)
    assert codec.decode(data).shape == rgb.shape
    assert images.psnr(rgb, codec.decode(data)) >= images.psnr(rgb, codec.decode(codec.encode(rgb))) - 0.05


def test_refinement_keeps_alpha(codec):
    """The file-level check compares the decoded colours with the image's, whatever alpha travels beside them."""
    rgba = np.dstack([photo_like(40, 44, seed=6), np.linspace(0, 255, 40 * 44).astype(np.uint8).reshape(40, 44)])
    decoded = codec.decode(codec.encode(rgba, refine=1))
    assert decoded.shape == rgba.shape
    np.testing.assert_array_equal(decoded[:, :, 3], rgba[:, :, 3])


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_refine_values_are_clear_errors(codec, bad):
    with pytest.raises(L3icError, match="refine"):
        codec.encode(photo_like(16, 16), refine=bad)


def test_a_model_exported_before_refinement_says_how_to_upgrade(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(find_model("low"), old, ignore=shutil.ignore_patterns("keras", "decoder_gradient.onnx"))
    with open(old / "manifest.json") as f:
        manifest = json.load(f)
    del manifest["refine"], manifest["files"]["decoder_gradient.onnx"]
    with open(old / "manifest.json", "w") as f:
        json.dump(manifest, f)
    codec = Codec(str(old), "cpu")
    assert codec.decode(codec.encode(photo_like(16, 24))).shape == (16, 24, 3)  # plain encoding still works
    with pytest.raises(ModelError, match="--upgrade"):
        codec.encode(photo_like(16, 24), refine=3)


def test_cli_refine_writes_a_smaller_or_better_file_and_rejects_negative_steps(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(photo_like(64, 96, seed=1)).save(src)
    run = lambda *args: subprocess.run([sys.executable, "-m", "runtime.encode", str(src), *args],
                                       capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    done = run("-o", str(tmp_path / "out.l3ic"), "--refine", "5", "--verify")
    assert done.returncode == 0, done.stderr
    assert "PSNR" in done.stdout
    bad = run("-o", str(tmp_path / "bad.l3ic"), "--refine", "-2")
    assert bad.returncode != 0 and "--refine" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.l3ic").exists()


def test_pillow_save_takes_refine_and_rejects_bad_values(tmp_path):
    import l3ic.pillow  # noqa: F401  (registers the plugin)
    image = Image.fromarray(photo_like(32, 48, seed=2))
    image.save(tmp_path / "x.l3ic", refine=2)
    assert Image.open(tmp_path / "x.l3ic").size == (48, 32)
    with pytest.raises(ValueError, match="refine"):
        image.save(tmp_path / "y.l3ic", refine=-1)
