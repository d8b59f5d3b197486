"""The photos the calibration benchmarks measure: those ``export.train`` keeps out of training, scaled down."""
import os

import numpy as np
from PIL import Image

from l3ic.errors import ImageError
from l3ic.image import list_images, split_holdout, split_smooth


def held_out(folder, holdout, holdout_smooth, max_side, detailed=True):
    """(name, uint8 RGB) of the photos of ``folder`` that ``export.train --holdout H --holdout-smooth N`` keeps
    out (with ``detailed=False``, the smooth ones only), scaled to at most ``max_side`` pixels on their longer
    side; a one-line exit when the folder holds no images."""
    try:
        rest, hashed = split_holdout(list_images(folder, required=True), holdout)
    except ImageError as e:
        raise SystemExit("error: %s" % e)
    return [(os.path.basename(path), scaled(path, max_side))
            for path in (hashed if detailed else []) + split_smooth(rest, holdout_smooth)[1]]


def scaled(path, max_side):
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = min(1.0, max_side / max(im.size))
        if scale < 1:
            im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.LANCZOS)
        return np.asarray(im)
