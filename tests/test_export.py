"""Train a tiny model, resume it, export it to ONNX and run it through the runtime.

Needs the ``export`` extra (TensorFlow, tf2onnx, onnx); skipped without it.
"""
import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # TensorFlow: not in the fast tier (pytest -m "not slow")
pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
onnx = pytest.importorskip("onnx")
from PIL import Image  # noqa: E402

from export import to_onnx, train  # noqa: E402

TINY = ["--channels", "4", "--width", "16", "--blocks", "1", "--crop", "32", "--batch", "4",
        "--lr", "2e-3", "--warmup", "5", "--holdout", "1", "--val-size", "32", "--log-every", "5"]


def synthetic_photos(folder, count=6, size=(48, 64)):
    """Smooth colour gradients with a few discs: structured enough to learn in a few steps."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    for i in range(count):
        base = [np.clip(a * yy + b * xx + c, 0, 255) for a, b, c in rng.uniform([-3, -3, 0], [3, 3, 255], (3, 3))]
        image = np.stack(base, axis=2)
        for _ in range(3):
            cy, cx, r = rng.integers(0, size[0]), rng.integers(0, size[1]), rng.integers(4, 12)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
        Image.fromarray(image.astype(np.uint8)).save(os.path.join(folder, "img%d.png" % i))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = root / "data"
    data.mkdir()
    synthetic_photos(str(data))
    run = str(root / "run")
    train.main(["--data", str(data), "--out", run, "--steps", "30", "--checkpoint-minutes", "100"] + TINY)
    train.main(["--out", run, "--steps", "60", "--resume", "--checkpoint-minutes", "100", "--log-every", "5"])
    return root, run


def read_log(run):
    with open(os.path.join(run, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_training_resumes_and_loss_goes_down(trained_run):
    _, run = trained_run
    log = read_log(run)
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == list(range(5, 65, 5))  # the resumed run continued at step 30, no restart
    losses = [r["loss"] for r in log if "loss" in r]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    checkpoints = [r for r in log if r.get("event") == "checkpoint"]
    assert [c["step"] for c in checkpoints] == [30, 60]
    assert all(c["val_images"] == 1 and c["val_bpp"] > 0 for c in checkpoints)


def test_export_parity_ops_and_runtime_round_trip(trained_run):
    root, run = trained_run
    out = str(root / "new" / "models" / "model")  # --out's missing parent folders are created
    to_onnx.main([run, "--out", out, "--parity-images", str(root / "data"), "--sample", "", "--provisional"])
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["provisional"] is True and manifest["channels"] == 4 and manifest["stride"] == 8
    assert manifest["training"]["steps"] == 60
    assert manifest["parity"]["decoder_max_abs_error"] <= 1e-3
    assert manifest["parity"]["decoder_gradient_max_relative_error"] <= to_onnx.GRADIENT_TOLERANCE
    assert manifest["refine"]["lambda"] == to_onnx.REFINE_LAMBDA_SCALE * manifest["training"]["lambda"]
    for name in to_onnx.GRAPHS:
        model = onnx.load(os.path.join(out, name))
        assert model.ir_version <= 8
        assert all(o.version <= 15 for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert {n.op_type for n in model.graph.node} <= to_onnx.ALLOWED_OPS
        assert not [n for n in model.graph.node if n.op_type in ("Dropout", "RandomUniform", "RandomNormal")]

    # the runtime (padding, FSE, container, ONNX Runtime) reproduces the exported Keras model's own reconstruction
    from l3ic import Codec
    from export.quantizer import Codebook
    model, _, _ = to_onnx.load_trained(os.path.join(out, "keras"))
    image = np.asarray(Image.open(str(root / "data" / "img0.png")))  # 48 x 64: a multiple of the stride
    q = Codebook().hard(model.analysis(image[None].astype(np.float32) / 255.0))
    expected = np.clip(np.rint(model.synthesis(q).numpy()[0] * 255.0), 0, 255)
    codec = Codec(out, "cpu")
    decoded = codec.decode(codec.encode(image))
    assert decoded.shape == image.shape
    assert np.max(np.abs(decoded.astype(int) - expected)) <= 1


def test_decoder_adjoint_equals_tensorflows_gradient():
    """export.adjoint writes the decoder's gradient out by hand (it must export to plain ONNX); it has to be
    the same function as the one GradientTape derives, detail blocks and saturated (clipped) pixels included."""
    import tensorflow as tf
    from export.adjoint import squared_error_and_gradient
    from export.model import L3icModel
    model = L3icModel(5, 16, 2, detail=1).build_for()
    rng = np.random.default_rng(0)
    for v in model.synthesis.trainable_weights:  # the identity-initialised detail blocks must do something
        v.assign(rng.normal(0, 0.08, v.shape).astype(np.float32))
    q = tf.constant(rng.integers(-3, 4, (1, 4, 6, 5)).astype(np.float32))
    x = tf.constant(rng.random((1, 32, 48, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(q)
        expected_sse = tf.reduce_sum(tf.square((tf.clip_by_value(model.synthesis(q), 0.0, 1.0) - x) * 255.0))
    expected = tape.gradient(expected_sse, q).numpy()
    sse, gradient = squared_error_and_gradient(model.synthesis, q, x)
    clipped = np.mean((model.synthesis(q).numpy() < 0) | (model.synthesis(q).numpy() > 1))
    assert 0.05 < clipped < 0.95  # the clip is active on part of the image, so its mask is exercised
    assert float(sse) == pytest.approx(float(expected_sse), rel=1e-5)
    np.testing.assert_allclose(gradient.numpy(), expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())


def test_upgrade_adds_refinement_and_keeps_the_decoder(trained_run):
    """--upgrade re-exports the encoder and decoder_gradient.onnx of an installed model; decoder.onnx, and so every
    file made with it, stays byte for byte."""
    import shutil
    root, run = trained_run
    folder = str(root / "to_upgrade")
    to_onnx.main([run, "--out", folder, "--parity-images", str(root / "data"), "--sample", ""])
    with open(os.path.join(folder, "manifest.json")) as f:
        before = json.load(f)
    os.remove(os.path.join(folder, "decoder_gradient.onnx"))  # as a model exported before refinement existed
    old = dict(before, files={k: v for k, v in before["files"].items() if k != "decoder_gradient.onnx"})
    del old["refine"]
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(old, f)
    shutil.copy(os.path.join(folder, "decoder.onnx"), str(root / "decoder.before"))
    to_onnx.main(["--upgrade", folder, "--parity-images", str(root / "data")])
    with open(os.path.join(folder, "manifest.json")) as f:
        after = json.load(f)
    with open(os.path.join(folder, "decoder.onnx"), "rb") as a, open(str(root / "decoder.before"), "rb") as b:
        assert a.read() == b.read()
    assert after["files"]["decoder.onnx"] == before["files"]["decoder.onnx"]
    assert after["training"] == before["training"] and after["refine"] == before["refine"]
    from l3ic import Codec
    image = np.asarray(Image.open(str(root / "data" / "img0.png")))
    codec = Codec(folder, "cpu")
    assert codec.decode(codec.encode(image, refine=3)).shape == image.shape


def test_warm_start_across_channel_counts_keeps_the_lineage(trained_run):
    """--init from a released keras/ folder into a model with more channels and detail blocks: the shared
    weights are copied, the decoder ignores the new channels and its new blocks start as the identity, so the
    net decodes as before; it exports, and the manifest counts the steps behind the weights."""
    root, run = trained_run
    released = str(root / "released")
    to_onnx.main([run, "--out", released, "--parity-images", str(root / "data"), "--sample", "", "--no-reorder"])
    bigger = str(root / "bigger")
    args = ["--data", str(root / "data"), "--out", bigger, "--steps", "10", "--checkpoint-minutes", "100",
            "--init", os.path.join(released, "keras"), "--detail", "1"]
    six_channels = TINY[:]
    six_channels[TINY.index("--channels") + 1] = "6"
    train.main(args + six_channels)
    with open(os.path.join(bigger, "config.json")) as f:
        assert json.load(f)["init"] == {"folder": os.path.join(released, "keras"), "total_steps": 60}

    from export.model import L3icModel
    source, _, _ = to_onnx.load_trained(os.path.join(released, "keras"))  # also sets the float32 policy
    model = L3icModel(6, 16, 1, detail=1).build_for()  # two more channels and the decoder's detail blocks
    train.warm_start(model, os.path.join(released, "keras"))
    image = np.asarray(Image.open(str(root / "data" / "img0.png")))[None].astype(np.float32) / 255.0
    y_source, y_new = source.analysis(image).numpy(), model.analysis(image).numpy()
    np.testing.assert_allclose(y_new[..., :4], y_source[..., :4], atol=1e-5)
    extra = np.random.default_rng(0).normal(size=y_new.shape).astype(np.float32)
    extra[..., :4] = np.round(y_source[..., :4])
    np.testing.assert_allclose(model.synthesis(extra).numpy(), source.synthesis(extra[..., :4]).numpy(), atol=1e-5)

    out = str(root / "bigger_model")
    to_onnx.main([bigger, "--out", out, "--parity-images", str(root / "data"), "--sample", "", "--provisional"])
    with open(os.path.join(out, "manifest.json")) as f:
        training = json.load(f)["training"]
    assert (training["steps"], training["total_steps"]) == (10, 70)
    with open(os.path.join(out, "keras", "config.json")) as f:
        assert json.load(f)["total_steps"] == 70


def test_warm_start_revives_new_channels_that_carry_no_bits(trained_run):
    """A new latent channel that always rounds to one value gets no gradient and would stay dead through any
    fine-tuning: warm_start gives it fresh weights and copies the released channels unchanged."""
    from export.model import L3icModel
    from export.quantizer import Codebook
    root, run = trained_run
    released = str(root / "released")
    if not os.path.exists(released):
        to_onnx.main([run, "--out", released, "--parity-images", str(root / "data"), "--sample", "", "--no-reorder"])
    source, config, _ = to_onnx.load_trained(os.path.join(released, "keras"))

    model = L3icModel(6, 16, 1).build_for()
    kernel, bias = model.analysis.project.get_weights()
    model.analysis.project.set_weights([np.zeros_like(kernel), np.zeros_like(bias)])  # new channels 4, 5: dead
    images = [np.asarray(Image.open(str(root / "data" / name))) for name in ("img0.png", "img1.png")]
    revived = train.warm_start(model, os.path.join(released, "keras"),
                               Codebook(config["codebook_min"], config["codebook_size"]), images)
    assert revived == [4, 5]
    new_kernel, _ = model.analysis.project.get_weights()
    assert np.all(new_kernel[..., 4:] != 0)
    assert np.all(np.any(model.synthesis.expand.get_weights()[0][:, :, 4:, :] != 0, axis=(0, 1, 3)))
    np.testing.assert_array_equal(new_kernel[..., :4], source.analysis.project.get_weights()[0])


@pytest.fixture(scope="module")
def hyper_run(trained_run):
    """A tiny model with a hyperprior, warm-started from the tiny format-2 model's export."""
    root, run = trained_run
    released = str(root / "released-f2")
    if not os.path.exists(released):
        to_onnx.main([run, "--out", released, "--parity-images", str(root / "data"), "--sample", "", "--no-reorder"])
    hyper = str(root / "hyper")
    train.main(["--data", str(root / "data"), "--out", hyper, "--steps", "40", "--checkpoint-minutes", "100",
                "--init", os.path.join(released, "keras"), "--z-channels", "4", "--hyper-width", "8",
                "--hyper-steps", "20"] + TINY)
    return root, hyper


