"""export.fit_gains: the gain search measures exactly what files at a quality code, and keeps the preset."""
import json
import os

import numpy as np
from PIL import Image

from conftest import photo_like
from export import fit_gains
from l3ic import container
from l3ic.metrics import ms_ssim
from l3ic.quality import Q_UNITS, QUALITY_SCALE, from_model, lambda_of


def _latent_bits(data):
    parsed = container.L3icFile.parse(data)
    return 8 * sum(int(parsed.tile_chunks(t).sizes.sum()) for t in range(parsed.header.n_tiles))


def test_the_search_costs_what_files_at_that_quality_code(codec):
    """Rate: the latent chunks of the files, byte for byte; distortion: the MSE of their decoded pixels."""
    crops = [photo_like(fit_gains.CROP, fit_gains.CROP, seed) for seed in (1, 2)]
    search = fit_gains.GainSearch(codec.model, crops)
    units = 5000
    exponents, corrections = codec.model.entropy_model.gains.interpolated(units)
    files = [codec.encode(c, quality=from_model(codec.model.name, units) / Q_UNITS) for c in crops]  # own q 50
    assert search.bpp(exponents) * search.pixels == sum(_latent_bits(f) for f in files)
    mse = np.mean([np.mean((codec.decode(f).astype(np.float64) - c) ** 2) for f, c in zip(files, crops)])
    assert abs(search.distortion(exponents, corrections)[1] - mse) <= 1e-9 * mse
    dissimilarity = np.mean([1.0 - ms_ssim(c, codec.decode(f)) for f, c in zip(files, crops)])
    mixed = fit_gains.GainSearch(codec.model, crops, ms_ssim_share=0.5).distortion(exponents, corrections)[0]
    assert abs(mixed - (0.5 * mse + 0.5 * fit_gains.MS_SSIM_MSE * dissimilarity)) <= 1e-6 * mixed
    fitted, before, after, moves = search.fit(exponents, corrections, lambda_of(units / QUALITY_SCALE), sweeps=1)
    assert after[0] <= before[0] and fitted.dtype == np.int64
    assert (moves == 0) == np.array_equal(fitted, exponents)


def _photos_and_out(tmp_path):
    """A folder of 3 generated photos, and an empty run folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(3):
        Image.fromarray(photo_like(300, 280, seed)).save(str(folder / ("p%d.png" % seed)))
    out = str(tmp_path / "fit")
    os.makedirs(out)
    return folder, out


def test_a_fit_keeps_the_preset_and_resumes(tmp_path):
    folder, out = _photos_and_out(tmp_path)
    argv = ["medium", "--data", str(folder), "--qualities", "63,65", "--crops", "2", "--holdout", "1", "--sweeps", "1",
            "--threads", "1", "--out", out]
    fitted = fit_gains.fit_grid(fit_gains.parse_args(argv))
    preset, other = fitted["points"]["6500"], fitted["points"]["6300"]
    assert preset["exponents"] == [0] * 32 and preset["corrections"] == [1.0] * 32
    assert other["after"]["J"] <= other["before"]["J"]
    with open(os.path.join(out, "fit.json")) as f:
        assert json.load(f) == fitted
    assert fit_gains.fit_grid(fit_gains.parse_args(argv)) == fitted  # every point is done: nothing is searched again


def test_fit_preset_searches_the_preset_too(tmp_path):
    """--fit-preset: the preset's gains are searched like any point (a model that replaces the release)."""
    folder, out = _photos_and_out(tmp_path)
    fitted = fit_gains.fit_grid(fit_gains.parse_args(
        ["medium", "--data", str(folder), "--qualities", "60,65", "--keep", "60", "--fit-preset", "--crops", "2",
         "--holdout", "1", "--sweeps", "1", "--threads", "1", "--out", out]))
    preset = fitted["points"]["6500"]
    assert fitted["fit_preset"] and "moves" in preset and preset["after"]["J"] <= preset["before"]["J"]
