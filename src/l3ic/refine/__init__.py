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
or a larger file than plain encoding.  The rate control leaves the last
candidates a few per cent above or below the size, so at the end more
candidates are made to land in the band: the final latents rounded with a
dead zone whose width is bisected (``_land_in_band``), and the best ones and the
last one over the size moved by one-step moves, twice (``_fit``): elements
step by one where that lowers squared error + weight * bits most, to second
order, with the weight bisected until the coded file fits.  The random draws are
seeded, so the same image always gives the same file.  Only the encoder side
changes: files stay standard and decode with the same decoder, at the same
speed.  It costs about one decoder forward and backward pass per step
(``benchmarks.speed``).
"""
import numpy as np

from l3ic import fse, hyperprior, progress
from l3ic.quality import QUALITY_SCALE, lambda_of

ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-7
TEMPERATURE = (0.3, 0.02)  # soft-rounding temperature, first and last step (geometric in between)
CHECK_EVERY = 5  # steps between entropy codings of the hard rounding (and scorings, when it fits)
RATE_CONTROL = 10.0  # lambda *= exp(RATE_CONTROL * relative rate excess) after every step
LAMBDA_RANGE = 10.0  # ... within 1/10 and 10 times its start
SIZE_BAND = 0.01  # a refined file is meant to be the plain one's size, to within 1 %
SEED = 0
FIT_ROUNDS = 12  # codings to move a candidate into the size band (_fit)
FIT_PASSES = 2  # _fit again from its result, with the gradient there
FIT_CURVATURE = 2.0  # _fit's second-order term, doubled: moves of neighbouring elements add up worse than alone
CURVATURE_SPACING = 10  # latent cells between the impulses that measure the decoder's response
CURVATURE_PASSES = 2  # decodes of impulses (each probes other channels at the same places)


def refine_symbols(model, rgb, iterations, gain=None, core=None, encoded=None):
    """What ``model.encode`` gives, refined, for a uint8 RGB image whose sides are multiples of the model's stride.

    Format 2: [symbols (uint8, C x h x w)].  Format 3: [latents, ẑ symbols],
    the latents the refined integers; with a ``l3ic.hyperprior.Gain``, those
    of the gained latent (as ``Codec`` codes them) and the decoder's input
    times the inverse gain.  ``core`` ((y, h), (x, w) in latent cells): the
    part of the image whose latents are kept (``Codec`` refines a large image
    in windows with a halo around each); the size is kept on it alone, since
    the halos overlap the neighbouring windows and are thrown away.
    ``encoded``: format 3's [latents, ẑ] of ``model.encode`` to start from, if
    not the network's on ``rgb`` (``Codec`` computes them on ẑ's grid).
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
    y, z = encoded or model.encode(rgb)
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
    kept = np.zeros(residual.shape, bool)
    kept[window] = True
    moves = lambda r: step_bits(r, index, kept, em.latent_bits, (r_lo, r_hi), lo)
    mode = (np.argmin(em.latent_bits, axis=1)[index] + lo).astype(np.float32)  # each element's cheapest residual
    rounding = lambda r, t: dead_zone_round(r, t, mode, (r_lo, r_hi))
    best = _descend(model, rgb, residual, base, scale, lam, iterations, lambda r: table_bits(r, index, em.latent_bits, lo),
                    lambda r: table_bits(r[window], kept_index, em.latent_bits, lo)[0], coded, (r_lo, r_hi),
                    moves, kept, rounding, coded(np.rint(y - base)))  # the plain file's size: its ŷ unclipped,
    # which codes a channel adaptively where the hyperprior's base is too far off for the static symbols
    return [base + best, z]