def test_hyperprior_export_codes_what_training_measures(hyper_run):
    """Format 3 end to end: the exported files, the integer entropy model, and a file whose size is the rate that
    training computes for the same image (up to the tables' rounding and the container's bytes)."""
    import tensorflow as tf
    from l3ic import Codec, container, read_info
    from export.hyperprior import coded_bits
    from export.quantizer import Codebook
    root, run = hyper_run
    out = str(root / "hyper-model")
    to_onnx.main([run, "--out", out, "--parity-images", str(root / "data"), "--sample", "", "--provisional"])
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["format"] == 3 and "entropy_model.npz" in manifest["files"]
    assert manifest["parity"]["z_symbols_on_boundary_differing"] <= manifest["parity"]["z_symbols_compared"] * 1e-3
    assert manifest["parity"]["decoder_gradient_max_relative_error"] <= to_onnx.GRADIENT_TOLERANCE

    model, config, _ = to_onnx.load_trained(os.path.join(out, "keras"))
    image = np.asarray(Image.open(str(root / "data" / "img1.png")))[:32, :64]  # a multiple of 32: no padding
    y = tf.cast(model.analysis(image[None].astype(np.float32) / 255.0), tf.float32)
    bits, y_hat = coded_bits(model, y, Codebook())
    codec = Codec(out, "cpu")
    data = codec.encode(image)
    assert read_info(data)["format_version"] == 3
    parsed = container.L3icFile.parse(data)
    chunks = [parsed.z_chunks()] + [parsed.tile_chunks(t) for t in range(parsed.header.n_tiles)]
    payload = 8 * sum(len(c.payload) for c in chunks)  # what the rate models
    assert payload <= float(bits) * 1.1 + 8 * 6 * (4 + 4)  # + at most ~6 bytes per chunk of stream overhead
    expected = np.clip(np.rint(model.synthesis(y_hat).numpy()[0] * 255.0), 0, 255)
    assert np.max(np.abs(codec.decode(data).astype(int) - expected)) <= 1


