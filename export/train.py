"""Train an l3ic model: ``python -m export.train --data DIR --channels 32 --out runs/NAME``.

Loss = distortion + lambda * rate, with the distortion the MSE on the 0..255
scale (or 1 - MS-SSIM scaled to a comparable range).  The rate: with
``--z-channels`` (a format-3 model) the code length of the latents under the
hyperprior plus that of its side information (``export.hyperprior``), and
``--hyper-steps`` first steps train only the hyperprior on the frozen
(warm-started) transforms; without, the per-channel soft-histogram entropy in
bits per pixel (see ``quantizer``).  Validation measures the rate with the
runtime's entropy coder itself (format 2) or the hyperprior's code
length of the rounded latents (format 3).

The run folder holds ``config.json`` (the hyper-parameters, fixed at the first
start), ``log.jsonl`` (progress and validation) and ``checkpoint/`` (weights,
optimiser state, step and random-generator states), rewritten atomically every
few minutes.  ``--resume`` continues exactly where the last checkpoint stopped,
so training may be killed at any moment.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np

from export import data, require_export_extra
from l3ic.quality import MAX_MODEL_QUALITY

DEFAULTS = {
    "channels": 32, "width": 128, "blocks": 3, "detail": 0, "lambda": 64.0, "distortion": "mse",
    "steps": 20000, "batch": 16, "crop": 128, "lr": 3e-4, "warmup": 500, "decay_from": 0.8,
    "clip_norm": 1.0, "noise_fraction": 0.2, "codebook_min": -15, "codebook_size": 32,
    "seed": 0, "precision": "auto", "holdout": 8, "val_size": 256,
    "z_channels": 0, "hyper_width": 64, "hyper_steps": 0, "hyper_lr_scale": 10.0, "qualities": None,
    "gain_lr": 3e-3, "default_quality": None, "gains_only": False, "free_preset": False, "encoder_only": False,
    "lambdas": None, "holdout_smooth": 0, "smooth_fraction": 0.0, "analysis_extra": 0,
}
ARCHITECTURE = ("channels", "width", "blocks", "detail", "z_channels", "hyper_width", "qualities", "default_quality",
                "gains_only", "codebook_min", "codebook_size")  # what --encoder-only takes from the --init model


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m export.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="folder of training images (any of l3ic.image.IMAGE_SUFFIXES)")
    p.add_argument("--val", help="folder of validation images (default: --holdout images split off --data)")
    p.add_argument("--out", required=True, help="run folder (config, log, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--channels", type=int, help="latent channels (seed: 16/32/64 = low/medium/high)")
    p.add_argument("--width", type=int, help="feature width of the transforms")
    p.add_argument("--blocks", type=int, help="residual blocks in each transform")
    p.add_argument("--detail", type=int, help="extra decoder residual blocks at 1/4 and at 1/2 resolution each")
    p.add_argument("--analysis-extra", type=int, help="residual blocks added to the encoder at 1/8 resolution, "
                   "starting as the identity (with --encoder-only: a larger encoder for the released decoder)")
    p.add_argument("--lambda", dest="lambda_", type=float, help="rate weight: MSE(0..255) per bit per pixel")
    p.add_argument("--distortion", choices=["mse", "msssim"])
    p.add_argument("--steps", type=int, help="total training steps (may be raised on --resume)")
    p.add_argument("--batch", type=int)
    p.add_argument("--crop", type=int, help="training crop size in pixels")
    p.add_argument("--lr", type=float, help="peak Adam learning rate")
    p.add_argument("--warmup", type=int, help="linear learning-rate warm-up steps")
    p.add_argument("--decay-from", type=float, help="fraction of --steps after which the rate decays to 1%%")
    p.add_argument("--clip-norm", type=float, help="global gradient-norm clip")
    p.add_argument("--noise-fraction", type=float, help="fraction of steps using additive noise instead of rounding")
    p.add_argument("--z-channels", type=int, help="hyperprior side-information channels (0: no hyperprior, a "
                                                   "format-2 model with per-file histograms)")
    p.add_argument("--hyper-width", type=int, help="feature width of the hyper-analysis and hyper-synthesis")
    p.add_argument("--hyper-steps", type=int, help="first steps train only the hyperprior, on frozen transforms")
    p.add_argument("--hyper-lr-scale", type=float, help="the hyperprior's learning rate relative to --lr")
    p.add_argument("--qualities", type=_qualities, help="continuous quality: comma-separated grid of q values "
                                                         "(l3ic.quality), each with its own gains and lambda_of(q); "
                                                         "steps take the points in turn, and --lambda is not used")
    p.add_argument("--lambdas", type=_numbers, help="with --qualities: the rate weight of each grid point (default: "
                                                     "l3ic.quality.lambda_of of each); kept in the run's config")
    p.add_argument("--holdout-smooth", type=int, help="also keep the N smooth photos of export.data.split_smooth out "
                                                       "of training (they are an evaluation set)")
    p.add_argument("--smooth-fraction", type=float, help="share of crops drawn from images weighted by their flat "
                                                          "area (export.data.CropSampler)")
    p.add_argument("--default-quality", type=float, help="with --qualities: the q an encode uses by default (the "
                                                           "model's preset, l3ic.quality.PRESETS), inside the grid")
    p.add_argument("--gain-lr", type=float, help="Adam learning rate of the gain units (with --qualities)")
    p.add_argument("--gains-only", action="store_const", const=True, help="with --qualities and --init: only the gains "
                   "learn, on the released model's frozen transforms and hyperprior; the default quality keeps gain 1, "
                   "so the model's preset codes exactly as the released model")
    p.add_argument("--free-preset", action="store_const", const=True, help="with --gains-only: the default quality's "
                   "gains learn too, for a model that replaces the --init model rather than extending it (with a "
                   "wider codebook, the released preset's steps are no longer the best at its rate weight)")
    p.add_argument("--encoder-only", action="store_const", const=True, help="with --init: only the analysis transform "
                   "learns, with refinement's relaxation (export.relaxation) against the released model's decoder, "
                   "hyperprior, tables and gains, which stay as they are, so its files keep decoding; the "
                   "architecture is the --init model's")
    p.add_argument("--codebook-min", type=int)
    p.add_argument("--codebook-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], help="auto = bf16 where the CPU supports it")
    p.add_argument("--holdout", type=int, help="images of --data kept for validation when --val is not given")
    p.add_argument("--val-size", type=int, help="validation uses the central crop of this size")
    p.add_argument("--init", help="start a new run from the weights of a models/NAME/keras folder (fine-tuning; "
                                  "the latent channel count may differ: see warm_start)")
    p.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: all cores)")
    p.add_argument("--checkpoint-minutes", type=float, default=3.0)
    p.add_argument("--log-every", type=int, default=50)
    return p.parse_args(argv)


def _numbers(text):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated numbers, got %r" % text)


def _qualities(text):
    points = _numbers(text)
    if len(points) < 2 or points != sorted(set(points)) or not 0 <= points[0] <= points[-1] <= MAX_MODEL_QUALITY:
        raise argparse.ArgumentTypeError("expected at least two increasing q values in 0..%d, got %r"
                                         % (MAX_MODEL_QUALITY, text))
    return points


def resolve_config(args):
    """Hyper-parameters: from the run's config.json on --resume, else defaults + flags."""
    path = os.path.join(args.out, "config.json")
    flags = {k: v for k, v in vars(args).items() if v is not None}
    flags["lambda"] = flags.pop("lambda_", None)
    if args.resume:
        if not os.path.exists(path):
            raise SystemExit("error: --resume given but %s does not exist" % path)
        with open(path) as f:
            config = json.load(f)
        if args.steps:
            config["steps"] = args.steps  # the one thing a resume may change
        ignored = [k for k in DEFAULTS if k != "steps" and flags.get(k) is not None and flags[k] != config.get(k)]
        if ignored:
            print("note: --resume keeps the run's config; ignoring --" + ", --".join(ignored), file=sys.stderr)
        return config
    if not args.data:
        raise SystemExit("error: --data is required for a new run")
    if os.path.exists(os.path.join(args.out, "checkpoint")):
        raise SystemExit("error: %s already has a checkpoint; use --resume or another --out" % args.out)
    config = dict(DEFAULTS)
    config.update({k: v for k, v in flags.items() if k in DEFAULTS and v is not None})
    config["data"] = os.path.abspath(args.data)
    config["val"] = os.path.abspath(args.val) if args.val else None
    config["init"] = init_record(args.init) if args.init else None
    if config["encoder_only"]:
        if not args.init:
            raise SystemExit("error: --encoder-only needs --init (the released model whose decoder it keeps)")
        with open(os.path.join(args.init, "config.json")) as f:
            released = json.load(f)
        config.update({k: released.get(k, DEFAULTS.get(k)) for k in ARCHITECTURE})
        config["analysis_extra"] = max(config["analysis_extra"], released.get("analysis_extra", 0))
    return config


