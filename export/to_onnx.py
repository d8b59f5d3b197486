"""Export a trained run to ONNX: ``python -m export.to_onnx runs/NAME --out models/NAME``.

Writes ``encoder.onnx`` (uint8 image NHWC -> uint8 symbols NCHW, quantised
inside the graph, and the float latents before rounding), ``decoder.onnx``
(uint8 symbols NCHW -> float32 image NHWC in [0, 1]), ``decoder_gradient.onnx``
(the decoder's squared error against an image and its gradient with respect to
the latents, for encoder-side refinement, see ``export.adjoint``) and
``manifest.json``, plus ``keras/`` (weights and config, so the model can be
fine-tuned and re-exported).  Before writing anything it checks
TF-vs-ONNX Runtime parity and the op set, and fails with a clear message if
either is off.

Channels are reordered by importance (the PSNR lost when a channel is replaced
by the zero symbol, measured on the parity images) so that channel 0 matters
most: decoding the first k channels of a file gives the best k-channel preview.

A model with a hyperprior (format 3) differs: ``encoder.onnx`` gives the float
latents and the rounded side information ``z_symbols``, ``decoder.onnx`` takes
float latents (ŷ, integers), and ``entropy_model.npz`` holds the
integer hyper-synthesis and the static FSE tables (``export.hyperprior``).
Its channels keep their trained order (a warm start inherits the released
models' importance order).  Its latent tables are the Gaussians training
assumed, unless the run has ``latent_counts.npy`` (``export.fit_tables``: tables
fitted to the symbols a model codes), which ``keras/`` then keeps too.
"""
import argparse
import datetime
import json
import os
import shutil
import tempfile

import numpy as np

from export import require_export_extra
from l3ic.hyperprior import GAIN_KEYS
from l3ic.model import file_sha256

OPSET = 15  # ONNX Runtime 1.11 (JetPack) reads opset <= 15
IR_VERSION = 8  # ...and IR version <= 8
ALLOWED_OPS = {
    "Conv", "LeakyRelu", "Add", "Sub", "Mul", "Div", "DepthToSpace", "Transpose", "Cast",
    "Clip", "Round", "Relu", "Identity", "Max", "Min", "Reshape", "Shape", "Concat",
    "SpaceToDepth", "ConvTranspose", "ReduceSum", "Greater", "Less", "Gather", "Slice",  # decoder_gradient.onnx
}
GRAPHS = ("encoder.onnx", "decoder.onnx", "decoder_gradient.onnx")
ENTROPY_MODEL = "entropy_model.npz"
LATENT_COUNTS = "latent_counts.npy"  # fitted latent tables of a run or keras/ folder (export.fit_tables)
REFINE_LAMBDA_SCALE = 1.5  # refinement's rate weight / training's: keeps the unrefined rate (held-out training images)
REFINE_LEARNING_RATE = 0.05  # Adam step on the latents, decayed linearly to 0 (held-out training images)
GRADIENT_TOLERANCE = 1e-2  # decoder_gradient parity: |TF - ORT| / |TF| (L2 norms; float noise flips the clip/ReLU
# masks of a few elements where the output is saturated, so an element-wise maximum would be too strict)
LATENT_LIMIT = 1000.0  # format 3: the encoder's float latents are clipped to +-this (finite for any input)
SYMBOL_MISMATCH_LIMIT = 1e-3
TABLE_MISMATCH_LIMIT = 1e-2  # format 3: TF's float32 fake-quantised hyper-synthesis vs the exact integer one  # fraction of symbols allowed to differ, all on rounding boundaries
BOUNDARY = 1e-3  # |y - (k + 1/2)| below this counts as "on a rounding boundary"
PIXEL_TOLERANCE = 1e-3  # decoder parity on the [0, 1] scale


def fail(message):
    raise SystemExit("error: " + message)


def load_trained(source):
    """Rebuild a float32 model from a run folder or a released ``keras/`` folder."""
    import keras
    from export.model import L3icModel
    keras.mixed_precision.set_global_policy("float32")
    weights = os.path.join(source, "checkpoint", "model.weights.h5")
    if not os.path.exists(weights):
        weights = os.path.join(source, "model.weights.h5")
    config_path = os.path.join(source, "config.json")
    if not (os.path.exists(weights) and os.path.exists(config_path)):
        fail("%s is neither a training run (config.json + checkpoint/) nor a keras/ folder" % source)
    with open(config_path) as f:
        config = json.load(f)
    state_path = os.path.join(source, "checkpoint", "state.json")
    if os.path.exists(state_path):
        with open(state_path) as f:
            config["trained_steps"] = json.load(f)["step"]
    model = L3icModel.from_config_dict(config).build_for()
    model.load_weights(weights)
    return model, config, weights


