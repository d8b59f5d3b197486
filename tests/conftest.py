"""Shared fixtures: the shipped default model, the bundled sample, small generated images."""
import os

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "samples", "rose.png")


@pytest.fixture(scope="session")
def codec():
    from l3ic import Codec
    return Codec("medium", "cpu")


@pytest.fixture(scope="session")
def sample():
    return np.asarray(Image.open(SAMPLE).convert("RGB"))


def photo_like(height, width, seed=0):
    """A smooth synthetic image with edges: gradients plus a few discs and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [a * yy / max(height, 1) + b * xx / max(width, 1) + c for a, b, c in rng.uniform([-80, -80, 60], [80, 80, 190], (3, 3))]
    image = np.stack(planes, axis=2)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2, max(3, min(height, width) / 3))
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
