"""Continuous quality (l3ic.quality): -q 0..100 across the models, exact gains, --target-bpp by search, refinement
that keeps the size."""
import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE
from l3ic import Codec, container, image as images
from l3ic.codec import encode_picture
from l3ic.target import encode_to_target
from l3ic.errors import FormatError, L3icError, ModelError
from l3ic.image import from_array
from l3ic.options import EncodeOptions
from l3ic import quality
from l3ic.quality import MODEL_PRESETS, PRESETS, Q_UNITS, QUALITY_SCALE, SCALE, lambda_of, model_for, served

LINE = re.compile(r"^(\S+) -> (\S+): \d+x\d+ RGB, (\d+) bytes, ([0-9.]+) bpp, model (\w+) q ([0-9.]+), [0-9.]+ s in all(; note: .*)?$")
STEPS = range(0, 101, 2)  # the -q steps the scale is held to: each grows a file by at most 15 % and loses no PSNR

def run(*args, cwd):
    return subprocess.run([sys.executable, "-m"] + list(args), cwd=str(cwd), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def photo():
    """A crop of the bundled photo (the models are made for photos: on noise-like images more bits can decode worse)."""
    with Image.open(SAMPLE) as image:
        return from_array(np.ascontiguousarray(np.asarray(image.convert("RGB"))[100:228, 60:252]))


@pytest.fixture(scope="module")
def ladder(photo, codecs):
    """q -> (bytes, PSNR) of the photo at q = 0, 10, ..., 100."""
    out = {}
    for q in STEPS:
        encoded = encode_picture(photo, EncodeOptions.validated(quality=q), codecs)
        out[q] = (len(encoded.data), images.psnr(photo.pixels, codecs(encoded.model).decode(encoded.data)))
    return out


def test_the_scale_cuts_0_to_100_into_one_stretch_per_model():
    assert [s.model for s in SCALE] == ["low", "medium", "high"]
    assert SCALE[0].start == 0 and SCALE[-1].end == 100 and all(a.end == b.start for a, b in zip(SCALE, SCALE[1:]))
    for s in SCALE:  # a boundary q goes to the larger model
        assert model_for(s.start * Q_UNITS) == s.model and model_for(s.end * Q_UNITS - 1) == s.model
        assert quality.to_model(s.model, s.start * Q_UNITS) == round(s.model_start * QUALITY_SCALE)
        assert quality.to_model(s.model, s.end * Q_UNITS) == round(s.model_end * QUALITY_SCALE)
    for name, q in PRESETS.items():  # a preset is its model's own q, inside the stretch that model serves
        assert model_for(round(q * Q_UNITS)) == name
        assert quality.to_model(name, round(q * Q_UNITS)) == MODEL_PRESETS[name] * QUALITY_SCALE
    assert lambda_of(MODEL_PRESETS["medium"]) == 50 and lambda_of(0) > lambda_of(50) > lambda_of(100)


def test_the_q_a_file_shows_makes_that_file_again():
    """Every own q of each model's stretch (a file of any release may hold it) has a q that makes it
    (``from_model``), so ``l3ic info``'s q reproduces a file; and the map never goes down."""
    for s in SCALE:
        own = [quality.to_model(s.model, u) for u in range(s.start * Q_UNITS, s.end * Q_UNITS + 1)]
        assert own == sorted(own)
        for m in range(round(s.model_start * QUALITY_SCALE), round(s.model_end * QUALITY_SCALE) + 1):
            shown = quality.from_model(s.model, m)
            assert quality.to_model(s.model, shown) == m and model_for(shown) == s.model or m == own[-1]


@pytest.mark.parametrize("name", ["low", "medium", "high"])
def test_each_model_serves_its_stretch_and_encodes_at_its_preset_by_default(name, codecs, photo):
    codec = codecs(name)
    lo, hi = codec.quality_range
    start, end = served(name)
    assert lo <= start and end <= hi  # its grid covers all the q that -q gives it
    data = codec.encode(photo)
    assert data == codec.encode(photo, quality=PRESETS[name]) == codec.encode(photo, quality=name)
    assert container.L3icFile.parse(data).header.quality == MODEL_PRESETS[name] * QUALITY_SCALE
    assert codec.default_quality == PRESETS[name]
    with pytest.raises(ModelError, match="outside this model's range"):
        codec.encode(photo, quality=hi + 0.01 if hi < 100 else lo - 0.01)
    with pytest.raises(L3icError, match="quality must be a number 0..100"):
        codec.encode(photo, quality="75%")


def test_each_step_of_q_grows_the_file_a_little(ladder):
    """No jump in size: each step of 2 grows the file, by at most 15 % inside a model's stretch and 25 % where the
    models hand over (l3ic 0.6 jumped 32 % and 46 % on this photo, as q crossed 45 and 80).  The quality climbs
    inside each stretch; at a hand-over it can dip on some content (the open part of the quality-range issue)."""
    sizes = np.array([ladder[q][0] for q in STEPS])
    psnrs = np.array([ladder[q][1] for q in STEPS])
    switch = np.array([model_for(q * Q_UNITS) != model_for((q - 2) * Q_UNITS) for q in STEPS[1:]])
    growth, change = sizes[1:] / sizes[:-1], np.diff(psnrs)
    assert switch.sum() == 2 and growth.min() >= 1.0
    assert growth[~switch].max() <= 1.15 and growth[switch].max() <= 1.25, list(zip(STEPS[1:], growth.round(3)))
    assert change[~switch].min() >= -0.1, list(zip(STEPS[1:], change.round(2)))
    assert sizes[-1] > 3 * sizes[0] and psnrs[-1] > psnrs[0] + 4


def test_the_file_carries_its_quality(photo, codecs, tmp_path):
    data = codecs("medium").encode(photo, quality=57.25)
    path = tmp_path / "q.l3ic"
    path.write_bytes(data)
    info = l3ic_info(path)
    assert info["quality"] == 57.25 and round(info["model_quality"] * QUALITY_SCALE) == quality.to_model("medium", 57250)
    assert images.psnr(photo.pixels, Codec("medium", "cpu").decode(data)) > 25  # nothing but the file is needed


def l3ic_info(path):
    from l3ic import read_info
    return read_info(str(path))


def test_the_quality_field_is_checked(photo, codecs):
    data = bytearray(codecs("medium").encode(photo, quality=60))
    h = container.L3icFile.parse(bytes(data)).header
    assert h.flags & container.FLAG_QUALITY
    lo, hi = codecs("medium").model.entropy_model.qualities  # its own q, as files record it
    for quality in (lo - 1, hi + 1):  # a valid field, outside the model's range: refused, not decoded with wrong gains
        other = container.write(rebuilt(h, quality=quality), *chunks_of(bytes(data)))
        with pytest.raises(ModelError, match="quality field does not fit model 'medium'"):
            codecs("medium").decode(other)
    with pytest.raises(ModelError, match="quality field"):  # a gained model's file always says its quality
        codecs("medium").decode(container.write(rebuilt(h, quality=0, flags=0), *chunks_of(bytes(data))))
    with pytest.raises(ValueError, match="quality 20001 is outside 0..20000"):
        rebuilt(h, quality=20001)
    with pytest.raises(ValueError, match="without FLAG_QUALITY"):
        rebuilt(h, quality=5, flags=0)


def rebuilt(h, **change):
    fields = {k: getattr(h, k) for k in h.__dataclass_fields__}
    fields.update(change)
    return container.Header(**fields)


def chunks_of(data):
    parsed = container.L3icFile.parse(data)
    return [parsed.tile_chunks(t) for t in range(parsed.header.n_tiles)], dict(parsed.side_data), parsed.z_chunks()


def test_gains_are_integer_exact_between_grid_points(codecs):
    em = codecs("medium").model.entropy_model
    grid = em.quality_grid
    exponents = em.gains.exponents.astype(np.int64)
    for point, q in enumerate(grid):  # at a grid point: that point's exponents
        assert em.gain(int(q)).exponents.tolist() == exponents[point].tolist()
    # by hand, 2 channels: offsets 1/4 and 3/4; -1 -> 0 over 100 hundredths flips at 75 / 25
    toy = dataclasses.replace(em.gains, quality_grid=np.array([1000, 1100]), exponents=np.array([[-1, -1], [0, 0]]),
                              corrections=np.ones((2, 2), np.float32))
    assert [toy.gain(q).exponents.tolist() for q in (1000, 1024, 1025, 1074, 1075, 1100)] == \
        [[-1, -1], [-1, -1], [-1, 0], [-1, 0], [0, 0], [0, 0]]
    for b in range(1, len(grid)):
        qa, qb = int(grid[b - 1]), int(grid[b])
        for q in (qa, (qa + qb) // 2, qb - 1, qb):
            t, n = q - qa, len(exponents[b])
            expected = [int((2 * n * (int(a) * (qb - qa - t) + int(c) * t) + (qb - qa) * (2 * k + 1)) // (2 * n * (qb - qa)))
                        for k, (a, c) in enumerate(zip(exponents[b - 1], exponents[b]))]
            gain = em.gain(q)
            assert gain.exponents.tolist() == expected
            assert gain.multipliers.tolist() == em.gains.multipliers[np.array(expected) + em.gains.max_exponent].tolist()
    z = np.random.default_rng(0).integers(0, 16, (em.z_channels, 3, 2)).astype(np.uint8)
    gain = em.gain(5333)
    base, index = em.parameters(z, gain)
    plain_base, plain_index = em.parameters(z)
    phases = em.phases
    mean = (plain_base.astype(np.int64) * phases + (plain_index & (phases - 1)))  # the ungained mean, in steps
    scale = plain_index.astype(np.int64) // phases
    for c, (m, g) in enumerate(zip(gain.exponents.tolist(), gain.multipliers.tolist())):  # Python ints: the reference
        want_mean = [min(max((int(v) * g + (1 << (gain.bits - 1))) >> gain.bits, em.mean_head.lo), em.mean_head.hi)
                     for v in mean[c].ravel()]
        want_scale = [min(max(int(k) + m, em.scale_head.lo), em.scale_head.hi) for k in scale[c].ravel()]
        got_mean = (base[c].astype(np.int64) * phases + (index[c] & (phases - 1))).ravel().tolist()
        assert got_mean == want_mean and (index[c].astype(np.int64) // phases).ravel().tolist() == want_scale


@pytest.mark.parametrize("fraction", [0.15, 0.4, 0.6, 0.85])
def test_target_bpp_gives_the_largest_file_within_it(photo, codecs, ladder, fraction):
    pixels = photo.width * photo.height
    low, high = 8.0 * ladder[0][0] / pixels, 8.0 * ladder[100][0] / pixels
    target = low * (high / low) ** fraction
    encoded = encode_to_target(photo, target, codecs)
    bpp = 8.0 * len(encoded.data) / pixels
    assert bpp <= target and encoded.note is None
    assert abs(round(encoded.quality * Q_UNITS) - encoded.quality * Q_UNITS) < 1e-6
    # the q the file records reproduces it with -q, whose model it names ...
    again = encode_picture(photo, EncodeOptions.validated(quality=encoded.quality), codecs)
    assert (again.data, again.model) == (encoded.data, encoded.model)
    # ... and it is the largest that fits: within 1 % of the target, or the next q up is over it
    if bpp < 0.99 * target:
        above = encode_picture(photo, EncodeOptions.validated(quality=encoded.quality + 0.01), codecs)
        assert 8.0 * len(above.data) / pixels > target


def test_a_target_below_the_range_gives_the_smallest_file_and_a_note(photo, codecs, ladder, tmp_path):
    encoded = encode_to_target(photo, 0.001, codecs)
    assert len(encoded.data) == ladder[0][0] and encoded.quality == 0
    assert re.match(r"^no quality reaches 0\.001 bpp: the smallest file \(q 0\) is [0-9.]+ bpp$", encoded.note)
    Image.fromarray(photo.pixels).save(tmp_path / "p.png")
    result = run("l3ic", "encode", "p.png", "--target-bpp", "0.001", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    match = LINE.match(result.stdout.strip())
    assert match and match.group(5) == "low" and match.group(6) == "0" and "no quality reaches" in match.group(7)


def test_a_target_above_the_range_gives_the_largest_file_and_a_note(photo, codecs, ladder):
    encoded = encode_to_target(photo, 30.0, codecs)
    assert len(encoded.data) == ladder[100][0] and encoded.quality == 100
    assert re.match(r"^no quality needs 30\.000 bpp: the largest file \(q 100\) is [0-9.]+ bpp$", encoded.note)


def test_the_command_line_and_pillow_take_numbers(photo, tmp_path):
    import l3ic.pillow  # noqa: F401
    Image.fromarray(photo.pixels).save(tmp_path / "p.png")
    result = run("l3ic", "encode", "p.png", "-q", "72.5", "-o", "a.l3ic", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    match = LINE.match(result.stdout.strip())
    assert match and (match.group(5), match.group(6)) == (model_for(72500), "72.5")
    Image.fromarray(photo.pixels).save(tmp_path / "b.l3ic", quality=72.5)
    assert (tmp_path / "b.l3ic").read_bytes() == (tmp_path / "a.l3ic").read_bytes()
    Image.fromarray(photo.pixels).save(tmp_path / "c.l3ic", quality=85)  # what generic code that saves JPEGs does
    assert container.L3icFile.parse((tmp_path / "c.l3ic").read_bytes()).header.quality == quality.to_model(
        model_for(85000), 85000)
    assert run("l3ic", "encode", "p.png", "-q", "medium", "-o", "m.l3ic", cwd=tmp_path).returncode == 0
    assert run("l3ic", "encode", "p.png", "-q", str(PRESETS["medium"]), "-o", "n.l3ic", cwd=tmp_path).returncode == 0
    assert (tmp_path / "m.l3ic").read_bytes() == (tmp_path / "n.l3ic").read_bytes()
    bad = run("l3ic", "encode", "p.png", "-q", "101", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.strip() == "l3ic: error: --quality must be a number 0..100 or one of low, medium, high, got '101'"
    with pytest.raises(ValueError, match="quality must be a number 0..100"):
        Image.fromarray(photo.pixels).save(tmp_path / "d.l3ic", quality=-5)


def test_refinement_keeps_the_size_and_improves_the_image(photo, codecs):
    codec = codecs("medium")
    plain = codec.encode(photo, quality=60)
    refined = codec.encode(photo, quality=60, refine=30)
    assert refined != plain and len(refined) <= len(plain)
    assert images.psnr(photo.pixels, codec.decode(refined)) > images.psnr(photo.pixels, codec.decode(plain)) + 0.1
    assert container.L3icFile.parse(refined).header.quality == quality.to_model("medium", 60000)


def test_batch_with_target(photo, tmp_path):
    for name in ("one.png", "two.png"):
        Image.fromarray(photo.pixels).save(tmp_path / name)
    result = run("l3ic", "encode", str(tmp_path), "--target-bpp", "0.8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 images done, 0 failed")
    assert all(8.0 * os.path.getsize(tmp_path / n) / (128 * 192) <= 0.8 for n in ("one.l3ic", "two.l3ic"))


def test_the_scale_benchmark_hands_over_where_the_curves_cross():
    """benchmarks.qscale: the larger model takes over at the lowest rate from which its PSNR stays ahead, and the
    stretches share 0..100 in proportion to the log rate each spans."""
    from benchmarks.qscale import handover, proposed_scale
    log = lambda *bpp: np.log(bpp).tolist()
    low = {"q": [0, 50, 100], "log_bpp": log(0.1, 0.2, 0.4), "psnr": [28, 31, 32]}
    medium = {"q": [0, 50, 100], "log_bpp": log(0.2, 0.4, 0.8), "psnr": [29.5, 33, 35]}  # ahead from 0.303 bpp (31.6 dB)
    high = {"q": [0, 100], "log_bpp": log(0.4, 1.6), "psnr": [33, 38]}  # level with medium at 0.4, ahead above it
    rate, q_small, q_large = handover(low, medium)
    assert np.exp(rate) == pytest.approx(0.2 * 2 ** 0.6, rel=0.005)
    assert q_small == pytest.approx(80, abs=0.5) and q_large == pytest.approx(30, abs=0.5)
    scale, _ = proposed_scale({"low": low, "medium": medium, "high": high})
    assert [s.model for s in scale] == ["low", "medium", "high"]
    assert [s.start for s in scale] == [0, 40, 50] and scale[-1].end == 100  # log2(bpp / 0.1): 0, 1.6, 2 of 4
    assert (scale[1].model_start, scale[1].model_end, scale[2].model_start) == pytest.approx((30, 50, 0), abs=0.5)
    assert scale[0].model_start == 0 and scale[-1].model_end == 100
