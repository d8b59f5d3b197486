"""Fit a model's gains on what its files code: ``python -m export.fit_gains models/NAME --out runs/fit-NAME``.

``export.train --gains-only`` learns the gains (``export.gain``) by gradient
descent, through a straight-through rounding of their integer exponents and a
noisy rate proxy; its grid points land a few per cent off the trade-off they
stand for, and move by as much from one checkpoint to the next.  On a
model's frozen transforms, though, the problem is small and discrete: one
integer exponent per channel and grid point.  So this searches it directly,
on the installed model as the runtime runs it:

* random crops of training photos (the held-out ones left out), through the
  ONNX encoder once;
* the rate: the bytes the static tables code each channel in
  (``l3ic.entropy.conditional.tile_chunks``, exactly a file's chunks), which depend on
  that channel's exponent only, so they are computed once per exponent;
* the distortion D: the MSE on 0..255 of the ONNX decoder's uint8 pixels, or
  with ``--ms-ssim-share w`` (1 - w) MSE + w MS_SSIM_MSE (1 - MS-SSIM);
* J = D + lambda_of(q) * bpp, with D = MSE the loss training minimises at quality q.

Channel by channel, an exponent steps up or down while J falls (``--sweeps``
passes over the channels, one by default: a second one moved few).  The
inverse gains' corrections stay as trained (interpolated at grid points that
are new); the grid point of the model's preset stays the identity, so the
preset keeps coding as before (unless ``--fit-preset``), and ``--keep`` grid
points stay as trained.

The cost is measured on crops, so it is noisy: with 32 crops, two random
sets of them gave fits a percent of BD-rate apart on held-out photos, hence
64 by default.  Each cost is one decode of every crop: 1-7 minutes per grid
point on one core (the low model's 16 channels to the high model's 64).

The result is a run folder that exports like any training run, keeping the
model's ONNX graphs (``export.to_onnx``): ``fit.json`` (the fitted gains and
J before and after per grid point; a rerun resumes from it), ``config.json``
and ``checkpoint/`` (the released weights with the new gain units).
"""
import argparse
import json
import os
import shutil
import time

import numpy as np

from export import data
from export.to_onnx import LATENT_COUNTS, write_json

CROP = 256  # px: a whole number of ẑ cells, as training crops are
MS_SSIM_MSE = 1750.0  # MSE (0..255) that costs as many bits as 1 - MS-SSIM along the models' curves (the medium model
# between q 45 and 55 on held-out photos: +7.2 MSE and +0.0041 (1 - MS-SSIM) for the same bits), so that a share of
# MS-SSIM in the distortion keeps lambda_of(q)'s rate


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m export.fit_gains", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="installed model folder with gains (models/NAME)")
    p.add_argument("--data", default="../shared/datasets/train", help="training photos (never evaluation images)")
    p.add_argument("--qualities", required=True, help="comma-separated quality grid of the result, inside the model's "
                                                       "range and holding its preset")
    p.add_argument("--fit-preset", action="store_true", help="search the preset's gains too, for a model that replaces "
                   "the release (by default they stay the identity, so the preset codes as before)")
    p.add_argument("--keep", default="", help="comma-separated grid points of the model kept as trained (not searched)")
    p.add_argument("--crops", type=int, default=64, help="random %d px crops, one per photo" % CROP)
    p.add_argument("--holdout", type=int, default=8, help="photos left out, as export.train --holdout")
    p.add_argument("--ms-ssim-share", type=float, default=0.0,
                   help="weight w of MS-SSIM in the distortion: (1 - w) MSE + w %g (1 - MS-SSIM)" % MS_SSIM_MSE)
    p.add_argument("--sweeps", type=int, default=1, help="at most this many passes over the channels per grid point")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--out", required=True, help="run folder to write (runs/fit-NAME)")
    return p.parse_args(argv)


def training_crops(folder, count, holdout, seed):
    """``count`` random CROP x CROP uint8 crops of distinct photos of ``folder`` outside its held-out split."""
    paths = data.split_holdout(data.image_paths(folder), holdout)[0]
    rng = np.random.default_rng(seed)
    crops = []
    for i in rng.permutation(len(paths)):
        rgb = data.load_rgb(paths[i])
        if min(rgb.shape[:2]) < CROP:
            continue
        y, x = (int(rng.integers(0, side - CROP + 1)) for side in rgb.shape[:2])
        crops.append(np.ascontiguousarray(rgb[y:y + CROP, x:x + CROP]))
        if len(crops) == count:
            return crops
    raise SystemExit("error: %s has only %d photos of at least %d px outside the held-out ones" % (folder, len(crops), CROP))