def test_warm_start_carries_a_hyperprior_of_the_same_shape(tmp_path):
    """Joint training starts from a format-3 release: its hyperprior is copied, not re-initialised."""
    from export.model import L3icModel
    config = {"channels": 4, "width": 16, "blocks": 1, "detail": 0, "z_channels": 3, "hyper_width": 8,
              "codebook_min": -15, "codebook_size": 32}
    released = L3icModel.from_config_dict(config).build_for()
    released.save_weights(str(tmp_path / "model.weights.h5"))
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config, f)
    fresh = L3icModel.from_config_dict(config).build_for()
    train.warm_start(fresh, str(tmp_path))
    for a, b in zip(fresh.hyper_synthesis.weights + fresh.z_prior.weights, released.hyper_synthesis.weights + released.z_prior.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = L3icModel.from_config_dict(dict(config, z_channels=2)).build_for()
    train.warm_start(other, str(tmp_path))  # another shape: the transforms only
    np.testing.assert_array_equal(other.synthesis.weights[0].numpy(), released.synthesis.weights[0].numpy())


def test_warm_start_carries_gains_to_the_same_grid_or_one_renamed_point_by_point(tmp_path):
    """Gains are carried to the same grid, or to one with as many points and the preset at the same point (its
    points renamed after the rate weights they were trained for); to any other grid they start afresh."""
    from export.model import L3icModel
    config = {"channels": 4, "width": 16, "blocks": 1, "detail": 0, "z_channels": 3, "hyper_width": 8,
              "codebook_min": -15, "codebook_size": 32, "qualities": [40, 65, 90], "default_quality": 65}
    released = L3icModel.from_config_dict(config).build_for()
    released.gain_units.exponent.assign(np.arange(12, dtype=np.float32).reshape(3, 4))
    released.save_weights(str(tmp_path / "model.weights.h5"))
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config, f)
    for grid, carried in (([40, 65, 90], True), ([40, 65, 150], True), ([40, 50, 65], False), ([40, 65], False)):
        model = L3icModel.from_config_dict(dict(config, qualities=grid)).build_for()
        train.warm_start(model, str(tmp_path))
        same = np.array_equal(model.gain_units.exponent.numpy(), released.gain_units.exponent.numpy())
        assert same == carried, grid


