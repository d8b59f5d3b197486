"""The RD benchmark's aggregation on synthetic curves: BD-rate against published curves and per image (no codecs, no model)."""
import json
import os

import pytest

from benchmarks import rd

PUBLISHED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "reference", "compressai-kodak.json")


def points(bpps, psnrs, ms_db=None):
    return [{"bpp": b, "psnr": q, "ms_ssim_db": m} for b, q, m in zip(bpps, psnrs, ms_db or [None] * len(bpps))]


def rows(codec, image, bpps, psnrs):
    return [{"image": image, "codec": codec, "quality": i, "bpp": b, "psnr": q} for i, (b, q) in enumerate(zip(bpps, psnrs))]


def test_ten_percent_more_bits_everywhere_is_plus_ten_percent():
    anchor = points([0.2, 0.45, 0.9, 1.6], [28.1, 31.0, 34.2, 37.0])
    test = points([1.1 * p["bpp"] for p in anchor], [p["psnr"] for p in anchor])
    value, span, coverage = rd.bd_over_overlap(anchor, test, "psnr")
    assert value == pytest.approx(10.0, abs=1e-9)
    assert span == [28.1, 37.0] and coverage == pytest.approx(1.0)
    # half the test curve above the anchor's range: the BD-rate uses the overlap only and says how much it covers
    value, span, coverage = rd.bd_over_overlap(anchor, points([0.99, 2.0, 4.0], [34.2, 37.0, 40.0]), "psnr")
    assert span == [34.2, 37.0] and coverage == pytest.approx(2.8 / 5.8)
    assert rd.bd_over_overlap(anchor, points([3.0, 5.0], [40.0, 45.0]), "psnr") == (None, None, None)


def test_per_image_bd_and_summary():
    bpp, q = [0.2, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.5]
    results = []
    for image, x265_factor, webp_factor in (("a.png", 1.10, 0.9), ("b.png", 1.60, 1.2), ("c.png", 1.30, None)):
        results += rows("l3ic", image, bpp, q)
        results += rows("x265", image, [b / x265_factor for b in bpp], q)
        if webp_factor:  # l3ic needs webp_factor times webp's bits
            results += rows("webp", image, [b / webp_factor for b in bpp], q)
        else:  # webp's curve lies entirely above l3ic's PSNR range: no overlap
            results += rows("webp", image, bpp, [40.0, 42.0, 44.0, 46.0])
    results += rows("l3ic", "c.png", [4.0], [float("inf")])  # a lossless point is dropped, not an error
    table = rd.per_image_bd(results)
    assert list(table) == ["a.png", "b.png", "c.png"] and list(table["a.png"]) == ["webp", "x265"]
    assert table["a.png"]["x265"] == pytest.approx(10.0) and table["b.png"]["x265"] == pytest.approx(60.0)
    assert table["a.png"]["webp"] == pytest.approx(-10.0) and table["c.png"]["webp"] is None
    stats = rd.per_image_summary(table)
    x265, webp = stats["x265"], stats["webp"]
    assert x265["worst"] == pytest.approx(60.0) and x265["worst_image"] == "b.png"
    assert x265["median"] == pytest.approx(30.0) and x265["limit"] == 45.0 and x265["above_limit"] == 1
    assert x265["no_overlap"] == 0 and x265["images"] == 3
    assert webp["above_limit"] == 1 and webp["no_overlap"] == 1 and webp["median"] == pytest.approx(5.0)
    json.dumps(table, allow_nan=False), json.dumps(stats, allow_nan=False)
    md = rd.per_image_markdown(table, stats)
    assert "| x265 | +60.0% (b.png) | +30.0% | 1/3 above +45% | 0 |" in md
    assert "| c.png | no overlap | +30.0% |" in md


