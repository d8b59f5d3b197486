"""What refinement's file size is measured with, per format: a ``HistogramRate`` or a ``TableRate`` for a window.

Both give, for values r of the window's latents: ``soft(r)``, the bits of
float r and their gradient (what the descent follows); ``hard(r)``, the bits
of integer r (what the rate weight steers by); ``coded_size(r)``, the bytes
the entropy coder really codes them in.  ``budget`` is the plain encode's
size (None: that of rint(start)) and ``bounds`` what r may take.  A
``TableRate`` also gives what the end of the search moves and rounds by
(``fine_tunes``: ``step_bits``, ``rounding``, ``kept``).
"""
import numpy as np

from l3ic import fse
from l3ic.entropy.conditional import tile_chunks


class HistogramRate:
    """Format 2: r are codebook values, coded with per-file tables; bits are each channel's histogram's entropy
    (what the FSE coder pays per channel, to first order).  ``window``: the slices of the kept latents."""

    fine_tunes = False
    budget = None

    def __init__(self, window, codebook_min, codebook_size):
        self.window, self.lo, self.size = window, codebook_min, codebook_size
        self.bounds = (codebook_min, codebook_min + codebook_size - 1)

    def soft(self, r):
        return soft_bits(r, self.lo, self.size)

    def hard(self, r):
        return hard_bits(r[self.window], self.lo, self.size)

    def coded_size(self, r):
        r = r[self.window]
        return len(fse.encode_channels(np.ascontiguousarray((r - self.lo).astype(np.uint8).reshape(r.shape[0], -1)),
                                       self.size, width=r.shape[2]).payload)


class TableRate:
    """Format 3: r = ŷ - origin are residuals, each element coded with the static table of its index; bits are
    their code lengths under those tables (``table_bits``), between integers interpolated linearly.

    ``y``: the window's gained latents, float32 (C, h, w); ``origin``, ``index``: the entropy model's
    parameters of its ẑ (``EntropyModel.tile_origins``: floor(mean), or the mean itself where ``shifted``);
    ``window``: the slices of the kept latents.  r must be a symbol and, unless ``shifted``, keep ŷ a
    codebook value (``bounds``); ``budget`` is the plain file's size, its ŷ unclipped (which codes a channel
    adaptively where the hyperprior's base is too far off for the static symbols).
    """

    fine_tunes = True

    def __init__(self, entropy_model, y, origin, index, window, codebook_min, codebook_size, shifted=False):
        lo, hi = codebook_min, codebook_min + codebook_size - 1
        self.em, self.index, self.window, self.lo, self.size = entropy_model, index, window, lo, codebook_size
        self.shifted = shifted
        self.bits = entropy_model.latent_bits
        self.bounds = ((np.full(origin.shape, lo, np.float32), np.full(origin.shape, hi, np.float32)) if shifted
                       else (np.maximum(lo, lo - origin), np.minimum(hi, hi - origin)))
        self.kept_index = index[window]
        # the arrays tile_chunks takes, made once
        self.kept_origin, self.index8 = (np.ascontiguousarray(a) for a in (origin[window].astype(np.float32), self.kept_index.astype(np.uint8)))
        self.kept = np.zeros(origin.shape, bool)
        self.kept[window] = True
        self.mode = (np.argmin(self.bits, axis=1)[index] + lo).astype(np.float32)  # each element's cheapest residual
        self.budget = self.coded_size(np.rint(y - origin))

    def soft(self, r):
        return table_bits(r, self.index, self.bits, self.lo)

    def hard(self, r):
        return table_bits(r[self.window], self.kept_index, self.bits, self.lo)[0]

    def coded_size(self, r):
        return len(tile_chunks(self.em, np.ascontiguousarray(self.kept_origin + r[self.window]), self.kept_origin,
                               self.index8, self.lo, self.size, self.shifted).payload)

    def step_bits(self, r):
        return step_bits(r, self.index, self.kept, self.bits, self.bounds, self.lo)

    def rounding(self, r, t):
        return dead_zone_round(r, t, self.mode, self.bounds)


def dead_zone_round(r, t, mode, bounds):
    """r rounded to integers within ``bounds``, each towards its ``mode`` when r is within 1/2 + t of an
    integer nearer the mode (t > 0: fewer bits, t < 0: more; t = 0 is plain rounding, but for ties)."""
    offset = r - mode
    return np.clip(mode + np.sign(offset) * np.maximum(0.0, np.floor(np.abs(offset) + 0.5 - t)), *bounds).astype(np.float32)


def step_bits(r, index, kept, bits, bounds, lo):
    """For integer residuals r: the change of each element's code length (``bits`` as in ``table_bits``) if it
    moves by -1 and by +1, infinite where it may not (outside ``kept`` or ``bounds``)."""
    now = (r - lo).astype(np.int64)
    width = bits.shape[-1]
    change = []
    for step in (-1, 1):
        allowed = kept & (r + step >= bounds[0]) & (r + step <= bounds[1])
        moved = np.clip(now + step, 0, width - 1)
        change.append(np.where(allowed, bits[index, moved] - bits[index, now], np.inf))
    return change


def table_bits(r, index, bits, lo):
    """Code length per latent position of residuals r (C, h, w), element e coded with table index[e] of
    ``bits`` (K, L), and its gradient (the same measure as ``hard_bits``: bits of all channels per position).

    Between two integers the length is interpolated linearly, so its gradient
    is the difference of the two neighbours' lengths.
    """
    positions = r.shape[1] * r.shape[2]
    size = bits.shape[-1]
    left = np.clip(np.floor(r), lo, lo + size - 2).astype(np.int64) - lo
    frac = (r - (left + lo)).astype(np.float64)
    below, above = bits[index, left], bits[index, left + 1]
    return float(np.sum(below + frac * (above - below))) / positions, ((above - below) / positions).astype(np.float32)


def hard_bits(q, lo, size):
    """Sum over channels of the entropy (bits per symbol) of each channel's histogram of integer values."""
    channels = q.shape[0]
    index = (q.reshape(channels, -1) - lo).astype(np.int64) + size * np.arange(channels)[:, None]
    counts = np.bincount(index.ravel(), minlength=channels * size).reshape(channels, size)
    p = counts / counts.sum(axis=1, keepdims=True)
    return float(-(p * np.log2(np.where(p > 0, p, 1.0))).sum())


def soft_bits(y, lo, size):
    """The same sum for the soft histogram of float latents, and its gradient with respect to ``y``.

    Each value spreads its unit mass over the two nearest codebook entries
    (triangular kernel), as ``export.quantizer.Codebook.soft_histogram``.
    Moving a value from entry k towards k+1 changes the entropy by
    -(log2 p[k+1] - log2 p[k]) / n per unit, which is the gradient.
    """
    channels = y.shape[0]
    flat = y.reshape(channels, -1)
    n = flat.shape[1]
    left = np.minimum(np.floor(flat), lo + size - 2)
    frac = flat - left
    index = (left - lo).astype(np.int64) + size * np.arange(channels)[:, None]
    counts = (np.bincount(index.ravel(), (1.0 - frac).ravel(), channels * size)
              + np.bincount(index.ravel() + 1, frac.ravel(), channels * size))
    p = counts / n
    log_p = np.log2(np.maximum(p, 1e-12))
    bits = float(-(p * log_p).sum())
    gradient = -(log_p[index + 1] - log_p[index]) / n
    return bits, gradient.reshape(y.shape).astype(np.float32)