class GainSearch:
    """The cost J of a grid point's gains on fixed crops, and the coordinate search that lowers it."""

    def __init__(self, model, crops, ms_ssim_share=0.0):
        self.model, self.em, self.crops, self.share = model, model.entropy_model, crops, ms_ssim_share
        self.encoded = [model.run_encoder(c) for c in crops]
        self.pixels = len(crops) * CROP * CROP
        self._bits = {}

    def _origins(self, gain, latents, z):
        """What the crop's latents are coded about with ``gain``, and their tables, as a file codes them (about
        the hyperprior's mean, ``container.FLAG_MEAN_SHIFT``): a channel's depend on its own gain only."""
        return self.em.tile_origins(z, (0, 0) + latents.shape[1:], gain, shifted=True)

    def channel_bits(self, exponent):
        """Coded bits of every channel over all crops with this exponent (C,): a channel's bits depend on its own only."""
        from l3ic.entropy.conditional import tile_chunks
        if exponent not in self._bits:
            m = self.model
            gain = self.em.gains.gain_with(np.full(m.channels, exponent), np.ones(m.channels))
            bits = np.zeros(m.channels)
            for latents, z in self.encoded:
                origin, index = self._origins(gain, latents, z)
                coded = tile_chunks(self.em, gain.apply(latents), origin, index, m.codebook_min, m.codebook_size,
                                    shifted=True)
                bits += 8.0 * coded.sizes
            self._bits[exponent] = bits
        return self._bits[exponent]

    def bpp(self, exponents):
        return sum(self.channel_bits(int(e))[c] for c, e in enumerate(exponents)) / self.pixels

    def distortion(self, exponents, corrections):
        """(1 - w) MSE + w MS_SSIM_MSE (1 - MS-SSIM) of the decoded uint8 crops (MSE on 0..255; means over the crops)."""
        from l3ic.analysis import rounded_about
        from l3ic.image import to_uint8
        from l3ic.metrics import ms_ssim
        gain = self.em.gains.gain_with(exponents, corrections)
        lo, size = self.model.codebook_min, self.model.codebook_size
        sse, dissimilarity = 0.0, 0.0
        for (latents, z), crop in zip(self.encoded, self.crops):
            coded = rounded_about(gain.apply(latents), self._origins(gain, latents, z)[0], lo, size, shifted=True)[0]
            out = to_uint8(self.model.run_decoder(gain.invert(coded))).astype(np.float32)
            sse += float(np.sum((out - crop) ** 2))
            if self.share:
                dissimilarity += (1.0 - ms_ssim(crop, out.astype(np.uint8))) / len(self.crops)
        mse = sse / (3 * self.pixels)
        return (1.0 - self.share) * mse + self.share * MS_SSIM_MSE * dissimilarity, mse

    def cost(self, exponents, corrections, lam):
        """(J, MSE, bpp)."""
        distortion, mse = self.distortion(exponents, corrections)
        bpp = self.bpp(exponents)
        return distortion + lam * bpp, mse, bpp

    def fit(self, exponents, corrections, lam, sweeps):
        """Coordinate search from ``exponents``: per channel, steps of +1 (else -1) while J falls -> (exponents,
        J before, J after as (J, MSE, bpp), channel moves)."""
        exponents = np.array(exponents, np.int64)
        start = best = self.cost(exponents, corrections, lam)
        moves = 0
        for _ in range(sweeps):
            moved = 0
            for c in range(len(exponents)):
                for step in (1, -1):
                    stepped = False
                    while abs(exponents[c] + step) <= self.em.gains.max_exponent:
                        trial = exponents.copy()
                        trial[c] += step
                        result = self.cost(trial, corrections, lam)
                        if result[0] >= best[0]:
                            break
                        exponents, best, stepped = trial, result, True
                        moved += 1
                    if stepped:
                        break
            moves += moved
            if not moved:
                break
        return exponents, start, best, moves


def starting_gains(em, grid):
    """Per grid point (hundredths) the model's gains there: its trained ones, interpolated at new points."""
    lo, hi = em.qualities
    if not all(lo <= u <= hi for u in grid) or em.default_quality not in grid:
        raise SystemExit("error: the grid must lie inside the model's range %g..%g and hold its preset %g"
                         % (lo / 100, hi / 100, em.default_quality / 100))
    return {u: em.gains.interpolated(u) for u in grid}