def test_published_curves_reader_and_bd():
    source, curves = rd.load_published(PUBLISHED)
    assert source.startswith("CompressAI")
    for name in ("bpg444", "bmshj2018-factorized (MSE)", "bmshj2018-hyperprior (MSE)"):
        assert len(curves[name]) >= 8 and all(p["psnr"] > 20 and 5 < p["ms_ssim_db"] < 40 for p in curves[name])
    bpg = curves["bpg444"]
    assert len(bpg) == 8 and [p["bpp"] for p in bpg] == sorted(p["bpp"] for p in bpg)
    # an l3ic curve needing 10 % more bits than BPG-444 at every point
    l3ic = [dict(p, bpp=1.1 * p["bpp"]) for p in bpg]
    result = rd.published_bd({"l3ic": l3ic}, PUBLISHED)
    row = result["against"]["bpg444"]
    assert row["psnr"] == pytest.approx(10.0, abs=1e-9) and row["ms_ssim_db"] == pytest.approx(10.0, abs=1e-9)
    assert row["coverage"] == {"psnr": pytest.approx(1.0), "ms_ssim_db": pytest.approx(1.0)}
    # the same on 4 of its points (a different interpolation between them, so only about +10 %)
    middle = rd.published_bd({"l3ic": l3ic[2:6]}, PUBLISHED)["against"]["bpg444"]
    assert middle["psnr"] == pytest.approx(10.0, abs=0.5) and middle["ms_ssim_db"] == pytest.approx(10.0, abs=0.5)
    assert set(result["against"]) == set(curves) and result["source"] == source
    json.dumps(result, allow_nan=False)
    # far above every published curve: null, and the summary says so
    far = rd.published_bd({"l3ic": points([5.0, 6.0], [60.0, 62.0], [50.0, 52.0])}, PUBLISHED)
    assert far["against"]["bpg444"]["psnr"] is None and far["against"]["bpg444"]["overlap"]["psnr"] is None
    assert "| bpg444 | no overlap | no overlap |" in rd.published_markdown(far)
    assert rd.published_bd({}, PUBLISHED) == {} and rd.published_bd({"l3ic": l3ic}, None) == {}


def test_published_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"bpp": [0.25], "psnr": {"x": [30.0]}}))  # the --reference format
    with pytest.raises(SystemExit):
        rd.load_published(str(bad))


def test_holdout_measures_the_images_training_validates_on(tmp_path, monkeypatch):
    """benchmarks.rd --holdout N takes exactly the N images export.train --holdout N held out, by name only."""
    from benchmarks import rd
    from export import data
    from PIL import Image
    names = ["p%02d.png" % i for i in range(12)]
    for n in names:
        Image.new("RGB", (8, 8)).save(tmp_path / n)
    seen = {}

    def stop(codecs, images, cache, refine, quality_step, models):
        seen["images"] = images
        raise SystemExit(0)

    monkeypatch.setattr(rd, "plan", stop)
    try:
        rd.main(["--images", str(tmp_path), "--holdout", "3", "--codecs", "l3ic", "--out", str(tmp_path / "out")])
    except SystemExit:
        pass
    held = data.split_holdout(data.image_paths(str(tmp_path)), 3)[1]
    assert seen["images"] == held and len(held) == 3


def test_quality_step_measures_the_continuous_curve(tmp_path):
    """--quality-step S: l3ic at q = 0, S, ..., 100, each point cached under its own key (model chosen by q)."""
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    done, todo = rd.plan(["l3ic"], [str(tmp_path / "a.png")], str(tmp_path / "cache"), quality_step=25)
    assert not done and [t[1] for t in todo] == [0.0, 25.0, 50.0, 75.0, 100.0]
    from l3ic import quality
    assert len({t[3] for t in todo}) == 5
    assert [rd.l3ic_options(t[1]).model for t in todo] == [quality.model_for(round(t[1] * quality.Q_UNITS)) for t in todo]
    for t in todo:  # a change of the -q scale (which own q a q codes at) must not reuse a cached point
        assert "-own%d-" % quality.to_model(rd.l3ic_options(t[1]).model, quality.quality_units(t[1])) in t[3]
    point = rd.measure("l3ic", 50.0, str(tmp_path / "a.png"))
    assert point["quality"] == 50.0 and point["bytes"] > 0
