"""Tiny images stored losslessly: the container's LOSSLESS record, for where the network cannot win.

A latent of a few cells is mostly border, and its fixed costs (a channel
index entry per channel, the ẑ chunk) outweigh the pixels: a 16 x 16 photo
took 400-600 bytes and decoded at 20-24 dB, where an optimised PNG of the same
pixels is 120-760 bytes.  So ``Codec.encode`` also codes an image of at most
``MAX_PIXELS`` losslessly, and keeps that file when it is no larger than the
lossy one, or when an image of at most ``SMALL_SIDE`` pixels a side would
otherwise decode below ``MIN_PSNR``.

The record (docs/FORMAT.md, "Lossless files") is one filter byte and the
filtered samples, row-major, (H, W, C) with C = 3 (RGB) or 1 (L); the
container stores it zstd-compressed when that is smaller.  The filters are
chosen per image for the smallest file, and each is undone with cumulative
sums, so decoding is a few numpy operations:

* 0, NONE: the samples;
* 1, LEFT: each sample minus its left neighbour (mod 256), as PNG's Sub;
* 2, GRADIENT: minus left and upper neighbours plus the upper-left one.
"""
import numpy as np

from l3ic.errors import FormatError

MAX_PIXELS = 64 * 64  # larger images always code smaller through the network
SMALL_SIDE = 16  # images up to this size on both sides must decode at MIN_PSNR or better
MIN_PSNR = 30.0
NONE, LEFT, GRADIENT = 0, 1, 2
FILTERS = (NONE, LEFT, GRADIENT)


def records(pixels):
    """The candidate LOSSLESS records of ``pixels`` ((H, W, 3) or (H, W) uint8), one per filter."""
    x = _planes(pixels).astype(np.int16)
    left = np.diff(x, axis=1, prepend=0)
    gradient = np.diff(left, axis=0, prepend=0)
    return [bytes([f]) + (v % 256).astype(np.uint8).tobytes() for f, v in ((NONE, x), (LEFT, left), (GRADIENT, gradient))]


def unpack(record, height, width, mode):
    """The pixels of a LOSSLESS record: (H, W, 3) for RGB, (H, W) for L; FormatError when it is malformed."""
    channels = 1 if mode == "L" else 3
    if len(record) != 1 + height * width * channels:
        raise FormatError("corrupt l3ic file: the lossless record has %d bytes, expected %d"
                          % (len(record), 1 + height * width * channels))
    kind = record[0]
    if kind not in FILTERS:
        raise FormatError("corrupt l3ic file: unknown lossless filter %d" % kind)
    v = np.frombuffer(record, np.uint8, offset=1).reshape(height, width, channels).astype(np.int64)
    if kind == GRADIENT:
        v = np.cumsum(v, axis=0)
    if kind in (LEFT, GRADIENT):
        v = np.cumsum(v, axis=1)
    v = (v % 256).astype(np.uint8)
    return v[:, :, 0] if mode == "L" else v


def _planes(pixels):
    return pixels[:, :, None] if pixels.ndim == 2 else pixels