def init_record(folder):
    """What a warm-started run starts from: the weights' folder and the training steps already behind them."""
    with open(os.path.join(folder, "config.json")) as f:
        return {"folder": folder, "total_steps": json.load(f).get("total_steps")}


def cpu_has_bf16():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def learning_rate(config, step):
    """Linear warm-up, constant, then exponential decay to 1% over the last part."""
    peak, steps = config["lr"], config["steps"]
    if step < config["warmup"]:
        return peak * (step + 1) / config["warmup"]
    start = int(config["decay_from"] * steps)
    if step < start:
        return peak
    return peak * 0.01 ** ((step - start) / max(1, steps - start))


class Trainer:
    """Owns the model, optimiser, data and checkpoints of one run."""

    def __init__(self, config, out):
        import keras
        import tensorflow as tf
        from export.model import STRIDE, L3icModel
        from export.quantizer import Codebook

        self.tf, self.keras, self.config, self.out = tf, keras, config, out
        precision = config["precision"]
        if precision == "auto":
            precision = "bf16" if cpu_has_bf16() else "fp32"
        self.precision = precision
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
        keras.utils.set_random_seed(config["seed"])

        self.stride = STRIDE
        self.codebook = Codebook(config["codebook_min"], config["codebook_size"])
        self.model = L3icModel.from_config_dict(config).build_for()
        self.hyper = self.model.has_hyperprior
        self.transform_variables = self.model.analysis.trainable_variables + self.model.synthesis.trainable_variables
        self.optimizer = keras.optimizers.Adam(learning_rate=config["lr"], global_clipnorm=config["clip_norm"])
        self.optimizer.build(self.transform_variables)
        if self.hyper:
            m = self.model
            self.hyper_variables = (m.hyper_analysis.trainable_variables + m.hyper_synthesis.trainable_variables
                                    + m.z_prior.trainable_variables)
            self.hyper_optimizer = keras.optimizers.Adam(learning_rate=config["lr"], global_clipnorm=config["clip_norm"])
            self.hyper_optimizer.build(self.hyper_variables)
        self.noise = tf.random.Generator.from_seed(config["seed"] + 1)
        self.step = 0
        from l3ic.quality import lambda_of
        self.qualities = config.get("qualities") or []
        self.lambdas = config.get("lambdas") or [lambda_of(q) for q in self.qualities] or [config["lambda"]]
        if len(self.lambdas) != max(1, len(self.qualities)):
            raise SystemExit("error: --lambdas needs one value per --qualities point")
        if self.qualities and not self.hyper:
            raise SystemExit("error: --qualities needs a hyperprior model (--z-channels)")
        if config.get("gains_only") and not (self.qualities and config.get("init")):
            raise SystemExit("error: --gains-only needs --qualities and --init (the released model to add gains to)")
        if config.get("free_preset") and not config.get("gains_only"):
            raise SystemExit("error: --free-preset needs --gains-only (in other training every gain learns)")
        if config.get("encoder_only") and not (self.hyper and config["hyper_steps"] == 0):
            raise SystemExit("error: --encoder-only needs a hyperprior model and --hyper-steps 0")
        if self.qualities and not (config.get("default_quality") is not None
                                   and self.qualities[0] <= config["default_quality"] <= self.qualities[-1]):
            raise SystemExit("error: --qualities needs --default-quality inside the grid")
        if self.qualities:  # the gains have an optimiser of their own: they move by whole table steps
            self.gain_optimizer = keras.optimizers.Adam(learning_rate=config["gain_lr"])
            self.gain_optimizer.build(self.model.gain_units.trainable_variables)

        train_paths = data.image_paths(config["data"])
        if config.get("val"):
            val_paths = data.image_paths(config["val"])
        else:
            train_paths, val_paths = data.split_holdout(train_paths, config["holdout"])
        train_paths = data.split_smooth(train_paths, config.get("holdout_smooth", 0))[0]
        self.sampler = data.CropSampler(train_paths, config["crop"], config["seed"], config.get("smooth_fraction", 0.0))
        self.val_images = data.center_crops(val_paths, config["val_size"]) if val_paths else []
        self.n_train = len(self.sampler.images)
        self.table_rate = None
        if config.get("encoder_only"):
            from export.relaxation import TableRate
            tables = os.path.join(config["init"]["folder"], os.pardir, "entropy_model.npz")
            self.table_rate = TableRate(tables, self.codebook)
            self._train_step = dict.fromkeys([(n, j) for n in (True, False) for j in (True, False)], self._make_encoder_step())
        elif self.hyper:
            self._train_step = {(n, j): self._make_hyper_step(n, j) for n in (True, False) for j in (True, False)}
        else:
            self._train_step = {True: self._make_step(True), False: self._make_step(False)}

    # ---- the training step -------------------------------------------------
    def _distortion(self, x, x_hat):
        tf = self.tf
        if self.config["distortion"] == "msssim":
            ms = tf.image.ssim_multiscale(x * 255.0, tf.clip_by_value(x_hat, 0.0, 1.0) * 255.0, 255.0)
            return 1000.0 * (1.0 - tf.reduce_mean(ms))  # roughly the MSE scale near 30 dB
        return tf.reduce_mean(tf.square(x - x_hat)) * (255.0 ** 2)

    def _make_step(self, use_noise):
        tf = self.tf

        @tf.function
        def step(images, lr):
            x = tf.cast(images, tf.float32) / 255.0
            with tf.GradientTape() as tape:
                y = tf.cast(self.model.analysis(x), tf.float32)
                q = self.codebook.noisy(y, self.noise) if use_noise else self.codebook.straight_through(y)
                x_hat = tf.cast(self.model.synthesis(q), tf.float32)
                distortion = self._distortion(x, x_hat)
                bpp = self.codebook.bits_per_pixel(y, self.stride)
                loss = distortion + self.config["lambda"] * bpp
            finite = self._descend(tape, loss, self.model.trainable_variables, lr)
            mse = tf.reduce_mean(tf.square(x - tf.clip_by_value(x_hat, 0.0, 1.0)))
            return loss, bpp, 10.0 * tf.math.log(1.0 / mse) / tf.math.log(10.0), finite

        return step

    def _descend(self, tape, loss, variables, lr):
        """Inside a step: the transforms' optimiser at ``lr`` moves ``variables`` down the gradient of ``loss``,
        unless a gradient is not finite; returns whether they all were."""
        tf = self.tf
        grads = tape.gradient(loss, variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        if finite:
            self.optimizer.learning_rate.assign(lr)
            self.optimizer.apply_gradients(zip(grads, variables))
        return finite

    def hyper_rate(self, y, use_noise, round_latents=False, point=None):
        """(bits of the batch, the decoder's input) under the hyperprior (``export.hyperprior.coded_bits``), at
        quality grid point ``point`` (an int tensor) when the model has gains: ŷ times the inverse gain."""
        from export.hyperprior import coded_bits
        if point is None or not self.qualities:
            return coded_bits(self.model, y, self.codebook, self.noise if use_noise else None, round_latents)
        m, g, inverse = self.model.gain_units.gain(point)
        bits, y_hat = coded_bits(self.model, y, self.codebook, self.noise if use_noise else None, round_latents, (m, g))
        return bits, y_hat * inverse

    def _make_hyper_step(self, use_noise, joint):
        """A step of a hyperprior model; not ``joint``: only the hyperprior learns, on the frozen analysis."""
        tf = self.tf

        @tf.function
        def step(images, lr, point, lam):
            x = tf.cast(images, tf.float32) / 255.0
            pixels = tf.cast(tf.shape(x)[0] * tf.shape(x)[1] * tf.shape(x)[2], tf.float32)
            frozen = bool(self.config.get("gains_only"))
            with tf.GradientTape() as tape:
                y = tf.cast(self.model.analysis(x), tf.float32)
                if frozen or not joint:
                    y = tf.stop_gradient(y)
                bits, y_hat = self.hyper_rate(y, use_noise, round_latents=not joint, point=point)
                bpp = bits / pixels
                if joint:
                    x_hat = tf.cast(self.model.synthesis(y_hat), tf.float32)
                    loss = self._distortion(x, x_hat) + lam * bpp
                    mse = tf.reduce_mean(tf.square(x - tf.clip_by_value(x_hat, 0.0, 1.0)))
                else:
                    loss, mse = lam * bpp, tf.constant(1.0)
            gains = self.model.gain_units.trainable_variables if self.qualities and joint else []  # (a rate-only loss
            # would only shrink them)
            variables = ([] if frozen else self.hyper_variables + (self.transform_variables if joint else [])) + gains
            grads = tape.gradient(loss, variables)
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
            if gains:  # the gains' rate follows the schedule of the others (warm-up, decay): rounded exponents
                # flip back and forth at a constant rate
                self.gain_optimizer.learning_rate.assign(self.config["gain_lr"] * lr / self.config["lr"])
            if frozen:  # a Python bool: only this branch is traced
                if finite:
                    self.gain_optimizer.apply_gradients(zip(grads, gains))
            elif finite:
                if gains:
                    self.gain_optimizer.apply_gradients(zip(grads[-len(gains):], gains))
                    grads, variables = grads[:-len(gains)], variables[:-len(gains)]
                n = len(self.hyper_variables)
                self.hyper_optimizer.learning_rate.assign(lr * self.config["hyper_lr_scale"])
                self.hyper_optimizer.apply_gradients(zip(grads[:n], variables[:n]))
                if joint:
                    self.optimizer.learning_rate.assign(lr)
                    self.optimizer.apply_gradients(zip(grads[n:], variables[n:]))
            return loss, bpp, 10.0 * tf.math.log(1.0 / mse) / tf.math.log(10.0), finite

        return step

    def _make_encoder_step(self):
        """A step of --encoder-only: the analysis learns with refinement's relaxation (``export.relaxation``),
        soft-rounded latents at temperature ``temp`` coded with the released tables; the rest of the model, the
        hyper-analysis included, is left as released."""
        tf = self.tf
        variables = self.model.analysis.trainable_variables

        @tf.function
        def step(images, lr, point, lam, temp):
            x = tf.cast(images, tf.float32) / 255.0
            pixels = tf.cast(tf.shape(x)[0] * tf.shape(x)[1] * tf.shape(x)[2], tf.float32)
            with tf.GradientTape() as tape:
                y = tf.cast(self.model.analysis(x), tf.float32)
                bits, y_hat = self.table_rate.coded(self.model, y, point, temp, self.noise)
                bpp = bits / pixels
                x_hat = tf.cast(self.model.synthesis(y_hat), tf.float32)
                loss = self._distortion(x, x_hat) + lam * bpp
            finite = self._descend(tape, loss, variables, lr)
            mse = tf.reduce_mean(tf.square(x - tf.clip_by_value(x_hat, 0.0, 1.0)))
            return loss, bpp, 10.0 * tf.math.log(1.0 / mse) / tf.math.log(10.0), finite

        return step

    def _validate_hyper(self):
        """Mean bpp (code length of the hard symbols under the hyperprior, z included) and PSNR; with gains, at
        every quality grid point (``val_points``: [q, bpp, psnr]) and their mean."""
        tf = self.tf
        points = []
        for point in range(max(1, len(self.qualities))):
            bpps, psnrs = [], []
            for im in self.val_images:
                x = tf.constant(im[None], tf.float32) / 255.0
                y = tf.cast(self.model.analysis(x), tf.float32)
                if self.table_rate:  # --encoder-only: the released tables' exact code lengths
                    bits, y_hat = self.table_rate.coded(self.model, y, tf.constant(point))
                else:
                    bits, y_hat = self.hyper_rate(y, use_noise=False, point=tf.constant(point))
                x_hat = tf.clip_by_value(tf.cast(self.model.synthesis(y_hat), tf.float32), 0.0, 1.0)
                bpps.append(float(bits) / (im.shape[0] * im.shape[1]))
                mse = float(tf.reduce_mean(tf.square(tf.round(x_hat * 255.0) - x * 255.0)))
                psnrs.append(10 * math.log10(255.0 ** 2 / max(mse, 1e-10)))
            points.append([self.qualities[point] if self.qualities else None, float(np.mean(bpps)), float(np.mean(psnrs))])
        record = {"val_bpp": float(np.mean([p[1] for p in points])), "val_psnr": float(np.mean([p[2] for p in points])),
                  "val_images": len(self.val_images), "val_ceiling_psnr": self._ceiling()}
        if self.qualities:
            record["val_points"] = points
        return record

    def _ceiling(self):
        """Mean PSNR of the validation crops decoded from unrounded latents (``L3icModel.unrounded``): what no
        quality of the model can pass."""
        tf = self.tf
        psnrs = []
        for im in self.val_images:
            x = tf.constant(im[None], tf.float32) / 255.0
            mse = float(tf.reduce_mean(tf.square(tf.round(self.model.unrounded(x) * 255.0) - x * 255.0)))
            psnrs.append(10 * math.log10(255.0 ** 2 / max(mse, 1e-10)))
        return float(np.mean(psnrs))

    def validate(self):
        """Mean bpp (the runtime's entropy coder on the hard symbols, chunk bytes only) and PSNR on the validation crops."""
        if self.hyper:
            return self._validate_hyper()
        from l3ic import fse
        tf = self.tf
        bpps, psnrs = [], []
        for im in self.val_images:
            x = tf.constant(im[None], tf.float32) / 255.0
            y = tf.cast(self.model.analysis(x), tf.float32)
            symbols = self.codebook.to_symbols(y).numpy()[0]  # (h, w, C)
            x_hat = tf.clip_by_value(tf.cast(self.model.synthesis(self.codebook.hard(y)), tf.float32), 0.0, 1.0)
            h, w, channels = symbols.shape
            rows = np.ascontiguousarray(symbols.transpose(2, 0, 1).reshape(channels, h * w))
            coded = fse.encode_channels(rows, self.codebook.size, width=w)
            bpps.append(8.0 * len(coded.payload) / (im.shape[0] * im.shape[1]))
            mse = float(tf.reduce_mean(tf.square(tf.round(x_hat * 255.0) - x * 255.0)))
            psnrs.append(10 * math.log10(255.0 ** 2 / max(mse, 1e-10)))
        return {"val_bpp": float(np.mean(bpps)), "val_psnr": float(np.mean(psnrs)), "val_images": len(bpps)}

    # ---- checkpoints -------------------------------------------------------
    def save(self):
        """Write checkpoint/ atomically: build checkpoint.tmp, then swap it in."""
        final = os.path.join(self.out, "checkpoint")
        tmp, old = final + ".tmp", final + ".old"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        self.model.save_weights(os.path.join(tmp, "model.weights.h5"))
        np.savez(os.path.join(tmp, "optimizer.npz"), *[v.numpy() for v in self._optimizer_variables()])
        state = {"step": self.step, "sampler": self.sampler.get_state(),
                 "noise_state": self.noise.state.numpy().tolist(), "precision": self.precision}
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(state, f)
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(final):
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def _optimizer_variables(self):
        return (list(self.optimizer.variables) + (list(self.hyper_optimizer.variables) if self.hyper else [])
                + (list(self.gain_optimizer.variables) if self.qualities else []))

    def restore(self):
        folder = os.path.join(self.out, "checkpoint")
        if not os.path.exists(os.path.join(folder, "state.json")):
            folder += ".old"  # interrupted between the two renames of save()
        if not os.path.exists(os.path.join(folder, "state.json")):
            raise SystemExit("error: no checkpoint to resume in %s" % self.out)
        self.model.load_weights(os.path.join(folder, "model.weights.h5"))
        with np.load(os.path.join(folder, "optimizer.npz")) as saved:
            for i, v in enumerate(self._optimizer_variables()):
                v.assign(saved["arr_%d" % i])
        with open(os.path.join(folder, "state.json")) as f:
            state = json.load(f)
        self.step = state["step"]
        self.sampler.set_state(state["sampler"])
        self.noise.reset(self.tf.constant(state["noise_state"], self.tf.int64))

    # ---- the loop ----------------------------------------------------------
    def log(self, record):
        with open(os.path.join(self.out, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, checkpoint_minutes, log_every):
        config, steps = self.config, self.config["steps"]
        noise_steps = int(config["noise_fraction"] * steps)
        last_save, window = time.time(), []
        t0, step0 = time.time(), self.step
        skipped = 0
        while self.step < steps:
            images = self.sampler.batch(config["batch"])
            lr = learning_rate(config, self.step)
            key = self.step < noise_steps
            if self.hyper:
                key = (key or self.step < config["hyper_steps"], self.step >= config["hyper_steps"])
            args = (images, self.tf.constant(lr, self.tf.float32))
            if self.hyper:  # the quality grid points take turns, so a resumed run continues the same sequence
                point = self.step % len(self.lambdas)
                args += (self.tf.constant(point), self.tf.constant(self.lambdas[point], self.tf.float32))
            if self.table_rate:
                from export.relaxation import temperature
                args += (self.tf.constant(temperature(self.step / steps), self.tf.float32),)
            loss, bpp, psnr, finite = self._train_step[key](*args)
            self.step += 1
            if not bool(finite):
                skipped += 1
                if skipped > 100:
                    raise SystemExit("error: 100 steps with non-finite gradients; resume from the last checkpoint with a lower --lr")
                continue
            window.append((float(loss), float(bpp), float(psnr)))
            if self.step % log_every == 0 or self.step == steps:
                self._report(window, lr, t0, step0, noise_steps)
                window = []
            if time.time() - last_save > 60 * checkpoint_minutes or self.step == steps:
                record = {"step": self.step, "time": time.time()}
                record.update(self.validate() if self.val_images else {})
                self.save()
                self.log(dict(record, event="checkpoint"))
                print("checkpoint at step %d %s" % (self.step, json.dumps(record)), flush=True)
                last_save = time.time()

    def _report(self, window, lr, t0, step0, noise_steps):
        loss, bpp, psnr = (float(np.mean(v)) for v in zip(*window))
        rate = (self.step - step0) / max(1e-9, time.time() - t0)
        eta = (self.config["steps"] - self.step) / max(rate, 1e-9)
        phase = "noise" if self.step <= noise_steps else "round"
        if self.step <= self.config.get("hyper_steps", 0):
            phase = "hyperprior only"
        print("step %d/%d loss %.2f bpp %.3f psnr %.2f lr %.2e %s %.2f steps/s eta %dm"
              % (self.step, self.config["steps"], loss, bpp, psnr, lr, phase, rate, eta // 60), flush=True)
        self.log({"step": self.step, "loss": loss, "bpp": bpp, "psnr": psnr, "lr": lr, "steps_per_s": rate})


def warm_start(model, folder, codebook=None, images=()):
    """Initialise ``model`` from released weights, also across latent channel counts, ``detail`` and ``analysis_extra``.

    Every weight of the transforms is copied where the shapes agree, and the
    hyperprior too when both have one of the same shape.  Detail blocks the released
    model lacks keep their identity initialisation (they are the last weights).
    The two layers that touch the latent (the encoder's projection and the
    decoder's first convolution) get the overlapping channels: released models
    order channels by importance, so a smaller model keeps the most important
    ones, and a larger one starts as the released model plus new channels that
    the decoder ignores (zero weights) and the encoder leaves at 0 (random
    weights gave them ~1.5 bpp of noise to code, which training then spent
    hundreds of steps removing).

    With ``images`` (and the ``codebook``), new channels that carry no
    information on them are then re-initialised by ``revive_unused_channels``:
    a latent that always rounds to 0 gets no gradient from the distortion and
    would stay dead.  Channels the released model switched off are left off:
    given fresh weights, they were switched off again within 1,500 steps when
    fine-tuning the high model (see issue 5's notes).
    """
    from export.model import L3icModel
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    if (cfg["width"], cfg["blocks"]) != (model.config["width"], model.config["blocks"]):
        raise SystemExit("error: --init needs the same --width/--blocks as %s (%s, %s)" % (folder, cfg["width"], cfg["blocks"]))
    if cfg.get("detail", 0) > model.config["detail"]:
        raise SystemExit("error: --init from %s needs --detail %d or more" % (folder, cfg["detail"]))
    source = L3icModel.from_config_dict(cfg).build_for()
    source.load_weights(os.path.join(folder, "model.weights.h5"))
    if cfg.get("analysis_extra", 0) > model.config["analysis_extra"]:
        raise SystemExit("error: --init from %s needs --analysis-extra %d or more" % (folder, cfg["analysis_extra"]))
    n = min(cfg["channels"], model.config["channels"])
    transforms = lambda m: list(zip(m.analysis.weights, source.analysis.weights)) + list(zip(m.synthesis.weights,
                                                                                           source.synthesis.weights))
    for dst, src in _hyperprior_pairs(model, source) + _gain_pairs(model, source):  # carried over when of the same
        dst.assign(src.numpy())  # shape, else they start fresh
    for dst, src in transforms(model):
        value = np.asarray(src.numpy())
        if tuple(dst.shape) == value.shape:
            dst.assign(value)
        elif "analysis" in dst.path.split("/"):
            new = np.zeros(tuple(dst.shape), np.float32)  # new channels start silent: revive_unused_channels gives
            new[..., :n] = value[..., :n]  # them weights on a cheap scale (projection kernel (3, 3, width, C), bias (C,))
            dst.assign(new)
        else:
            new = np.zeros(tuple(dst.shape), np.float32)
            new[:, :, :n, :] = value[:, :, :n, :]  # decoder's first kernel (3, 3, C, width)
            dst.assign(new)
    if len(images) and model.config["channels"] > n:
        return revive_unused_channels(model, codebook, images, first=n)
    return []


def _hyperprior_pairs(model, source):
    """(target, source) weights of the hyperprior when both models have one of the same shape (a format-3 release
    warm-starting joint training), else none."""
    same = model.has_hyperprior and source.has_hyperprior and all(
        model.config[k] == source.config[k] for k in ("channels", "z_channels", "hyper_width"))
    if not same:
        return []
    parts = lambda m: m.hyper_analysis.weights + m.hyper_synthesis.weights + m.z_prior.weights
    return list(zip(parts(model), parts(source)))


def _gain_pairs(model, source):
    """(target, source) weights of the gain units when both models have the same quality grid (an --encoder-only
    run of a released model with gains), or one renamed point by point: as many points, the preset at the same
    one (a grid whose points are renamed after the rate weights they were trained for); else none."""
    mine, theirs = model.config["qualities"], source.config["qualities"]
    if not (mine and theirs and len(mine) == len(theirs) and model.config["channels"] == source.config["channels"]
            and _preset_index(model.config) == _preset_index(source.config)):
        return []
    if mine != theirs:
        print("gains carried over point by point: q %s are now q %s" % (theirs, mine))
    return list(zip(model.gain_units.weights, source.gain_units.weights))


def _preset_index(config):
    return config["qualities"].index(config["default_quality"]) if config["default_quality"] in config["qualities"] else None


def revive_unused_channels(model, codebook, images, first, seed=0):
    """Give latent channels ``first``.. with (almost) zero entropy on ``images`` fresh weights; returns their indices.

    The encoder's projection gets random weights half the scale of the live
    channels' (the new latent is mostly 0, +-1: cheap in bits), the decoder's
    first convolution random weights a tenth of the scale (the picture barely
    changes): both halves then get gradients and training decides whether the
    channel earns its bits.
    """
    import tensorflow as tf
    from export.quantizer import empirical_bits_per_symbol
    bits = np.zeros(model.config["channels"])
    for im in images:
        y = model.analysis(tf.constant(im[None], tf.float32) / 255.0)
        bits += empirical_bits_per_symbol(codebook.to_symbols(y), codebook.size).numpy() / len(images)
    live = np.flatnonzero(bits >= 0.01)
    dead = first + np.flatnonzero(bits[first:] < 0.01)
    if len(dead) == 0 or len(live) == 0:
        return []
    rng = np.random.default_rng(seed)
    k, b = model.analysis.project.get_weights()
    k[..., dead] = rng.normal(0, 0.5 * k[..., live].std(), k[..., dead].shape)
    b[dead] = 0.0
    model.analysis.project.set_weights([k, b])
    k2, b2 = model.synthesis.expand.get_weights()
    k2[:, :, dead, :] = rng.normal(0, 0.1 * k2[:, :, live, :].std(), k2[:, :, dead, :].shape)
    model.synthesis.expand.set_weights([k2, b2])
    return [int(c) for c in dead]


def main(argv=None):
    args = parse_args(argv)
    require_export_extra("export.train", ("tensorflow", "keras"))
    config = resolve_config(args)
    os.makedirs(args.out, exist_ok=True)
    if args.threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    trainer = Trainer(config, args.out)
    config["precision_used"] = trainer.precision
    config["train_images"] = trainer.n_train
    config["parameters"] = trainer.model.parameter_counts()
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if args.resume:
        trainer.restore()
        print("resumed %s at step %d" % (args.out, trainer.step), flush=True)
    elif args.init:
        revived = warm_start(trainer.model, args.init, trainer.codebook, trainer.val_images)
        print("initialised from %s; re-initialised unused new channels %s" % (args.init, revived), flush=True)
    print("training %s: %d images, %s, %s parameters, precision %s"
          % (args.out, trainer.n_train, {k: config[k] for k in ("channels", "lambda", "steps", "batch", "crop")},
             config["parameters"], trainer.precision), flush=True)
    trainer.run(args.checkpoint_minutes, args.log_every)
    print("done: %s at step %d" % (args.out, trainer.step), flush=True)


if __name__ == "__main__":
    main()