def test_encoder_only_training_keeps_the_released_decoder(hyper_run):
    """--encoder-only: the analysis learns, the decoder side does not, and the export keeps the release's very
    decoder.onnx, so the new encoder's files and the release's decode with either folder."""
    from l3ic import Codec
    root, run = hyper_run
    released = str(root / "released-f3")
    to_onnx.main([run, "--out", released, "--parity-images", str(root / "data"), "--sample", "", "--provisional"])
    tuned = str(root / "encoder-only")
    train.main(["--data", str(root / "data"), "--out", tuned, "--init", os.path.join(released, "keras"),
                "--encoder-only", "--analysis-extra", "1", "--steps", "10", "--checkpoint-minutes", "100",
                "--crop", "32", "--batch", "4", "--lr", "1e-3", "--warmup", "2", "--holdout", "1", "--val-size", "32",
                "--log-every", "5"])
    with open(os.path.join(tuned, "config.json")) as f:
        assert json.load(f)["z_channels"] == 4  # the architecture is the release's, not the defaults
    before, _, _ = to_onnx.load_trained(os.path.join(released, "keras"))
    after, _, _ = to_onnx.load_trained(tuned)
    kept = lambda m: m.synthesis.weights + m.hyper_analysis.weights + m.hyper_synthesis.weights + m.z_prior.weights
    for a, b in zip(kept(before), kept(after)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(after.analysis.weights) == len(before.analysis.weights) + 4  # one more block: two convolutions
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(before.analysis.weights, after.analysis.weights))

    out = str(root / "encoder-only-model")
    to_onnx.main([tuned, "--out", out, "--parity-images", str(root / "data"), "--sample", "", "--provisional"])
    with open(os.path.join(released, "decoder.onnx"), "rb") as a, open(os.path.join(out, "decoder.onnx"), "rb") as b:
        assert a.read() == b.read()
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["training"]["encoder_only"] is True
    image = np.asarray(Image.open(str(root / "data" / "img1.png")))
    old_file, new_file = Codec(released, "cpu").encode(image), Codec(out, "cpu").encode(image)
    assert old_file != new_file  # another encoder ...
    np.testing.assert_array_equal(Codec(out, "cpu").decode(old_file), Codec(released, "cpu").decode(old_file))
    np.testing.assert_array_equal(Codec(released, "cpu").decode(new_file), Codec(out, "cpu").decode(new_file))