def graph_functions(model, codebook):
    """The tf.functions that become encoder.onnx, decoder.onnx and decoder_gradient.onnx."""
    import tensorflow as tf
    channels = model.config["channels"]
    if model.has_hyperprior:
        return hyper_graph_functions(model)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")])
    def encoder(image):
        y = model.analysis(tf.cast(image, tf.float32) / 255.0)
        return {"symbols": tf.transpose(codebook.to_symbols(y), [0, 3, 1, 2]),
                "latents": tf.transpose(codebook.clip(y), [0, 3, 1, 2])}

    @tf.function(input_signature=[tf.TensorSpec([None, channels, None, None], tf.uint8, name="symbols")])
    def decoder(symbols):
        q = codebook.from_symbols(tf.transpose(symbols, [0, 2, 3, 1]))
        return {"image": tf.clip_by_value(model.synthesis(q), 0.0, 1.0)}

    return {"encoder.onnx": encoder, "decoder.onnx": decoder, "decoder_gradient.onnx": decoder_gradient_function(model)}


def decoder_gradient_function(model):
    """The tf.function of decoder_gradient.onnx: float latents NCHW and an image -> squared error and its gradient."""
    import tensorflow as tf
    from export.adjoint import squared_error_and_gradient

    @tf.function(input_signature=[tf.TensorSpec([None, model.config["channels"], None, None], tf.float32, name="latents"),
                                  tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")])
    def decoder_gradient(latents, image):
        x = tf.cast(image, tf.float32) / 255.0
        sse, gradient = squared_error_and_gradient(model.synthesis, tf.transpose(latents, [0, 2, 3, 1]), x)
        return {"sse": sse, "gradient": tf.transpose(gradient, [0, 3, 1, 2])}

    return decoder_gradient


def hyper_graph_functions(model):
    """encoder.onnx, decoder.onnx and decoder_gradient.onnx of a format-3 model (float latents in and out)."""
    import tensorflow as tf
    from export import hyperprior as hp
    channels = model.config["channels"]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")])
    def encoder(image):
        y = tf.cast(model.analysis(tf.cast(image, tf.float32) / 255.0), tf.float32)
        z = tf.round(tf.clip_by_value(model.hyper_analysis(y), float(hp.Z_MIN), float(hp.Z_MIN + hp.Z_SIZE - 1)))
        return {"latents": tf.transpose(tf.clip_by_value(y, -LATENT_LIMIT, LATENT_LIMIT), [0, 3, 1, 2]),
                "z_symbols": tf.transpose(tf.cast(z - float(hp.Z_MIN), tf.uint8), [0, 3, 1, 2])}

    @tf.function(input_signature=[tf.TensorSpec([None, channels, None, None], tf.float32, name="latents")])
    def decoder(latents):
        return {"image": tf.clip_by_value(model.synthesis(tf.transpose(latents, [0, 2, 3, 1])), 0.0, 1.0)}

    return {"encoder.onnx": encoder, "decoder.onnx": decoder, "decoder_gradient.onnx": decoder_gradient_function(model)}


def check_hyper_parity(model, codebook, folder, images):
    """TF vs ONNX Runtime for a format-3 model: latents (float noise), ẑ (only on rounding boundaries), decoder,
    decoder gradient."""
    import onnxruntime as ort
    import tensorflow as tf
    from export import hyperprior as hp
    from export.adjoint import squared_error_and_gradient
    enc, dec, grad = (ort.InferenceSession(os.path.join(folder, name), providers=["CPUExecutionProvider"]) for name in GRAPHS)
    worst_latent = worst_pixel = worst_gradient = 0.0
    mismatched = total = tables_differ = tables_total = 0
    for im in images:
        y = tf.cast(model.analysis(tf.constant(im[None], tf.float32) / 255.0), tf.float32)
        z = np.transpose(model.hyper_analysis(y).numpy(), [0, 3, 1, 2])
        latents, z_symbols = enc.run(["latents", "z_symbols"], {"image": im[None]})
        worst_latent = max(worst_latent, float(np.max(np.abs(np.transpose(y.numpy(), [0, 3, 1, 2]) - latents))))
        expected = np.clip(np.round(z), hp.Z_MIN, hp.Z_MIN + hp.Z_SIZE - 1) - hp.Z_MIN
        differ = z_symbols != expected
        if np.any(differ & (np.abs(z - np.floor(z) - 0.5) > BOUNDARY)):
            fail("encoder parity: z symbols differ away from a rounding boundary")
        mismatched, total = mismatched + int(differ.sum()), total + differ.size
        tables_differ += _table_mismatch(model, codebook, folder, z_symbols[0])
        tables_total += np.prod(latents.shape)
        q = np.round(np.clip(latents, codebook.minimum, codebook.maximum)).astype(np.float32)  # as the decoder gets them
        tf_image = np.clip(model.synthesis(np.transpose(q, [0, 2, 3, 1])).numpy(), 0, 1)
        worst_pixel = max(worst_pixel, float(np.max(np.abs(tf_image - dec.run(None, {"latents": q})[0]))))
        tf_sse, tf_grad = squared_error_and_gradient(model.synthesis, np.transpose(q, [0, 2, 3, 1]), tf.constant(im[None], tf.float32) / 255.0)
        ort_sse, ort_grad = grad.run(["sse", "gradient"], {"latents": q, "image": im[None]})
        tf_grad = np.transpose(tf_grad.numpy(), [0, 3, 1, 2])
        worst_gradient = max(worst_gradient, abs(float(ort_sse) - float(tf_sse)) / max(float(tf_sse), 1.0),
                             float(np.linalg.norm(ort_grad - tf_grad)) / max(float(np.linalg.norm(tf_grad)), 1e-6))
    if mismatched > SYMBOL_MISMATCH_LIMIT * total or worst_pixel > PIXEL_TOLERANCE or worst_latent > PIXEL_TOLERANCE:
        fail("parity: %d of %d z symbols differ, max |TF - ORT| %.2e (decoder), %.2e (latents)" % (mismatched, total, worst_pixel, worst_latent))
    if worst_gradient > GRADIENT_TOLERANCE:
        fail("decoder_gradient parity: relative error %.2e > %.0e" % (worst_gradient, GRADIENT_TOLERANCE))
    if tables_differ > TABLE_MISMATCH_LIMIT * tables_total:
        fail("entropy model parity: %d of %d table choices differ between TF and the integer network" % (tables_differ, tables_total))
    return {"images": len(images), "z_symbols_compared": total, "z_symbols_on_boundary_differing": mismatched,
            "table_choices_compared": int(tables_total), "table_choices_differing": int(tables_differ),
            "decoder_max_abs_error": worst_pixel, "latents_max_abs_error": worst_latent,
            "decoder_gradient_max_relative_error": worst_gradient}


def _table_mismatch(model, codebook, folder, z_symbols):
    """How many (base, table index) choices of the runtime's integer hyper-synthesis differ from TF's fake-quantised
    one on these ẑ (ties and float32 accumulation may flip a few; a wrong layout would flip most); for a model with
    gains, at the middle grid point of its quality (training's float gain against the runtime's integer multiplier),
    else ungained."""
    import tensorflow as tf
    from export import hyperprior as hp
    from l3ic.hyperprior import EntropyModel
    em = EntropyModel(os.path.join(folder, ENTROPY_MODEL), model.config["channels"], codebook.size)
    mean, scale = model.hyper_synthesis(np.transpose(z_symbols, [1, 2, 0])[None].astype(np.float32) + hp.Z_MIN)
    gain = None
    if model.config.get("qualities"):
        point = len(model.config["qualities"]) // 2
        m, g, _ = model.gain_units.gain(tf.constant(point))
        mean, scale = hp.gained(mean, scale, m, g)
        gain = em.gain(int(em.quality_grid[point]))
    base, index = em.parameters(z_symbols, gain)
    mean_q = np.rint(np.transpose(mean.numpy()[0], [2, 0, 1]) * hp.PHASES).astype(np.int64)
    tf_base, phase = np.divmod(mean_q, hp.PHASES)
    tf_index = np.rint(np.transpose(scale.numpy()[0], [2, 0, 1])).astype(np.int64) * hp.PHASES + phase
    return int(np.sum((tf_base != base) | (tf_index != index)))


def latent_counts(source, config):
    """The fitted latent tables of a run or keras/ folder (``LATENT_COUNTS``), or None: Gaussian tables."""
    if not config.get("latent_tables"):
        return None
    path = os.path.join(source, LATENT_COUNTS)
    if not os.path.exists(path):
        fail("%s records fitted latent tables but has no %s" % (source, LATENT_COUNTS))
    return np.load(path, allow_pickle=False)


def write_entropy_model(model, codebook, folder, counts=None):
    """entropy_model.npz: the integer hyper-synthesis and the FSE tables (``counts``: fitted latent tables, else the
    Gaussians), checked by loading it as the runtime does."""
    from export.hyperprior import entropy_model_arrays
    from l3ic.hyperprior import EntropyModel
    path = os.path.join(folder, ENTROPY_MODEL)
    np.savez(path, **entropy_model_arrays(model, codebook, counts))
    EntropyModel(path, model.config["channels"], codebook.size)  # raises if the runtime would refuse it


def order_channels_by_importance(model, codebook, images):
    """Permute latent channels so that the most important comes first; returns the permutation."""
    import tensorflow as tf
    damage = np.zeros(model.config["channels"])
    for im in images:
        x = tf.constant(im[None], tf.float32) / 255.0
        q = codebook.hard(model.analysis(x)).numpy()
        ref = np.clip(model.synthesis(q).numpy(), 0, 1)
        for c in range(q.shape[-1]):
            cut = q.copy()
            cut[..., c] = 0.0
            damage[c] += np.mean((np.clip(model.synthesis(cut).numpy(), 0, 1) - ref) ** 2)
    order = np.argsort(-damage, kind="stable")  # the channel whose loss hurts most comes first
    project, expand = model.analysis.project, model.synthesis.expand
    k, b = project.get_weights()
    project.set_weights([k[..., order], b[order]])
    k2, b2 = expand.get_weights()
    expand.set_weights([k2[:, :, order, :], b2])
    return order


def to_onnx(function, path):
    import onnx
    import tf2onnx
    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=OPSET)
    proto.ir_version = IR_VERSION
    ops = sorted({n.op_type for n in proto.graph.node})
    bad = [op for op in ops if op not in ALLOWED_OPS]
    if bad:
        fail("exported graph uses ops outside the allowed set: %s" % ", ".join(bad))
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return ops


def check_parity(model, codebook, folder, images):
    """TF vs ONNX Runtime on ``images`` for the three graphs in ``folder``.

    Encoder: symbols may differ only on rounding boundaries (and rarely), the
    float latents by float noise.  Decoder: pixel error.  Decoder gradient:
    squared error and gradient relative to their TF magnitude.
    """
    import onnxruntime as ort
    import tensorflow as tf
    from export.adjoint import squared_error_and_gradient
    enc, dec, grad = (ort.InferenceSession(os.path.join(folder, name), providers=["CPUExecutionProvider"]) for name in GRAPHS)
    mismatched, total, worst_pixel, worst_latent, worst_gradient = 0, 0, 0.0, 0.0, 0.0
    for im in images:
        y = model.analysis(tf.constant(im[None], tf.float32) / 255.0).numpy()
        tf_symbols = np.transpose(codebook.to_symbols(y).numpy(), [0, 3, 1, 2])
        ort_symbols, ort_latents = enc.run(["symbols", "latents"], {"image": im[None]})
        if ort_symbols.shape != tf_symbols.shape or ort_symbols.dtype != np.uint8:
            fail("encoder output shape/dtype %s %s differs from TF %s" % (ort_symbols.shape, ort_symbols.dtype, tf_symbols.shape))
        worst_latent = max(worst_latent, float(np.max(np.abs(np.transpose(codebook.clip(y).numpy(), [0, 3, 1, 2]) - ort_latents))))
        differ = ort_symbols != tf_symbols
        frac = np.abs(np.transpose(y, [0, 3, 1, 2]) - np.floor(np.transpose(y, [0, 3, 1, 2])) - 0.5)
        if np.any(differ & (frac > BOUNDARY)):
            fail("encoder parity: %d symbols differ away from a rounding boundary" % int(np.sum(differ & (frac > BOUNDARY))))
        mismatched += int(differ.sum())
        total += differ.size
        q = codebook.from_symbols(np.transpose(tf_symbols, [0, 2, 3, 1]))
        tf_image = np.clip(model.synthesis(q).numpy(), 0, 1)
        ort_image = dec.run(None, {"symbols": tf_symbols})[0]
        worst_pixel = max(worst_pixel, float(np.max(np.abs(tf_image - ort_image))))
        tf_sse, tf_grad = squared_error_and_gradient(model.synthesis, q, tf.constant(im[None], tf.float32) / 255.0)
        ort_sse, ort_grad = grad.run(["sse", "gradient"], {"latents": np.transpose(q.numpy(), [0, 3, 1, 2]), "image": im[None]})
        tf_grad = np.transpose(tf_grad.numpy(), [0, 3, 1, 2])
        worst_gradient = max(worst_gradient, abs(float(ort_sse) - float(tf_sse)) / max(float(tf_sse), 1.0),
                             float(np.linalg.norm(ort_grad - tf_grad)) / max(float(np.linalg.norm(tf_grad)), 1e-6))
    if mismatched > SYMBOL_MISMATCH_LIMIT * total:
        fail("encoder parity: %d of %d symbols differ" % (mismatched, total))
    if worst_pixel > PIXEL_TOLERANCE or worst_latent > PIXEL_TOLERANCE:
        fail("parity: max |TF - ORT| = %.2e (decoder), %.2e (latents) > %.0e" % (worst_pixel, worst_latent, PIXEL_TOLERANCE))
    if worst_gradient > GRADIENT_TOLERANCE:
        fail("decoder_gradient parity: relative error %.2e > %.0e" % (worst_gradient, GRADIENT_TOLERANCE))
    return {"images": len(images), "symbols_compared": total, "symbols_on_boundary_differing": mismatched,
            "decoder_max_abs_error": worst_pixel, "latents_max_abs_error": worst_latent,
            "decoder_gradient_max_relative_error": worst_gradient}


def graph_records(folder, ops):
    """The manifest entries describing the ONNX files in ``folder``: ops, file hashes, inputs and outputs."""
    if os.path.exists(os.path.join(folder, ENTROPY_MODEL)):
        return hyper_graph_records(folder, ops)
    return {
        "ops": ops,
        "files": file_records(folder, GRAPHS),
        "io": {"encoder": {"input": "image", "input_type": "uint8 NHWC, RGB, H and W multiples of stride",
                           "output": "symbols", "output_type": "uint8 NCHW codebook indices",
                           "latents": "float32 NCHW, before rounding, clipped to the codebook range"},
               "decoder": {"input": "symbols", "output": "image", "output_type": "float32 NHWC in [0, 1]"},
               "decoder_gradient": {"inputs": "latents (float32 NCHW codebook values), image (uint8 NHWC)",
                                    "outputs": "sse (squared error of the clipped output on 0..255), gradient (d sse / d latents, NCHW)"}},
    }


def file_records(folder, names):
    return {f: {"sha256": file_sha256(os.path.join(folder, f)), "bytes": os.path.getsize(os.path.join(folder, f))}
            for f in names}


def hyper_graph_records(folder, ops):
    """``graph_records`` of a format-3 model."""
    return {
        "format": 3,
        "ops": ops,
        "files": file_records(folder, GRAPHS + (ENTROPY_MODEL,)),
        "io": {"encoder": {"input": "image", "input_type": "uint8 NHWC, RGB, H and W multiples of stride",
                           "latents": "float32 NCHW, the analysis transform's output y",
                           "z_symbols": "uint8 NCHW, the hyperprior's side information, rounded (symbol = z - z_min)"},
               "decoder": {"input": "latents", "input_type": "float32 NCHW, the integer latent values ŷ",
                           "output": "image", "output_type": "float32 NHWC in [0, 1]"},
               "decoder_gradient": {"inputs": "latents (float32 NCHW), image (uint8 NHWC)",
                                    "outputs": "sse (squared error of the clipped output on 0..255), gradient (d sse / d latents, NCHW)"},
               "entropy_model": "integer hyper-synthesis ẑ -> mean, scale index; FSE tables (l3ic.hyperprior)"},
    }


def refine_record(training):
    """Parameters of encoder-side refinement (l3ic.refine) for a model with this manifest ``training`` record;
    None for a model not trained on MSE, whose λ does not fit refinement's MSE objective."""
    if training.get("distortion", "mse") != "mse":
        return None
    return {"lambda": REFINE_LAMBDA_SCALE * training_lambda(training), "learning_rate": REFINE_LEARNING_RATE}


def training_lambda(config):
    """The rate weight of a model at its default quality: lambda_of(its preset) with gains, else --lambda."""
    from l3ic.quality import lambda_of
    if config.get("qualities"):
        return lambda_of(config["default_quality"])
    return float(config["lambda"])


def export_graphs(functions, folder, names=GRAPHS):
    """Convert the named tf.functions to ONNX files in ``folder``; returns the ops they use."""
    return sorted(set().union(*(to_onnx(functions[name], os.path.join(folder, name)) for name in names)))


def measure(model_dir, folder, limit=None, refine=0):
    """RD of the exported model through the real runtime (file bytes, PSNR, MS-SSIM)."""
    from l3ic.errors import ImageError
    from l3ic.evaluate import evaluate_folder
    try:
        return evaluate_folder(model_dir, folder, limit=limit, refine=refine)
    except ImageError as e:
        fail(str(e))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m export.to_onnx", description=__doc__.split("\n\n")[0])
    p.add_argument("source", nargs="?", help="training run folder (runs/NAME) or a released models/NAME/keras folder")
    p.add_argument("--out", help="model folder to write (models/NAME)")
    p.add_argument("--remeasure", metavar="MODEL_DIR",
                   help="only measure an installed model again (--sample, --eval) and update its manifest, "
                        "e.g. after a better entropy coder")
    p.add_argument("--upgrade", metavar="MODEL_DIR",
                   help="re-export encoder.onnx and decoder_gradient.onnx of an installed model from its keras/ weights "
                        "(for encoder-side refinement), keeping decoder.onnx and so every file already made with it")
    p.add_argument("--retire", metavar="MODEL_DIR",
                   help="copy the decoder (and entropy model) of an installed model to the decode-only folder --out "
                        "(models/legacy/NAME-formatN), so that its files keep decoding after the model is replaced")
    p.add_argument("--refine", type=int, default=0,
                   help="with --remeasure: measure --eval with this many refinement steps, recorded as rd_refine")
    p.add_argument("--name", help="model name stored in files (default: the --out folder name)")
    p.add_argument("--parity-images", help="folder of (non-evaluation) images for the parity check and channel ranking "
                                         "(default: the run's validation images)")
    p.add_argument("--eval", help="folder to measure the RD recorded in the manifest (e.g. the Kodak set)")
    p.add_argument("--eval-name", help="name of the --eval set in the manifest (default: folder name)")
    p.add_argument("--sample", default="samples/rose.png", help="image whose bpp/PSNR the manifest records")
    p.add_argument("--provisional", action="store_true", help="mark the model as provisional (not a release)")
    p.add_argument("--no-reorder", action="store_true", help="keep the trained channel order")
    return p.parse_args(argv)


def parity_images(folder, config):
    """A few deterministic inputs: photos (``folder``, else the run's validation images), odd-sized noise/gradients.

    The photos also rank the channels by importance, so they must not be
    evaluation images (never Kodak): by default they are the run's own held-out
    validation images.
    """
    from export import data
    images = []
    if folder:
        paths = data.image_paths(folder)
    elif config.get("val"):
        paths = data.image_paths(config["val"])
    elif config.get("data") and os.path.isdir(config["data"]):
        paths = data.split_holdout(data.image_paths(config["data"]), config.get("holdout", 0))[1]
    else:
        paths = []
    if paths:
        images += data.center_crops(paths[:3], 256)
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 96 * 136 * 3).reshape(96, 136, 3).astype(np.uint8)
    images += [gradient, rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)]
    return images


