"""The benchmark metrics: PSNR and MS-SSIM against known values and TensorFlow, BD-rate against ``bjontegaard``."""
import numpy as np
import pytest

from benchmarks.metrics import ms_ssim, ms_ssim_db, psnr

from conftest import photo_like


def test_psnr_known_values():
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    b = a + 1
    assert psnr(a, b) == pytest.approx(10 * np.log10(255.0 ** 2), abs=1e-9)  # MSE 1 -> 48.13 dB
    c = a.copy()
    c[0, 0, 0] = 255  # MSE = 255^2 / 48
    assert psnr(a, c) == pytest.approx(10 * np.log10(48), abs=1e-9)


def test_ms_ssim_identity_and_range():
    image = photo_like(200, 190)
    assert ms_ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 10, image.shape), 0, 255)
    value = ms_ssim(image, noisy)
    assert 0.5 < value < 1.0
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim(image[:100], image[:100]) is None  # too small for 5 scales


def test_ms_ssim_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    for shape in [(200, 181, 3), (256, 256, 3), (177, 300, 3)]:
        a = photo_like(*shape[:2], seed=shape[1]).astype(np.float32)
        b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.float32)
        expected = float(tf.image.ssim_multiscale(a, b, 255.0))
        assert ms_ssim(a, b) == pytest.approx(expected, abs=1e-5)  # TF computes in float32


def test_bd_rate_matches_the_bjontegaard_package():
    bd = pytest.importorskip("bjontegaard")
    from benchmarks.bdrate import bd_rate
    rate_a = np.array([0.2, 0.45, 0.9, 1.6])
    psnr_a = np.array([28.1, 31.0, 34.2, 37.0])
    rate_t = np.array([0.18, 0.4, 0.85, 1.5])
    psnr_t = np.array([28.5, 31.6, 34.8, 37.3])
    expected = bd.bd_rate(rate_a, psnr_a, rate_t, psnr_t, method="pchip", require_matching_points=False)
    assert bd_rate(rate_a, psnr_a, rate_t, psnr_t) == pytest.approx(expected, abs=1e-9)
    # unequal point counts and unsorted input
    expected = bd.bd_rate(rate_a, psnr_a, rate_t[:3], psnr_t[:3], method="pchip", require_matching_points=False, min_overlap=0)
    assert bd_rate(rate_a[::-1], psnr_a[::-1], rate_t[:3], psnr_t[:3]) == pytest.approx(expected, abs=1e-9)
    assert bd_rate(rate_a, psnr_a, rate_a, psnr_a) == pytest.approx(0.0, abs=1e-9)


def test_metric_at_rate_interpolates_inside_the_curve_only():
    from benchmarks.bdrate import metric_at_rate
    rates, values = [0.25, 0.5, 1.0], [30.0, 33.0, 36.0]
    assert metric_at_rate(rates, values, 0.5) == pytest.approx(33.0)
    assert 30.0 < metric_at_rate(rates, values, 0.35) < 33.0
    assert np.isnan(metric_at_rate(rates, values, 2.0))


def test_rd_baseline_curve_measures_what_new_models_gained(tmp_path):
    """benchmarks.rd --baseline: the l3ic curve of an earlier results.json joins the BD table."""
    import json

    from benchmarks import rd
    old = [{"quality": q, "bpp": b, "psnr": p, "ms_ssim_db": m}
           for q, b, p, m in (("low", 0.3, 29.0, 13.0), ("medium", 0.7, 32.0, 16.0), ("high", 1.1, 34.0, 18.0))]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"curves": {"l3ic": old}}))
    new = [dict(p, bpp=p["bpp"] * 0.9) for p in old]  # the same quality for 10 % fewer bits
    bd = rd.bd_table({"x265": old, "l3ic": new, rd.BASELINE: rd.baseline_curve(str(path))})
    assert bd["l3ic vs " + rd.BASELINE]["psnr"] == pytest.approx(-10.0, abs=1e-6)
    assert bd["l3ic vs " + rd.BASELINE]["ms_ssim_db"] == pytest.approx(-10.0, abs=1e-6)
    path.write_text("{}")
    with pytest.raises(SystemExit, match="not a results.json with an l3ic curve"):
        rd.baseline_curve(str(path))