def test_the_relaxation_codes_with_the_released_tables(hyper_run):
    """export.relaxation: integer residuals cost exactly what the runtime's tables say; between two integers the
    cost and its gradient interpolate them; soft rounding stays between the two integers and, cold, rounds."""
    import tensorflow as tf
    from export.quantizer import Codebook
    from export.relaxation import TableRate, soft_round
    from l3ic.hyperprior import code_lengths
    root, run = hyper_run
    released = str(root / "released-f3")
    if not os.path.exists(released):
        to_onnx.main([run, "--out", released, "--parity-images", str(root / "data"), "--sample", "", "--provisional"])
    path = os.path.join(released, "entropy_model.npz")
    codebook = Codebook()
    rate = TableRate(path, codebook)
    with np.load(path) as arrays:
        bits = code_lengths(arrays["latent_counts"], int(arrays["table_log"]))
    rng = np.random.default_rng(0)
    rows = rng.integers(0, bits.shape[0], 500)
    r = rng.integers(codebook.minimum, codebook.maximum, 500).astype(np.float32)
    exact = bits[rows, (r - codebook.minimum).astype(int)].sum()
    assert float(rate.bits_of(tf.constant(r), tf.constant(rows, tf.int32))) == pytest.approx(exact, rel=1e-5)
    x = tf.Variable(r + 0.25)
    with tf.GradientTape() as tape:
        total = rate.bits_of(x, tf.constant(rows, tf.int32))
    below, above = bits[rows, (r - codebook.minimum).astype(int)], bits[rows, (r - codebook.minimum).astype(int) + 1]
    assert float(total) == pytest.approx((0.75 * below + 0.25 * above).sum(), rel=1e-5)
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), above - below, rtol=1e-5, atol=1e-5)

    noise = tf.random.Generator.from_seed(0)
    values = tf.constant(rng.uniform(-5, 5, 2000).astype(np.float32))
    soft = soft_round(values, 0.3, noise).numpy()
    assert np.all((soft >= np.floor(values.numpy())) & (soft <= np.floor(values.numpy()) + 1))
    away_from_half = np.abs(values.numpy() - np.floor(values.numpy()) - 0.5) > 0.05
    cold = soft_round(values, 1e-3, noise).numpy()
    np.testing.assert_allclose(cold[away_from_half], np.rint(values.numpy())[away_from_half], atol=1e-4)


def test_encoder_only_needs_a_release(tmp_path):
    with pytest.raises(SystemExit, match="--encoder-only needs --init"):
        train.main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--encoder-only"])


