"""Encode and codec options: validated once (l3ic.options) for the API, the CLI, Ray and the Pillow plugin."""
import os

import numpy as np
import pytest

from l3ic import Codec, L3icError
from l3ic.options import CodecOptions, EncodeOptions
from l3ic.quality import served

from conftest import photo_like


def test_encode_defaults_and_choices():
    assert EncodeOptions.validated() == EncodeOptions("medium", None, None, 0)
    assert EncodeOptions.validated(quality="high") == EncodeOptions("high", None, None, 0)  # a preset names its model
    assert EncodeOptions.validated(model="some/folder", refine=np.int64(3)) == EncodeOptions("some/folder", None, None, 3)
    chosen = EncodeOptions.validated(target_bpp=0.5)
    assert (chosen.model, chosen.quality, chosen.target_bpp) == (None, None, 0.5)
    with pytest.raises(Exception):
        chosen.refine = 2  # frozen: a validated value stays valid


MEDIUM, HIGH = served("medium")[0], served("high")[0]  # where l3ic.quality.SCALE hands over


@pytest.mark.parametrize("quality, model, q", [
    (0, "low", 0.0), (MEDIUM / 2, "low", MEDIUM / 2), (MEDIUM - 0.001, "low", MEDIUM - 0.001),
    (MEDIUM, "medium", MEDIUM), (str((MEDIUM + HIGH) / 2), "medium", (MEDIUM + HIGH) / 2),
    (HIGH - 0.0001, "high", HIGH), (HIGH, "high", HIGH), (np.float32(99.99), "high", 99.99), (100, "high", 100.0),
    (MEDIUM / 2 + 0.0003, "low", MEDIUM / 2)])  # the scale counts in thousandths
def test_a_quality_number_picks_the_model_that_serves_it(quality, model, q):
    assert EncodeOptions.validated(quality=quality) == EncodeOptions(model, q, None, 0)


def test_presets_name_their_model_in_any_case():
    assert EncodeOptions.validated(quality=" HIGH ") == EncodeOptions.validated(quality="high") == EncodeOptions("high", None, None, 0)


def test_a_quality_number_goes_with_a_model_folder():
    assert EncodeOptions.validated(model="my/model", quality=50) == EncodeOptions("my/model", 50.0, None, 0)


@pytest.mark.parametrize("options, message", [
    (dict(refine=-1), "refine must be a number of steps >= 0, got -1"),
    (dict(refine=1.5), "refine must be"),
    (dict(refine=True), "refine must be"),
    (dict(refine="3"), "refine must be"),
    (dict(quality="ultra"), "quality must be a number 0..100 or one of low, medium, high, got 'ultra'"),
    (dict(quality=100.01), "quality must be a number 0..100"),
    (dict(quality=-1), "quality must be a number 0..100"),
    (dict(quality=float("nan")), "quality must be a number 0..100"),
    (dict(quality=True), "quality must be a number 0..100"),
    (dict(quality=[50]), "quality must be a number 0..100"),
    (dict(model="medium", quality="medium"), "give model or the preset quality medium, not both"),
    (dict(model=""), "model must be"),
    (dict(model=3), "model must be"),
    (dict(target_bpp=1, quality="medium"), "target_bpp chooses the model and quality itself: drop model/quality"),
    (dict(target_bpp=1, quality=50), "target_bpp chooses the model and quality itself"),
    (dict(target_bpp=1, model="medium"), "target_bpp chooses the model and quality itself"),
    (dict(target_bpp=0), "target_bpp must be a positive number of bits per pixel, got 0"),
    (dict(target_bpp=float("nan")), "target_bpp must be"),
    (dict(target_bpp="0.5"), "target_bpp must be"),
])
def test_bad_encode_options_are_one_line_errors(options, message):
    with pytest.raises(L3icError, match="^" + message.replace("(", r"\(")) as caught:
        EncodeOptions.validated(**options)
    assert "\n" not in str(caught.value)


def test_flags_name_the_command_line_options():
    with pytest.raises(L3icError, match="^--target-bpp chooses the model and quality itself: drop --model/--quality$"):
        EncodeOptions.validated(model="low", target_bpp=1, flags=True)
    with pytest.raises(L3icError, match="^--refine must be"):
        EncodeOptions.validated(refine=-2, flags=True)
    with pytest.raises(L3icError, match="^--quality must be a number 0..100"):
        EncodeOptions.validated(quality="abc", flags=True)


def test_codec_options():
    assert CodecOptions.validated() == CodecOptions("auto", 1 << 27, None)
    assert CodecOptions.validated("cpu", 100, 2) == CodecOptions("cpu", 100, 2)
    assert CodecOptions.validated(["CPUExecutionProvider"]).providers == ("CPUExecutionProvider",)


@pytest.mark.parametrize("options, message", [
    (dict(providers="tpu"), "provider must be auto, cpu, cuda or a list of ONNX Runtime providers, got 'tpu'"),
    (dict(providers=[]), "provider must be"),
    (dict(providers=3), "provider must be"),
    (dict(max_pixels=0), "max_pixels must be a positive number of pixels, got 0"),
    (dict(max_pixels=2.5), "max_pixels must be"),
    (dict(threads=0), "threads must be a positive number of threads, got 0"),
])
def test_bad_codec_options_are_one_line_errors(options, message):
    with pytest.raises(L3icError, match="^" + message):
        CodecOptions.validated(**options)
    with pytest.raises(L3icError, match="^" + message):
        Codec("medium", **options)


def test_the_api_validates_with_the_same_options(codec):
    from l3ic.target import encode_to_target
    from l3ic.image import from_array
    picture = from_array(photo_like(16, 16))
    for call in (lambda: codec.encode(picture, refine=-1), lambda: codec.encode_latents(picture, refine=-1),
                 lambda: encode_to_target(picture, 1.0, lambda name: codec, refine=-1)):
        with pytest.raises(L3icError, match="^refine must be a number of steps >= 0, got -1$"):
            call()
    with pytest.raises(L3icError, match="^target_bpp must be a positive number"):
        encode_to_target(picture, -1.0, lambda name: codec)


def test_codec_cache_passes_its_settings_to_codec():
    from l3ic.codec import CodecCache
    codec = CodecCache(providers="cpu", threads=1, max_pixels=12345)("medium")
    assert (codec.max_pixels, codec.model.threads, codec.model.providers) == (12345, 1, ["CPUExecutionProvider"])


def test_option_checks_live_in_one_module():
    """No second copy of the refine, quality or target-rate checks in the tools."""
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "l3ic")
    for name in ("codec.py", "target.py", "encode.py", "pillow.py", "batch_ray.py"):
        with open(os.path.join(src, name), encoding="utf-8") as f:
            text = f.read()
        for phrase in ("must be a number of steps", "chooses the model itself", "not both", "must be positive"):
            assert phrase not in text, (name, phrase)
