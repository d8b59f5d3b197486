"""The ``--target-bpp`` search: the largest file within a size, found on the ``-q`` scale users type.

``encode_to_target`` encodes at a quality q, measures, and moves q, as
``cwebp -size`` does.  Each q is encoded as ``-q`` encodes it, with the model
``l3ic.quality.model_for`` gives it, so the q a file records reproduces it.  A
model's encoder network runs once (``Codec.analyse``): only the quantisation
and the entropy coding depend on q.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from l3ic.options import EncodeOptions
from l3ic.quality import Q_UNITS, model_for

TARGET_TOLERANCE = 0.01  # the quality search stops at a file within 1 % below the target


@dataclass(frozen=True)
class Encoded:
    """An encode's result: the file, the model and quality (q 0..100; None for a model without continuous
    quality) it was made with, and a one-line note for the user (or None)."""

    data: bytes
    model: str
    quality: Optional[float]
    note: Optional[str] = None


def encode_to_target(picture, target_bpp, codec_for, refine=0):
    """The largest file within ``target_bpp`` on the ``-q`` scale users type, as ``Encoded``: the q it records
    reproduces the file with ``-q``.

    Like ``cwebp -size``, but by search on q (``l3ic.quality``): each q is
    encoded as ``-q`` encodes it, with the model ``model_for`` gives it.  File
    size grows with q, so a bracketed search (log size interpolated linearly
    in q, alternating with bisection steps) finds the largest q whose file
    fits, stopping within TARGET_TOLERANCE.  A model's encoder network runs
    once: only the entropy coding depends on q.  A target below the smallest
    file (q 0) or above the largest (q 100) gives that file and a note.  With
    ``refine``, the chosen q is then refined, which keeps the size.
    """
    options = EncodeOptions.validated(target_bpp=target_bpp, refine=refine)
    pixels = picture.width * picture.height
    budget = options.target_bpp * pixels / 8.0
    file_at = files_by_quality(picture, codec_for)
    lo, hi = 0, 100 * Q_UNITS
    units, data, note = lo, file_at(lo), None
    if len(data) > budget:
        note = "no quality reaches %.3f bpp: the smallest file (q 0) is %.3f bpp" % (options.target_bpp, 8.0 * len(data) / pixels)
    else:
        units, data = _largest_within(file_at, lo, hi, data, budget)
        if units == hi and len(data) < (1.0 - TARGET_TOLERANCE) * budget:
            note = "no quality needs %.3f bpp: the largest file (q 100) is %.3f bpp" % (options.target_bpp, 8.0 * len(data) / pixels)
    name = model_for(units)
    codec = codec_for(name)
    if options.refine:  # never larger than the plain file: within the budget
        final = codec.encode(picture, refine=options.refine, quality=units / Q_UNITS)
    else:
        final = codec.lossless_or(picture, data)
    if len(final) > budget >= len(data):  # a tiny image stored losslessly over the budget: the lossy file fits
        final = data
    return Encoded(final, name, units / Q_UNITS, note)


def files_by_quality(picture, codec_for):
    """A function q (``Q_UNITS`` of the -q scale) -> the file of ``picture`` at q, with the model ``-q`` takes for
    it; each model's encoder network runs on its first call only."""
    analysed = {}

    def file_at(units):
        name = model_for(units)
        codec = codec_for(name)
        header = codec.header_for(picture, units / Q_UNITS)
        if name not in analysed:
            analysed[name] = codec.analyse(picture.rgb(), header)
        return codec.write(picture, header, codec.quantise(analysed[name], header))

    return file_at


def _largest_within(file_at, lo, hi, bottom, budget):
    """(q, file) of the largest q in lo..hi whose file is at most ``budget`` bytes, given ``bottom`` = file_at(lo)
    fits: stops early at a file within TARGET_TOLERANCE of the budget."""
    top = file_at(hi)
    if len(top) <= budget:
        return hi, top
    best, sizes, bisect = (lo, bottom), {lo: len(bottom), hi: len(top)}, False
    while hi - lo > 1 and sizes[lo] < (1.0 - TARGET_TOLERANCE) * budget:
        if bisect:
            q = (lo + hi) // 2
        else:
            t = (np.log(budget) - np.log(sizes[lo])) / (np.log(sizes[hi]) - np.log(sizes[lo]))
            q = int(round(lo + t * (hi - lo)))
        q, bisect = min(max(q, lo + 1), hi - 1), not bisect
        data = file_at(q)
        sizes[q] = len(data)
        if len(data) <= budget:
            lo, best = q, (q, data)
        else:
            hi = q
    return best