def test_the_ceiling_decodes_unrounded_latents_and_training_logs_it(hyper_run, capsys):
    """export.ceiling: the PSNR of synthesis(analysis(x)) with nothing rounded (no gains here) on the photo
    edge-padded to the transforms' strides, as its table prints it; and each checkpoint of a hyperprior run logs
    that measure on its validation crops."""
    from export import ceiling
    root, run = hyper_run
    rgb = np.asarray(Image.open(str(root / "data" / "img1.png")).convert("RGB"))  # 48 x 64: padded to 64 x 64
    model = to_onnx.load_trained(run)[0]
    x = np.pad(rgb, ((0, ceiling.PAD - 48), (0, 0), (0, 0)), mode="edge")[None].astype(np.float32) / 255.0
    decoded = np.round(np.clip(model.synthesis(model.analysis(x)).numpy(), 0, 1) * 255.0)[:, :48]
    expected = 10 * np.log10(255.0 ** 2 / np.mean((decoded - rgb[None]) ** 2))
    assert abs(ceiling.ceiling_psnr(model, rgb) - expected) < 1e-6
    assert ceiling.main([run, "--images", str(root / "data")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| img1.png |")]
    assert rows == ["| img1.png | %.2f |" % expected]
    checkpoints = [r for r in read_log(run) if r.get("event") == "checkpoint"]
    assert checkpoints and all(r["val_ceiling_psnr"] > 10 for r in checkpoints)


def test_a_wider_codebook_exports_and_codes(hyper_run):
    """A hyperprior model whose codebook is not the default 32 values (the range that high qualities need) passes
    the export's parity checks and codes files the runtime decodes."""
    from l3ic import Codec, read_info
    root, run = hyper_run
    wide = str(root / "hyper-wide")
    train.main(["--data", str(root / "data"), "--out", wide, "--steps", "10", "--checkpoint-minutes", "100",
                "--init", str(root / "released-f2" / "keras"), "--z-channels", "4", "--hyper-width", "8", "--hyper-steps", "5",
                "--codebook-min", "-31", "--codebook-size", "64"] + TINY)
    out = str(root / "hyper-wide-model")
    to_onnx.main([wide, "--out", out, "--parity-images", str(root / "data"), "--sample", "", "--provisional"])
    codec = Codec(out, "cpu")
    image = np.asarray(Image.open(str(root / "data" / "img1.png")))
    data = codec.encode(image)
    assert read_info(data)["codebook"] == {"minimum": -31, "size": 64}
    assert codec.decode(data).shape == image.shape


def test_gains_only_keeps_the_preset_unless_it_is_freed(hyper_run):
    """--gains-only: only the gains learn, and the default quality's stay the identity so the release's preset
    codes as before; with --free-preset they learn too (a model that replaces the release).  The grid may go past
    q 100 (a rate weight below lambda(100))."""
    root, run = hyper_run
    released = str(root / "released-gains")
    if not os.path.exists(released):
        to_onnx.main([run, "--out", released, "--parity-images", str(root / "data"), "--sample", "", "--provisional"])
    before, _, _ = to_onnx.load_trained(os.path.join(released, "keras"))
    preset = {}
    for free in (False, True):
        out = str(root / ("gains-free" if free else "gains-pinned"))
        train.main(["--data", str(root / "data"), "--out", out, "--init", os.path.join(released, "keras"),
                    "--gains-only", "--qualities", "40,65,150", "--default-quality", "65", "--gain-lr", "0.5",
                    "--channels", "4", "--width", "16", "--blocks", "1", "--z-channels", "4", "--hyper-width", "8",
                    "--steps", "12", "--checkpoint-minutes", "100", "--crop", "32", "--batch", "4", "--lr", "1e-3",
                    "--warmup", "2", "--holdout", "1", "--val-size", "32", "--log-every", "5"]
                   + (["--free-preset"] if free else []))
        after, _, _ = to_onnx.load_trained(out)
        for a, b in zip(before.synthesis.weights + before.analysis.weights, after.synthesis.weights + after.analysis.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())  # the transforms are frozen either way
        preset[free] = after.gain_units.inverse_log.numpy()[1]
    assert not preset[False].any() and preset[True].any()
    with pytest.raises(SystemExit, match="--free-preset needs --gains-only"):
        train.main(["--data", str(root / "data"), "--out", str(root / "bad"), "--free-preset", "--qualities", "40,65",
                    "--default-quality", "65", "--z-channels", "4"])