def fit_grid(args):
    """Search every grid point not yet in ``fit.json``, saving it after each point; returns its content."""
    from l3ic.image import psnr_of_mse
    from l3ic.model import Model
    from l3ic.quality import QUALITY_SCALE, lambda_of
    model = Model(args.model, "cpu", threads=args.threads)
    em = model.entropy_model
    grid = sorted({round(float(q) * QUALITY_SCALE) for q in args.qualities.split(",")})
    kept = {round(float(q) * QUALITY_SCALE) for q in args.keep.split(",") if q.strip()}
    if not kept <= set(grid) & {int(u) for u in em.quality_grid}:
        raise SystemExit("error: --keep takes grid points that the model has and --qualities holds")
    path = os.path.join(args.out, "fit.json")
    done = {}
    if os.path.exists(path):
        with open(path) as f:
            done = json.load(f)
    points = done.get("points", {})
    starts = starting_gains(em, grid)
    search = None
    for u in grid:
        if str(u) in points:
            continue
        exponents, corrections = starts[u]
        record = {"quality": u / QUALITY_SCALE, "corrections": corrections.tolist()}
        if u == em.default_quality and not args.fit_preset:  # the preset: gain 1, as trained
            record.update(exponents=[0] * model.channels, corrections=[1.0] * model.channels)
        elif u in kept:
            record.update(exponents=exponents.tolist())
        else:
            search = search or GainSearch(model, training_crops(args.data, args.crops, args.holdout, args.seed), args.ms_ssim_share)
            t0 = time.time()
            lam = lambda_of(u / QUALITY_SCALE)
            fitted, before, after, moves = search.fit(exponents, corrections, lam, args.sweeps)
            record.update(exponents=fitted.tolist(), start=exponents.tolist(), lam=lam, moves=moves,
                          before=dict(zip(("J", "mse", "bpp"), before)), after=dict(zip(("J", "mse", "bpp"), after)),
                          seconds=round(time.time() - t0, 1))
            print("q %g: J %.3f -> %.3f (PSNR %.3f -> %.3f dB, %.4f -> %.4f bpp), %d moves, %.0f s"
                  % (u / QUALITY_SCALE, before[0], after[0], psnr_of_mse(before[1]), psnr_of_mse(after[1]), before[2], after[2],
                     moves, record["seconds"]), flush=True)
        points[str(u)] = record
        done = {"model": args.model, "data": args.data, "crops": args.crops, "holdout": args.holdout,
                "seed": args.seed, "sweeps": args.sweeps, "ms_ssim_share": args.ms_ssim_share, "crop": CROP,
                "fit_preset": args.fit_preset, "points": points}
        write_json(path, done)
    return done


def write_run(args, fitted):
    """``config.json`` and ``checkpoint/`` of the run: the model's released weights, and gain units on the fitted
    grid (a grid point the release has keeps its inverse-gain logarithms bit for bit)."""
    from export.model import L3icModel
    from export.to_onnx import load_trained
    from l3ic.quality import QUALITY_SCALE
    keras_folder = os.path.join(args.model, "keras")
    released, config, _ = load_trained(keras_folder)
    grid = sorted(fitted["points"], key=int)
    qualities = [int(u) / QUALITY_SCALE for u in grid]
    model = L3icModel.from_config_dict(dict(config, qualities=qualities)).build_for()
    for part in ("analysis", "synthesis", "hyper_analysis", "hyper_synthesis", "z_prior"):
        for dst, src in zip(getattr(model, part).weights, getattr(released, part).weights):
            dst.assign(src)
    old = {round(q * QUALITY_SCALE): i for i, q in enumerate(config["qualities"])}
    old_logs = released.gain_units.inverse_log.numpy()
    points = [fitted["points"][u] for u in grid]
    model.gain_units.exponent.assign(np.array([p["exponents"] for p in points], np.float32))
    model.gain_units.inverse_log.assign(np.stack([
        old_logs[old[int(u)]] if int(u) in old else np.log(np.array(p["corrections"], np.float64)).astype(np.float32)
        for u, p in zip(grid, points)]))
    checkpoint = os.path.join(args.out, "checkpoint")
    os.makedirs(checkpoint, exist_ok=True)
    model.save_weights(os.path.join(checkpoint, "model.weights.h5"))
    write_json(os.path.join(checkpoint, "state.json"), {"step": 0})
    run = {k: v for k, v in config.items() if k != "total_steps"}
    images = len(data.split_holdout(data.image_paths(args.data), args.holdout)[0])
    run.update(qualities=qualities, data=os.path.abspath(args.data), holdout=args.holdout, distortion="mse", train_images=images,
               init={"folder": keras_folder, "total_steps": config.get("total_steps")},
               gain_fit={k: fitted[k] for k in ("crops", "crop", "seed", "holdout", "sweeps", "ms_ssim_share")})
    if config.get("latent_tables"):  # fitted tables (export.fit_tables) go with the weights
        shutil.copyfile(os.path.join(keras_folder, LATENT_COUNTS), os.path.join(args.out, LATENT_COUNTS))
    write_json(os.path.join(args.out, "config.json"), run)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    fitted = fit_grid(args)
    write_run(args, fitted)
    print("wrote %s: export it with python -m export.to_onnx %s --out %s" % (args.out, args.out, args.model))


if __name__ == "__main__":
    main()
