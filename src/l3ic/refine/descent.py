"""Refinement's search for one window: Adam on soft-rounded latents, then candidates made to land in the size band.

``descend`` takes a ``Distortion`` (what the decoder makes of values r) and
a rate (``l3ic.refine.rate``: what they cost) and returns the integer r of
least squared error it found within the budget (see ``l3ic.refine``).
"""
import numpy as np

from l3ic import progress

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


class Distortion:
    """The squared error (0..255 scale) of values r, which the decoder sees as ``offset + r`` times the inverse
    ``gain`` (a ``l3ic.hyperprior.Gain``, or None), against the window's uint8 RGB ``rgb``."""

    def __init__(self, model, rgb, offset=0.0, gain=None):
        self.model, self.rgb, self.offset, self.gain = model, rgb, offset, gain
        self.samples = rgb.size  # pixels x 3 colour channels: the MSE denominator

    def decoder_input(self, q):
        x = self.offset + q
        return x if self.gain is None else self.gain.invert(x)

    def squared_error(self, q):
        """(squared error, its gradient with respect to q)."""
        sse, gradient = self.model.squared_error_and_gradient(self.decoder_input(q), self.rgb)
        return sse, gradient if self.gain is None else self.gain.invert(gradient)

    def decode(self, q):
        return self.model.run_decoder(self.decoder_input(q))


class Candidates:
    """The integer candidates of least squared error coded within ``budget`` bytes: in the size band (at least
    1 - SIZE_BAND of it), and smaller; the start's rounding ``plain`` is the first."""

    def __init__(self, budget, plain, plain_error):
        self.budget = budget
        self.best = {True: (plain_error, plain), False: (np.inf, None)}  # in the size band / smaller

    def consider(self, candidate, size, error):
        band = size >= (1.0 - SIZE_BAND) * self.budget
        if error < self.best[band][0]:
            self.best[band] = (error, candidate)

    def chosen(self):
        """The smaller candidate if it is better than the best in the band, else that one."""
        return (self.best[False] if self.best[False][0] < self.best[True][0] else self.best[True])[1]


def descend(distortion, rate, start, lam, iterations):
    """Adam on values r within ``rate.bounds`` from ``start``; returns the integer r of least squared error found
    within ``rate.budget`` bytes (default those of rint(start)).

    ``lam`` is where the rate weight starts.  With a rate that ``fine_tunes``,
    candidates are then made to land in the size band (``_land_in_band``, ``_fit``).
    """
    r = start.astype(np.float32)
    plain = np.rint(r)
    budget, (plain_error, _) = rate.budget or rate.coded_size(plain), distortion.squared_error(plain)
    candidates = Candidates(budget, plain, plain_error)
    r, weight, over = _adam(distortion, rate, r, plain, lam, iterations, candidates)
    if rate.fine_tunes:
        _fine_tune(distortion, rate, r, plain, weight, over, candidates)
    return candidates.chosen()


def _adam(distortion, rate, r, plain, lam, iterations, candidates):
    """The Adam steps: (the last r, the last rate weight, the last candidate coded in more than the budget)."""
    model = distortion.model
    learning_rate = float(model.refine_parameters()["learning_rate"])
    pixels_per_latent = model.stride ** 2
    lo, hi = rate.bounds
    budget = candidates.budget
    rate_budget = rate.hard(plain)  # the code length the rate weight steers to, corrected by each coding
    over = None
    weight = lam
    adam, rng = _Adam(r.shape), np.random.default_rng(SEED)
    for step in range(iterations):
        progress.step("refining", step, iterations)
        fraction = step / max(1, iterations - 1)
        q, dq_dr = soft_round(r, TEMPERATURE[0] * (TEMPERATURE[1] / TEMPERATURE[0]) ** fraction, rng, lo, hi)
        _, distortion_gradient = distortion.squared_error(q)
        _, rate_gradient = rate.soft(r)
        gradient = distortion_gradient * dq_dr / distortion.samples + weight * rate_gradient / pixels_per_latent
        r = np.clip(r - adam.step(gradient, learning_rate * (1.0 - step / iterations)), lo, hi)
        candidate = np.rint(r)
        excess = (rate.hard(candidate) - rate_budget) / max(rate_budget, 1e-9)
        weight = float(np.clip(weight * np.exp(RATE_CONTROL * excess), lam / LAMBDA_RANGE, lam * LAMBDA_RANGE))
        if (step + 1) % CHECK_EVERY == 0 or step + 1 == iterations:
            size = rate.coded_size(candidate)
            rate_budget *= budget / max(size, 1)  # the coder's modes (adaptive chunks) need not follow the code length
            if size <= budget:
                candidates.consider(candidate, size, distortion.squared_error(candidate)[0])
            else:
                over = (candidate, size)
    return r, weight, over


def _fine_tune(distortion, rate, r, plain, weight, over, candidates):
    """More candidates in the size band: r rounded with a dead zone (``rate.rounding``) whose width is bisected,
    and the best ones and the last one ``over`` the budget moved by one-step moves (``_fit``), FIT_PASSES times."""
    rgb, budget = distortion.rgb, candidates.budget
    per_bit = distortion.samples / rgb.shape[0] / rgb.shape[1] * weight  # squared error per bit the weight stands for
    curvature = _curvature(distortion.decode, plain, rate.kept)[:, None, None]
    rounded = _land_in_band(lambda t: rate.rounding(r, t), 0.0, budget, rate.coded_size, -0.5, 0.5)  # dead zone t
    if rounded is not None:
        candidates.consider(*rounded, distortion.squared_error(rounded[0])[0])
    starts = [candidates.best[True][1], candidates.best[False][1], over and over[0]]
    for candidate in [c for c in starts if c is not None]:
        for _ in range(FIT_PASSES):
            fitted = _fit(candidate, distortion, rate, curvature, per_bit, budget)
            if fitted is None:
                break
            candidates.consider(*fitted)
            candidate = fitted[0]


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


def _fit(candidate, distortion, rate, curvature, weight, budget):
    """(r, size, squared error): integer residuals r moved by one step where that pays, so that the file lands in
    the size band (else as close below the budget as the rounds found), or None if no such move fits the budget.

    Each element may move by -1 or +1.  To second order a move delta of e
    changes the squared error by g_e * delta + h_c (g its gradient, h_c the
    decoder's response to a unit change in e's channel, ``_curvature``) and
    the bits by what ``rate.step_bits`` says; an element takes the move that
    lowers squared error + weight * bits most, if any does.  The weight is
    bisected (in log) so that the coded file lands in the band.
    """
    _, gradient = distortion.squared_error(candidate)
    down, up = rate.step_bits(candidate)
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

    fits = _land_in_band(moved, np.log(weight), budget, rate.coded_size)
    return None if fits is None else fits + (distortion.squared_error(fits[0])[0],)


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
