"""Encoder-side refinement: better latents for this one image, found by gradient descent.

The encoder network is an *amortised* guess: one fast pass, trained to do
well on average.  For a given image, better latents usually exist, and the
decoder can tell us which way they lie (Campos et al. 2019, "Content adaptive
optimization for neural image compression").  Refinement starts from the
encoder's float latents and takes a few Adam steps on the training objective
of ``export.train``::

    J = MSE (0..255 scale) + lambda * bits per pixel

- MSE and its gradient come from ``decoder_gradient.onnx``.  Rounding has no
  useful gradient, so each step decodes a *stochastic soft rounding* of the
  latents (Yang et al. 2020, "Improving inference for neural image
  compression", stochastic Gumbel annealing): every value sits between its
  two nearest integers with a random, differentiable weight that hardens to
  a plain rounding as the temperature falls.  On held-out training images
  this found 24 % fewer bits at equal PSNR in 30 steps, against 15 % for the
  straight-through rounding of training.
- bits per pixel, for a format-3 model, is the code length of each latent
  under the static table its element is coded with (the table and the base it
  is coded relative to come from the hyperprior, whose side information ẑ
  stays as the encoder chose it); between integers it is interpolated linearly, which
  gives its gradient.  For a format-2 model it is the entropy of each
  channel's histogram (what the FSE coder pays per channel, to first order),
  with the gradient of the soft histogram of ``export.quantizer``.

Refinement keeps the rate: the file of a refined image is as large as the
plain encode's, and better.  The rate weight lambda starts at the model's
(``refine`` in its manifest; for a model with gains, scaled to the quality's
``l3ic.quality.lambda_of``), and after every step it is raised or lowered
by the relative excess of the hard rounding's rate over the plain encode's
(a multiplicative dual ascent).  Every CHECK_EVERY steps the hard rounding
is entropy-coded as the file will code it, the rate it steers to is corrected
by the ratio of the plain file's size to this one's (the coder's adaptive
chunks need not follow the code length), and a rounding that fits is scored.  The symbols
returned are those of least squared error among the candidates coded in at
most the plain encode's bytes and at least (1 - SIZE_BAND) of them, or, if a
smaller candidate is better than all of those, that one; the encoder's own
symbols are the first candidate, so refinement never returns a worse image
or a larger file than plain encoding.  The random draws are
seeded, so the same image always gives the same file.  Only the encoder side
changes: files stay standard and decode with the same decoder, at the same
speed.  It costs about one decoder forward and backward pass per step
(``benchmarks.speed``).
"""
import numpy as np

from l3ic import fse, hyperprior
from l3ic.quality import QUALITY_SCALE, lambda_of

ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-7
TEMPERATURE = (0.3, 0.02)  # soft-rounding temperature, first and last step (geometric in between)
CHECK_EVERY = 5  # steps between entropy codings of the hard rounding (and scorings, when it fits)
RATE_CONTROL = 10.0  # lambda *= exp(RATE_CONTROL * relative rate excess) after every step
LAMBDA_RANGE = 10.0  # ... within 1/10 and 10 times its start
SIZE_BAND = 0.01  # a refined file is meant to be the plain one's size, to within 1 %
SEED = 0


def refine_symbols(model, rgb, iterations, gain=None, core=None):
    """What ``model.encode`` gives, refined, for a uint8 RGB image whose sides are multiples of the model's stride.

    Format 2: [symbols (uint8, C x h x w)].  Format 3: [latents, ẑ symbols],
    the latents the refined integers; with a ``l3ic.hyperprior.Gain``, those
    of the gained latent (as ``Codec`` codes them) and the decoder's input
    times the inverse gain.  ``core`` ((y, h), (x, w) in latent cells): the
    part of the image whose latents are kept (``Codec`` refines a large image
    in windows with a halo around each); the size is kept on it alone, since
    the halos overlap the neighbouring windows and are thrown away.
    """
    window = (slice(None),) + tuple(slice(a, a + n) for a, n in core) if core else (slice(None),) * 3
    lo, size = model.codebook_min, model.codebook_size
    lam = float(model.refine_parameters()["lambda"])
    if not model.has_hyperprior:
        y = model.latents(rgb).astype(np.float32)
        def coded(r):
            r = r[window]
            return len(fse.encode_channels(np.ascontiguousarray((r - lo).astype(np.uint8).reshape(r.shape[0], -1)),
                                           size, width=r.shape[2]).payload)
        best = _descend(model, rgb, y, 0.0, 1.0, lam, iterations, lambda r: soft_bits(r, lo, size),
                        lambda r: hard_bits(r[window], lo, size), coded)
        return [(best - lo).astype(np.uint8)]
    y, z = model.encode(rgb)
    em = model.entropy_model
    scale = 1.0
    if gain is not None:
        y, scale = y * gain.encoder[:, None, None], gain.inverse[:, None, None]
        lam *= lambda_of(gain.quality / QUALITY_SCALE) / lambda_of(em.default_quality / QUALITY_SCALE)
    base, index = em.tile_parameters(z, (0, 0) + y.shape[1:], gain)
    base, index = base.astype(np.float32), index.astype(np.int64)
    # r = ŷ - base must be a symbol value (lo..hi) and ŷ a codebook value, which is what the coder will code
    r_lo, r_hi = np.maximum(lo, lo - base), np.minimum(lo + size - 1, lo + size - 1 - base)
    residual = np.clip(y - base, r_lo, r_hi)
    kept_base, kept_index = base[window], index[window]
    base32, index8 = (np.ascontiguousarray(a) for a in (kept_base.astype(np.int32), kept_index.astype(np.uint8)))
    coded = lambda r: len(hyperprior.encode_tile(em, np.ascontiguousarray(kept_base + r[window]), base32, index8, lo,
                                                 size).payload)  # encode_tile's arrays made once
    best = _descend(model, rgb, residual, base, scale, lam, iterations, lambda r: table_bits(r, index, em.latent_bits, lo),
                    lambda r: table_bits(r[window], kept_index, em.latent_bits, lo)[0], coded, (r_lo, r_hi))
    return [base + best, z]


