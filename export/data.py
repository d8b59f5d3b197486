"""Training data: any folder of photos (PNG, JPEG, any of ``l3ic.image.IMAGE_SUFFIXES``), served as random crops.

All images are decoded once into memory (the bundled training set is ~100 MB
of PNG), then every batch is a set of random crops with random horizontal
flips, drawn from a numpy ``Generator`` whose state is saved with each
checkpoint so that ``--resume`` continues with exactly the same stream.
"""
import os

import numpy as np
from PIL import Image

from l3ic import image as images
from l3ic.errors import ImageError
from l3ic.image import IMAGE_SUFFIXES  # noqa: F401  (the runtime's one list: training reads what l3ic encode reads)
from l3ic.image import flat_fraction, split_holdout, split_smooth  # noqa: F401  (the benchmarks hold out the same)


def image_paths(folder):
    """Sorted image paths of a folder (not recursive; ``l3ic.image.list_images``); a one-line exit if there are none."""
    try:
        return images.list_images(folder, required=True)
    except ImageError as e:
        raise SystemExit("error: %s" % e)


def load_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class CropSampler:
    """Random ``crop`` x ``crop`` patches with horizontal flips from in-memory images.

    With ``smooth_fraction`` > 0, that share of the crops comes from images
    drawn in proportion to their ``flat_fraction`` squared: most photos are
    textured, and a codec trained only on them decodes smooth gradients badly.
    """

    def __init__(self, paths, crop, seed, smooth_fraction=0.0):
        self.images = [load_rgb(p) for p in paths]
        self.images = [im for im in self.images if min(im.shape[:2]) >= crop]
        if not self.images:
            raise SystemExit("error: no training image is at least %d px on each side" % crop)
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.smooth_fraction = smooth_fraction
        if smooth_fraction > 0:
            weights = np.array([flat_fraction(im) for im in self.images]) ** 2
            self.smooth_weights = weights / weights.sum()

    def _pick(self):
        if self.smooth_fraction > 0 and self.rng.random() < self.smooth_fraction:
            return self.images[self.rng.choice(len(self.images), p=self.smooth_weights)]
        return self.images[self.rng.integers(len(self.images))]

    def batch(self, size):
        out = np.empty((size, self.crop, self.crop, 3), np.uint8)
        for i in range(size):
            im = self._pick()
            y = self.rng.integers(im.shape[0] - self.crop + 1)
            x = self.rng.integers(im.shape[1] - self.crop + 1)
            patch = im[y:y + self.crop, x:x + self.crop]
            out[i] = patch[:, ::-1] if self.rng.random() < 0.5 else patch
        return out

    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state


def center_crops(paths, size):
    """Deterministic validation inputs: the central ``size`` square of each image (or all of a smaller one, cut to a multiple of 8)."""
    crops = []
    for p in paths:
        im = load_rgb(p)
        h, w = (min(size, d) // 8 * 8 for d in im.shape[:2])
        y, x = (im.shape[0] - h) // 2, (im.shape[1] - w) // 2
        crops.append(im[y:y + h, x:x + w])
    return crops