def remeasure(args):
    """Rewrite the ``sample`` and ``rd`` (with ``--refine``: ``rd_refine``) records of an installed model's manifest."""
    path = os.path.join(args.remeasure, "manifest.json")
    if not os.path.exists(path):
        fail("%s has no manifest.json" % args.remeasure)
    with open(path) as f:
        manifest = json.load(f)
    if args.sample and os.path.exists(args.sample):
        manifest["sample"] = measure_one(args.remeasure, args.sample)
    if args.eval:
        dataset = args.eval_name or os.path.basename(os.path.normpath(args.eval))
        if args.refine:
            manifest["rd_refine"] = dict(measure(args.remeasure, args.eval, refine=args.refine), dataset=dataset, refine=args.refine)
        else:
            manifest["rd"] = dict(measure(args.remeasure, args.eval), dataset=dataset)
    write_json(path, manifest)
    print("updated %s: %s" % (path, json.dumps({k: manifest.get(k) for k in ("sample", "rd", "rd_refine")})))


def upgrade(args):
    """Give an installed model the graphs that refinement needs, leaving its decoder.onnx untouched.

    The new encoder must produce exactly the installed encoder's symbols on the
    parity images, so the model's files and numbers stay valid.
    """
    import onnxruntime as ort
    from export.quantizer import Codebook
    folder = args.upgrade
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    if int(manifest.get("format", 2)) >= 3:
        fail("%s is a format-3 model, exported with refinement's graphs already: nothing to upgrade" % folder)
    model, config, _ = load_trained(os.path.join(folder, "keras"))
    codebook = Codebook(config["codebook_min"], config["codebook_size"])
    images = parity_images(args.parity_images, config)
    staging = tempfile.mkdtemp(prefix=".export-", dir=os.path.abspath(folder))
    try:
        new_ops = export_graphs(graph_functions(model, codebook), staging, ("encoder.onnx", "decoder_gradient.onnx"))
        shutil.copy(os.path.join(folder, "decoder.onnx"), staging)
        old = ort.InferenceSession(os.path.join(folder, "encoder.onnx"), providers=["CPUExecutionProvider"])
        new = ort.InferenceSession(os.path.join(staging, "encoder.onnx"), providers=["CPUExecutionProvider"])
        for im in images:
            if not np.array_equal(old.run(["symbols"], {"image": im[None]})[0], new.run(["symbols"], {"image": im[None]})[0]):
                fail("the re-exported encoder does not reproduce the installed encoder's symbols")
        parity = check_parity(model, codebook, staging, images)
        manifest.update(graph_records(staging, sorted(set(manifest["ops"]) | set(new_ops))), parity=parity, refine=refine_record(manifest["training"]))
        write_json(os.path.join(staging, "manifest.json"), manifest)
        for name in ("encoder.onnx", "decoder_gradient.onnx", "manifest.json"):
            os.replace(os.path.join(staging, name), os.path.join(folder, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print("upgraded %s: %s" % (folder, json.dumps({"parity": parity, "refine": manifest["refine"]})))


def retire(folder, out):
    """A decode-only copy of an installed model: what ``l3ic.model.find_decoder`` needs to decode its files."""
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    names = ["decoder.onnx"] + ([ENTROPY_MODEL] if ENTROPY_MODEL in manifest["files"] else [])
    if os.path.exists(out):
        fail("%s exists: retire into a new folder" % out)
    os.makedirs(out)
    for name in names:
        shutil.copyfile(os.path.join(folder, name), os.path.join(out, name))
    kept = {k: v for k, v in manifest.items() if k not in ("files", "io", "refine", "sample")}
    kept.update(files={n: manifest["files"][n] for n in names},
                io={k: v for k, v in manifest["io"].items() if k in ("decoder", "entropy_model")},
                decode_only="the decoder of l3ic's %s release (format %d), kept so that its files still decode"
                            % (manifest["exported"][:10], int(manifest.get("format", 2))))
    write_json(os.path.join(out, "manifest.json"), kept)
    print("retired %s to %s" % (folder, out))


def main(argv=None):
    args = parse_args(argv)
    if args.retire:
        if not args.out:
            fail("--retire needs --out (models/legacy/NAME-formatN)")
        return retire(args.retire, args.out)
    require_export_extra("export.to_onnx")
    if args.remeasure:
        return remeasure(args)
    if args.upgrade:
        return upgrade(args)
    if not (args.source and args.out):
        fail("give a source and --out (or --remeasure / --upgrade MODEL_DIR)")
    from export.model import STRIDE
    from export.quantizer import Codebook
    model, config, weights = load_trained(args.source)
    codebook = Codebook(config["codebook_min"], config["codebook_size"])
    name = args.name or os.path.basename(os.path.normpath(args.out))
    images = parity_images(args.parity_images, config)

    reorder = not (args.no_reorder or model.has_hyperprior)
    order = order_channels_by_importance(model, codebook, images[:3]) if reorder else None
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(os.path.abspath(args.out)))
    try:
        ops = export_graphs(graph_functions(model, codebook), staging)
        counts = latent_counts(args.source, config)
        if model.has_hyperprior:
            write_entropy_model(model, codebook, staging, counts)
            release = os.path.dirname(os.path.normpath(config["init"]["folder"])) if config.get("init") else None
            if config.get("encoder_only"):
                keep_released_graphs(staging, release, ("decoder.onnx",))
            elif config.get("gain_fit") or config.get("latent_tables"):
                keep_released_graphs(staging, release, GRAPHS, (GAIN_KEYS if config.get("gain_fit") else ())
                                     + (("latent_counts",) if config.get("latent_tables") else ()))
            parity = check_hyper_parity(model, codebook, staging, images)
        else:
            parity = check_parity(model, codebook, staging, images)
        print("parity ok: %s" % json.dumps(parity), flush=True)
        os.makedirs(os.path.join(staging, "keras"))
        model.save_weights(os.path.join(staging, "keras", "model.weights.h5"))
        keras_config = dict(model.config, codebook_min=config["codebook_min"], codebook_size=config["codebook_size"],
                            total_steps=total_steps(config))  # the architecture as built, old configs included
        if counts is not None:
            np.save(os.path.join(staging, "keras", LATENT_COUNTS), counts)
            keras_config["latent_tables"] = config["latent_tables"]
        with open(os.path.join(staging, "keras", "config.json"), "w") as f:
            json.dump(keras_config, f, indent=2)
        manifest = {
            "name": name,
            "provisional": bool(args.provisional),
            "channels": config["channels"],
            "codebook": {"minimum": config["codebook_min"], "size": config["codebook_size"]},
            "stride": STRIDE,
            "channel_order": "importance" if order is not None else "trained",
            "opset": OPSET,
            "ir_version": IR_VERSION,
            **graph_records(staging, ops),
            "parameters": model.parameter_counts(),
            "training": {"data": _relative(config.get("data")), "images": config.get("train_images"), "steps": config.get("trained_steps"),
                         "init": config.get("init"), "encoder_only": bool(config.get("encoder_only")),
                         "total_steps": total_steps(config),
                         "lambda": training_lambda(config), "qualities": config.get("qualities"),
                         "default_quality": config.get("default_quality"),
                         "distortion": config.get("distortion"), "batch": config.get("batch"), "crop": config.get("crop"),
                         "gain_fit": config.get("gain_fit"), "latent_tables": config.get("latent_tables"),
                         "precision": config.get("precision_used")},
            "parity": parity,
            "refine": refine_record(config),
            "exported": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        write_json(os.path.join(staging, "manifest.json"), manifest)
        if args.sample and os.path.exists(args.sample):
            manifest["sample"] = measure_one(staging, args.sample)
        if args.eval:
            manifest["rd"] = dict(measure(staging, args.eval), dataset=args.eval_name or os.path.basename(os.path.normpath(args.eval)))
        write_json(os.path.join(staging, "manifest.json"), manifest)
        install(staging, args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print("wrote %s: %s" % (args.out, json.dumps({k: manifest.get(k) for k in ("parameters", "sample", "rd")})))


def keep_released_graphs(staging, release, names, may_differ=()):
    """A run that changed only some of a release's weights: put the release's own ONNX files ``names`` in ``staging``.

    An --encoder-only run keeps ``decoder.onnx``; a gain fit (``export.fit_gains``)
    changes only the gains in the entropy model, a table fit (``export.fit_tables``)
    only its latent tables, and both keep all three graphs.
    The decoder file's hash is part of the identity every file records, so
    keeping the very file (a re-export computes the same but is not
    byte-identical: tf2onnx numbers its folded constants anew) lets an
    encoder-only model decode the old model's files with no legacy copy.  Fails
    unless each re-exported graph computes exactly what the released one does
    and the entropy models are equal but for the arrays ``may_differ``.
    """
    import onnxruntime as ort
    released, exported = (np.load(os.path.join(f, ENTROPY_MODEL)) for f in (release, staging))
    compared = [k for k in released.files if k not in may_differ]
    if sorted(released.files) != sorted(exported.files) or any(not np.array_equal(released[k], exported[k]) for k in compared):
        fail("the run's entropy model differs from %s's: not a run that keeps that release's graphs" % release)
    rng = np.random.default_rng(0)
    for name in names:
        sessions = [ort.InferenceSession(os.path.join(f, name), providers=["CPUExecutionProvider"]) for f in (release, staging)]
        feed = {}
        for given in sessions[0].get_inputs():  # an image of 64 px (uint8 NHWC) and latents of 8 cells (float NCHW)
            if given.type == "tensor(uint8)":
                feed[given.name] = rng.integers(0, 256, (1, 64, 64, 3)).astype(np.uint8)
            else:
                feed[given.name] = rng.integers(-4, 5, (1, given.shape[1], 8, 8)).astype(np.float32)
        if any(not np.array_equal(a, b) for a, b in zip(*(s.run(None, feed) for s in sessions))):
            fail("the run's %s differs from %s's: not a run that keeps that release's graphs" % (name, release))
        shutil.copyfile(os.path.join(release, name), os.path.join(staging, name))


def total_steps(config):
    """Training steps behind the weights, counting those of the model a warm-started run began from."""
    if "trained_steps" not in config:  # a released keras/ folder
        return config.get("total_steps")
    init = config.get("init")
    if not init:
        return config["trained_steps"]
    return None if init.get("total_steps") is None else config["trained_steps"] + init["total_steps"]


def measure_one(model_dir, path):
    from l3ic.evaluate import evaluate_image
    result = evaluate_image(model_dir, path)
    return {"file": path, "bpp": result["bpp"], "psnr": result["psnr"]}


def _relative(path):
    """A data path as seen from the repository root (e.g. ../shared/datasets/train), not this machine's absolute path."""
    if not path:
        return path
    return os.path.relpath(path, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_json(path, obj):
    """Write ``obj`` as indented JSON, atomically (``l3ic.files``): a manifest is never half-written."""
    from l3ic.files import write_bytes_atomic
    write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode(), overwrite=True)


def install(staging, out):
    """Replace the files of ``out`` with the staged ones (other files there are kept)."""
    os.makedirs(out, exist_ok=True)
    for name in GRAPHS + ((ENTROPY_MODEL,) if os.path.exists(os.path.join(staging, ENTROPY_MODEL)) else ()) + ("manifest.json",):
        os.replace(os.path.join(staging, name), os.path.join(out, name))
    shutil.rmtree(os.path.join(out, "keras"), ignore_errors=True)
    shutil.move(os.path.join(staging, "keras"), os.path.join(out, "keras"))


if __name__ == "__main__":
    main()
