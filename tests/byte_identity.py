"""Record what the encoder writes for a fixed set of generated images: ``python tests/byte_identity.py`` writes
tests/byte_identity.json (the sha256 and size of each file), which tests/test_byte_identity.py recomputes.

A refactoring of the encoder must leave every file byte-identical; a change that is meant to change files
(a new model, a better coder) reruns this script and commits the new JSON with the change.  The cases cover
what chooses bytes: sizes with and without a margin, a tiny image stored losslessly, tiles (the default grid
and a small one), gray and alpha, qualities that pick each model, refinement (whole and in blocks) and the
--target-bpp search.  Each is encoded as ``l3ic encode`` encodes it (``EncodeOptions`` -> ``encode_picture``).
"""
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from conftest import photo_like  # noqa: E402  (the tests' generated images)

JSON = os.path.join(HERE, "byte_identity.json")
SMALL_TILES = dict(whole_image=8, tile=8, refine_block=8)  # latent cells: several tiles and blocks on a small image
CASES = {  # name: (height, width, channels (1 gray, 3 RGB, 4 RGBA), seed, options, tiling)
    "medium-preset": (90, 120, 3, 1, {}, None),
    "q57.5": (61, 77, 3, 2, {"quality": 57.5}, None),
    "q20-low": (48, 64, 3, 3, {"quality": 20}, None),
    "q90-high": (70, 50, 3, 4, {"quality": 90}, None),
    "gray": (38, 45, 1, 5, {}, None),
    "rgba": (33, 40, 4, 6, {"quality": 70}, None),
    "tiny-lossless": (10, 12, 3, 7, {}, None),
    "small-margin": (14, 90, 3, 8, {}, None),
    "tiled-default": (40, 2072, 3, 9, {"quality": 50}, None),
    "tiled-small": (100, 150, 3, 10, {}, SMALL_TILES),
    "refine2": (72, 96, 3, 11, {"refine": 2}, None),
    "refine2-blocks": (90, 100, 3, 12, {"quality": 60, "refine": 2}, SMALL_TILES),
    "target-1bpp": (70, 90, 3, 13, {"target_bpp": 1.0}, None),
}


def image(height, width, channels, seed):
    """A generated image: photo_like RGB, its first plane (gray), or RGB plus a gradient alpha."""
    rgb = photo_like(height, width, seed)
    if channels == 1:
        return np.ascontiguousarray(rgb[:, :, 0])
    if channels == 4:
        alpha = np.linspace(0, 255, height * width).reshape(height, width, 1).astype(np.uint8)
        return np.concatenate([rgb, alpha], axis=2)
    return rgb


def encode(case):
    """The file ``l3ic encode`` writes for one case."""
    from l3ic.codec import CodecCache, encode_picture
    from l3ic.image import from_array
    from l3ic.options import EncodeOptions
    from l3ic.tiling import Tiling
    height, width, channels, seed, options, tiling = CASES[case]
    codec_for = CodecCache("cpu", tiling=Tiling(**tiling) if tiling else None)
    chosen = EncodeOptions.validated(**options)
    return encode_picture(from_array(image(height, width, channels, seed)), chosen, codec_for).data


def record(data):
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def main():
    recorded = {case: record(encode(case)) for case in CASES}
    with open(JSON, "w") as f:
        json.dump(recorded, f, indent=1, sort_keys=True)
        f.write("\n")
    for case, entry in recorded.items():
        print("%-16s %6d bytes %s" % (case, entry["bytes"], entry["sha256"][:16]))


if __name__ == "__main__":
    main()