def _descend(model, rgb, start, offset, scale, lam, iterations, soft_rate, hard_rate, coded_size, bounds=None,
             step_bits=None, kept=None, rounding=None, budget=None):
    """Adam on values r in ``bounds`` (default the codebook range; scalars or arrays); the decoder sees
    scale * (offset + r); returns the integer r of least squared error found in the size of rint(start).

    ``soft_rate(r)`` gives (bits, d bits / d r) for float r, ``hard_rate(r)``
    the bits of integer r, ``coded_size(r)`` its entropy-coded bytes.  ``lam``
    is where the rate weight starts; ``budget``, the bytes to keep to (default
    those of rint(start)).  With ``step_bits`` (see ``step_bits``) and ``rounding`` (a
    ``dead_zone_round``), candidates are then made to land in the size band (``_land_in_band``, ``_fit``).
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
    budget, (plain_error, _) = budget or coded_size(plain), squared_error(plain)
    rate_budget = hard_rate(plain)  # the code length the rate weight steers to, corrected by each coding
    best = {True: (plain_error, plain), False: (np.inf, None)}  # in the size band / smaller
    over = None  # the last candidate coded in more than the budget

    def consider(candidate, size, error):
        band = size >= (1.0 - SIZE_BAND) * budget
        if error < best[band][0]:
            best[band] = (error, candidate)
    weight = lam
    adam, rng = _Adam(r.shape), np.random.default_rng(SEED)
    for step in range(iterations):
        progress.step("refining", step, iterations)
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
                consider(candidate, size, squared_error(candidate)[0])
            else:
                over = (candidate, size)
    if step_bits is not None:
        per_bit = samples / rgb.shape[0] / rgb.shape[1] * weight  # squared error per bit the rate weight stands for
        curvature = _curvature(lambda q: model.decode(scale * (offset + q)), plain, kept)[:, None, None]
        rounded = _land_in_band(lambda t: rounding(r, t), 0.0, budget, coded_size, -0.5, 0.5)  # dead zone t
        if rounded is not None:
            consider(*rounded, squared_error(rounded[0])[0])
        starts = [best[True][1], best[False][1], over and over[0]]
        for candidate in [c for c in starts if c is not None]:
            for _ in range(FIT_PASSES):
                fitted = _fit(candidate, squared_error, curvature, step_bits, per_bit, budget, coded_size)
                if fitted is None:
                    break
                consider(*fitted)
                candidate = fitted[0]
    return (best[False] if best[False][0] < best[True][0] else best[True])[1]


def _land_in_band(trial_at, start, budget, coded_size, low=None, high=None):
    """(integers, size): ``trial_at(x)`` for the x, bisected from ``start``, whose coded file lands in the size
    band (else the largest within the budget found), or None.  A larger x must give fewer bits; ``low`` and
    ``high`` bound x (None: unbounded, stepped by 1 until the band is bracketed)."""
    x, fits = start, None
    for _ in range(FIT_ROUNDS):
        trial = trial_at(x)
        size = coded_size(trial)
        if size <= budget and (fits is None or size > fits[1]):
            fits = (trial, size)
        if (1.0 - SIZE_BAND) * budget <= size <= budget:
            break
        low, high = (x, high) if size > budget else (low, x)
        x = high - 1.0 if low is None else low + 1.0 if high is None else (low + high) / 2
    return fits


def _fit(candidate, squared_error, curvature, step_bits, weight, budget, coded_size):
    """(r, size, squared error): integer residuals r moved by one step where that pays, so that the file lands in
    the size band (else as close below the budget as the rounds found), or None if no such move fits the budget.

    Each element may move by -1 or +1.  To second order a move delta of e
    changes the squared error by g_e * delta + h_c (g its gradient, h_c the
    decoder's response to a unit change in e's channel, ``_curvature``) and
    the bits by what ``step_bits`` says; an element takes the move that lowers
    squared error + weight * bits most, if any does.  The weight is bisected
    (in log) so that the coded file lands in the band.
    """
    _, gradient = squared_error(candidate)
    down, up = step_bits(candidate)
    cost_down, cost_up = FIT_CURVATURE * curvature - gradient, FIT_CURVATURE * curvature + gradient

    def moved(log_weight):
        j_down, j_up = cost_down + np.exp(log_weight) * down, cost_up + np.exp(log_weight) * up
        j, delta = np.minimum(j_down, j_up), np.where(j_up < j_down, 1.0, -1.0)
        channel = np.argmin(j, axis=0)[None]  # one move per position: moves in one place add up worse
        trial = candidate.copy()
        chosen = np.take_along_axis(j, channel, 0) < 0
        step = np.where(chosen, np.take_along_axis(delta, channel, 0), 0.0)
        np.put_along_axis(trial, channel, np.take_along_axis(candidate, channel, 0) + step, 0)
        return trial

    fits = _land_in_band(moved, np.log(weight), budget, coded_size)
    return None if fits is None else fits + (squared_error(fits[0])[0],)


def _curvature(decode, q, kept, spacing=CURVATURE_SPACING):
    """Per latent channel, the mean squared norm (0..255 scale) of the decoded image's change when one element
    of the channel changes by 1, measured on unit impulses ``spacing`` cells apart inside ``kept``.

    Each of CURVATURE_PASSES decodes probes a different channel at every impulse; the
    image is cut into spacing x spacing cells around the impulses, each holding
    one impulse's response (the decoder's reach is smaller).
    """
    channels, h, w = q.shape
    reference = 255.0 * decode(q)
    stride = reference.shape[0] // h
    rows, cols = np.nonzero(kept.any(axis=0))
    ys = np.arange(rows.min() + spacing // 2, rows.max() + 1, spacing)
    xs = np.arange(cols.min() + spacing // 2, cols.max() + 1, spacing)
    sums, counts = np.zeros(channels), np.zeros(channels)
    for n in range(CURVATURE_PASSES):
        probe, where = q.copy(), []
        for i, (y, x) in enumerate((y, x) for y in ys for x in xs):
            c = (i * CURVATURE_PASSES + n) % channels
            probe[c, y, x] += 1.0
            where.append((c, y, x))
        change = (255.0 * decode(probe) - reference) ** 2
        for c, y, x in where:
            y0, x0 = max(0, y - spacing // 2) * stride, max(0, x - spacing // 2) * stride
            sums[c] += change[y0:y0 + spacing * stride, x0:x0 + spacing * stride].sum()
            counts[c] += 1
    seen = counts > 0
    mean = np.where(seen, sums / np.maximum(counts, 1), 0.0)
    return np.where(seen, mean, np.median(mean[seen]) if seen.any() else 0.0).astype(np.float32)


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
