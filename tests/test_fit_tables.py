"""export.fit_tables: tables fitted to what a model codes change its files' sizes, never their pixels."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, photo_like

pytestmark = pytest.mark.slow  # TensorFlow: not in the fast tier (conftest.SLOW_MODULES: not even imported there)
pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
from export import fit_tables, to_onnx  # noqa: E402
from l3ic import Codec  # noqa: E402
from l3ic.hyperprior import code_lengths  # noqa: E402

RELEASED = os.path.join(REPO, "models", "medium")  # the checkout's: an installed package has no keras/ folder


def test_the_histogram_counts_every_statically_coded_symbol_at_every_grid_point(codec, tmp_path):
    em = codec.model.entropy_model
    path = str(tmp_path / "photo.png")
    Image.fromarray(photo_like(96, 128, 3)).save(path)
    histogram = fit_tables.symbol_histogram(codec, [path])
    assert histogram.shape == em.latent_bits.shape
    elements = codec.model.channels * (96 // 8) * (128 // 8)
    assert 0.99 * elements * len(em.quality_grid) <= histogram.sum() <= elements * len(em.quality_grid)
    counts = fit_tables.fitted_counts(histogram, 100.0, _codebook(codec))
    assert counts.dtype == np.int16 and counts.min() >= 1 and np.all(counts.astype(np.int64).sum(axis=1) == 1 << 12)
    new_bits = code_lengths(counts, em.latent_tables.table_log)
    assert fit_tables.ideal_bits(histogram, new_bits) < fit_tables.ideal_bits(histogram, em.latent_bits)


def _codebook(codec):
    from export.quantizer import Codebook
    return Codebook(codec.model.codebook_min, codec.model.codebook_size)


def test_a_table_fit_exports_the_same_graphs_and_decodes_the_same_pixels(tmp_path):
    """The fit's export keeps the release's three ONNX files byte for byte and its entropy model but for the latent
    tables; files of the new model decode to exactly the pixels of the old one's, and its keras/ folder carries the
    tables, so that a re-export gives the same entropy model."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        Image.fromarray(photo_like(256, 256, seed)).save(str(photos / ("p%d.png" % seed)))
    run, out = str(tmp_path / "run"), str(tmp_path / "medium")
    fit_tables.main([RELEASED, "--data", str(photos), "--holdout", "1", "--threads", "1", "--out", run])
    with open(os.path.join(run, "fit.json")) as f:
        fit = json.load(f)
    assert fit["images"] == 2 and fit["train_bits"][1] < fit["train_bits"][0]
    to_onnx.main([run, "--out", out, "--parity-images", str(photos), "--sample", "", "--provisional"])
    for name in to_onnx.GRAPHS:
        with open(os.path.join(RELEASED, name), "rb") as a, open(os.path.join(out, name), "rb") as b:
            assert a.read() == b.read()
    old, new = (np.load(os.path.join(f, to_onnx.ENTROPY_MODEL)) for f in (RELEASED, out))
    assert sorted(old.files) == sorted(new.files)
    assert [k for k in old.files if not np.array_equal(old[k], new[k])] == ["latent_counts"]
    np.testing.assert_array_equal(new["latent_counts"], np.load(os.path.join(run, to_onnx.LATENT_COUNTS)))
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["training"]["latent_tables"]["images"] == 2

    image = photo_like(200, 264, 7)
    before, after = Codec(RELEASED, "cpu"), Codec(out, "cpu")
    lo, hi = before.quality_range
    for quality in (lo, (lo + hi) / 2, hi):  # the release's range of the -q scale
        a, b = before.encode(image, quality=quality), after.encode(image, quality=quality)
        assert a != b
        np.testing.assert_array_equal(before.decode(a), after.decode(b))

    model, config, _ = to_onnx.load_trained(os.path.join(out, "keras"))
    np.testing.assert_array_equal(to_onnx.latent_counts(os.path.join(out, "keras"), config), new["latent_counts"])
