"""Where ``-q`` should change models: ``python -m benchmarks.switch --images DIR [--holdout N]``.

``l3ic.quality.MODEL_RANGES`` gives each q to one model.  Two neighbouring
models overlap in the q their gains were trained for; q stands for a rate
weight lambda (``l3ic.quality.lambda_of``), and at a given lambda the better
model is the one of lower cost J = MSE + lambda * bpp (mean over the images):
switching there keeps the curve on the lower convex hull of both, in PSNR.
For each pair, both models encode every image at each q of the overlap (step
``--step``); the table gives their mean bpp, PSNR and MS-SSIM (dB) and both
costs, and the switch proposed is the lowest q from which the larger model's
cost stays the lower.  MS-SSIM need not agree: the table shows it.  Calibrate
on photos that are not the evaluation set: the training set's held-out images
(``--holdout``, as ``export.train`` splits them).
"""
import argparse

import numpy as np

from benchmarks.metrics import ms_ssim, ms_ssim_db, psnr
from l3ic.codec import Codec
from l3ic.image import list_images, load, split_holdout
from l3ic.quality import MODEL_RANGES, lambda_of

PAIRS = (("low", "medium"), ("medium", "high"))


def curve(codec, images, qualities):
    """Mean (bpp, PSNR, MS-SSIM dB, cost J) of ``codec`` at each q over ``images`` (uint8 RGB arrays)."""
    points = []
    for q in qualities:
        rows = []
        for rgb in images:
            data = codec.encode(rgb, quality=q)
            decoded = codec.decode(data)
            bpp = 8.0 * len(data) / (rgb.shape[0] * rgb.shape[1])
            mse = float(np.mean((rgb.astype(np.float64) - decoded) ** 2))
            ms = ms_ssim(rgb, decoded)  # None below 176 px: nan in the table
            rows.append((bpp, psnr(rgb, decoded), np.nan if ms is None else ms, mse + lambda_of(q) * bpp))
        bpp, p, ms, cost = np.mean(rows, axis=0)
        points.append((float(bpp), float(p), float(ms_ssim_db(ms)) if ms == ms else np.nan, float(cost)))
    return points


def overlap(small, large):
    """The q both models were trained for (their entropy models' quality grids)."""
    lo = max(small.quality_range[0], large.quality_range[0])
    hi = min(small.quality_range[1], large.quality_range[1])
    return lo, hi


def compare(small_name, large_name, images, step):
    small, large = Codec(small_name, "cpu"), Codec(large_name, "cpu")
    lo, hi = overlap(small, large)
    qualities = [float(q) for q in np.arange(np.ceil(lo / step) * step, hi + 1e-9, step)]
    ours, theirs = curve(small, images, qualities), curve(large, images, qualities)
    rows = list(zip(qualities, ours, theirs))
    switch = next((q for i, (q, _, _) in enumerate(rows) if all(t[3] <= s[3] for _, s, t in rows[i:])), None)
    return rows, switch


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.switch", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="folder of photos (not the evaluation set)")
    p.add_argument("--holdout", type=int, help="only the N images of --images that export.train --holdout N keeps out")
    p.add_argument("--step", type=float, default=2.5, help="q step over each overlap (default 2.5)")
    args = p.parse_args(argv)
    paths = list_images(args.images)
    if args.holdout:
        paths = split_holdout(paths, args.holdout)[1]
    images = [load(path).rgb() for path in paths]
    for small, large in PAIRS:
        rows, switch = compare(small, large, images, args.step)
        print("\n%s -> %s on %d images (now: %s from q %g)\n" % (small, large, len(images), large, MODEL_RANGES[large][0]))
        print("| q | %s bpp | PSNR | MS-SSIM dB | J | %s bpp | PSNR | MS-SSIM dB | J |" % (small, large))
        print("|---|---|---|---|---|---|---|---|---|")
        for q, s, t in rows:
            print("| %g | %.3f | %.2f | %.2f | %.1f | %.3f | %.2f | %.2f | %.1f |" % ((q,) + s + t))
        print("\nproposed switch: %s" % ("q %g" % switch if switch is not None else "none in the overlap"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
