"""The transforms' ceiling: ``python -m export.ceiling FOLDER... --images DIR``.

Each photo is decoded from its encoder's latents *unrounded*, at the top of
the model's quality grid (``L3icModel.unrounded``): with no quantisation at
all, this is a PSNR that no quality of the model can pass.  Issue 26 measured
the released high model so (35.4 dB on Kodak, against 34.1 dB at ``-q 100``):
when a model's ceiling is below a target, finer quantisation cannot reach it,
and only better transforms can.  ``export.train`` logs the same measure on its
validation crops at every checkpoint (``val_ceiling_psnr``).

FOLDER is a released ``models/NAME/keras`` folder or a training run
(``runs/NAME``: its last checkpoint).  Measuring the evaluation set is
measuring, not tuning; choose between runs on held-out training photos
(``--holdout N`` of the training folder).
"""
import argparse
import math
import os

import numpy as np

from export import require_export_extra


PAD = 64  # the transforms take sides that are multiples of their strides: photos are padded (edge) to this


def ceiling_psnr(model, rgb):
    """PSNR (dB) of one uint8 (H, W, 3) photo decoded from its unrounded latents, rounded to 8 bits."""
    import tensorflow as tf
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, -h % PAD), (0, -w % PAD), (0, 0)), mode="edge")
    decoded = model.unrounded(tf.constant(padded[None], tf.float32) / 255.0).numpy()[0, :h, :w]
    mse = float(np.mean(np.square(np.round(decoded * 255.0) - rgb.astype(np.float64))))
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m export.ceiling", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="models/NAME/keras folders or runs/NAME")
    p.add_argument("--images", required=True, help="folder of photos")
    p.add_argument("--holdout", type=int, help="only the N photos export.train --holdout N keeps out of --images")
    p.add_argument("--every", type=int, default=1, help="only every N-th photo (default 1: all)")
    p.add_argument("--threads", type=int, default=1, help="TensorFlow threads (default 1: training keeps the rest)")
    args = p.parse_args(argv)
    require_export_extra("python -m export.ceiling")
    import tensorflow as tf
    from export import data
    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already running in this process (called from Python): keep its threads
        pass
    paths = data.image_paths(args.images)
    if args.holdout:
        paths = data.split_holdout(paths, args.holdout)[1]
    paths = paths[::args.every]
    from export.to_onnx import load_trained
    models = [load_trained(folder)[0] for folder in args.folders]
    print("| photo | %s |\n|---|%s" % (" | ".join(args.folders), "---|" * len(models)))
    rows = []
    for path in paths:
        rgb = data.load_rgb(path)
        rows.append([ceiling_psnr(m, rgb) for m in models])
        print("| %s | %s |" % (os.path.basename(path), " | ".join("%.2f" % v for v in rows[-1])), flush=True)
    print("| mean of %d | %s |" % (len(rows), " | ".join("%.2f" % v for v in np.mean(rows, axis=0))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