def _descend(model, rgb, start, offset, scale, lam, iterations, soft_rate, hard_rate, coded_size, bounds=None):
    """Adam on values r in ``bounds`` (default the codebook range; scalars or arrays); the decoder sees
    scale * (offset + r); returns the integer r of least squared error found in the size of rint(start).

    ``soft_rate(r)`` gives (bits, d bits / d r) for float r, ``hard_rate(r)``
    the bits of integer r, ``coded_size(r)`` its entropy-coded bytes.  ``lam``
    is where the rate weight starts.
    """
    learning_rate = float(model.refine_parameters()["learning_rate"])
    lo, hi = bounds or (model.codebook_min, model.codebook_min + model.codebook_size - 1)
    pixels_per_latent = model.stride ** 2
    samples = rgb.size  # pixels x 3 colour channels: the MSE denominator

    def squared_error(q):
        sse, gradient = model.squared_error_and_gradient(scale * (offset + q), rgb)
        return sse, gradient * scale

    r = start.astype(np.float32)
    plain = np.rint(r)
    budget, (plain_error, _) = coded_size(plain), squared_error(plain)
    rate_budget = hard_rate(plain)  # the code length the rate weight steers to, corrected by each coding
    best = {True: (plain_error, plain), False: (np.inf, None)}  # in the size band / smaller
    weight = lam
    adam, rng = _Adam(r.shape), np.random.default_rng(SEED)
    for step in range(iterations):
        fraction = step / max(1, iterations - 1)
        q, dq_dr = soft_round(r, TEMPERATURE[0] * (TEMPERATURE[1] / TEMPERATURE[0]) ** fraction, rng, lo, hi)
        _, distortion_gradient = squared_error(q)
        _, rate_gradient = soft_rate(r)
        gradient = distortion_gradient * dq_dr / samples + weight * rate_gradient / pixels_per_latent
        r = np.clip(r - adam.step(gradient, learning_rate * (1.0 - step / iterations)), lo, hi)
        candidate = np.rint(r)
        rate = hard_rate(candidate)
        excess = (rate - rate_budget) / max(rate_budget, 1e-9)
        weight = float(np.clip(weight * np.exp(RATE_CONTROL * excess), lam / LAMBDA_RANGE, lam * LAMBDA_RANGE))
        if (step + 1) % CHECK_EVERY == 0 or step + 1 == iterations:
            size = coded_size(candidate)
            rate_budget *= budget / max(size, 1)  # the coder's modes (adaptive chunks) need not follow the code length
            if size <= budget:
                error, _ = squared_error(candidate)
                band = size >= (1.0 - SIZE_BAND) * budget
                if error < best[band][0]:
                    best[band] = (error, candidate)
    return (best[False] if best[False][0] < best[True][0] else best[True])[1]


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


def soft_round(y, temperature, rng, lo, hi):
    """A random point between floor(y) and floor(y) + 1, and its derivative with respect to y.

    The weight of the upper integer is a logistic (two-Gumbel) relaxation of
    the choice between the two, with log-odds (atanh(r) - atanh(1 - r)) / T for
    r = y - floor(y): near 0 or 1 it picks the nearer integer, and as the
    temperature T falls it becomes plain rounding.
    """
    floor = np.floor(y)
    r = np.clip(y - floor, 1e-4, 1.0 - 1e-4)
    u = rng.uniform(1e-6, 1.0 - 1e-6, y.shape)
    log_odds = (np.arctanh(r) - np.arctanh(1.0 - r)) / temperature + np.log(u) - np.log1p(-u)
    weight = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -50.0, 50.0)))
    slope = weight * (1.0 - weight) * (1.0 / (1.0 - r * r) + 1.0 / (1.0 - (1.0 - r) ** 2)) / temperature
    return np.clip(floor + weight, lo, hi).astype(np.float32), slope.astype(np.float32)


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


class _Adam:
    """Adam (Kingma & Ba) on one array."""

    def __init__(self, shape):
        self.m = np.zeros(shape, np.float32)
        self.v = np.zeros(shape, np.float32)
        self.t = 0

    def step(self, gradient, learning_rate):
        b1, b2 = ADAM_BETAS
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * gradient
        self.v = b2 * self.v + (1 - b2) * gradient * gradient
        m_hat = self.m / (1 - b1 ** self.t)
        v_hat = self.v / (1 - b2 ** self.t)
        return learning_rate * m_hat / (np.sqrt(v_hat) + ADAM_EPSILON)
