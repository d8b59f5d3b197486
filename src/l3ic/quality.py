"""Continuous quality: ``-q`` in 0..100 is one scale, and the models share it.

Each model is trained for a range of rate-distortion trade-offs with gains
(Cui et al. 2021, "Asymmetric gained deep image compression with continuous
rate adaptation"): it scales its latent y channel by channel before
quantisation (ŷ = round(g * y)) and an inverse gain rescales ŷ before
synthesis; between the trained grid points the gains are interpolated.  Two
scales are involved:

* **A model's own q** names a trade-off of that model, the rate weight
  ``lambda_of(q)`` = 50 * 5^((65 - q) / 40) (MSE on 0..255 per bit per
  pixel) its gains were fitted for.  q 25, 65, 95 are what the low, medium
  and high models were first trained for: the presets ``MODEL_PRESETS``.  A
  file records its model's own q, in hundredths (``QUALITY_SCALE``): that is
  what selects the gains, so decoding never depends on the scale below.
* **The ``-q`` scale users type** (the CLI, the API's ``quality=``, the
  Pillow plugin, ``--target-bpp``'s search) is cut into stretches, one per
  model (``SCALE``), each mapped linearly onto part of that model's grid.
  The models hand over where their rate-distortion curves cross, so the size
  and the quality run on without a jump; the stretches' lengths follow the
  (log) rate they span, so one step of q grows a file by about the same
  factor all along the scale.  ``python -m benchmarks.qscale`` measures the
  curves on photos held out of training and proposes this table.

The map is exact integer arithmetic, and ``from_model`` inverts it: the q
that ``l3ic info`` shows for a file, given with ``-q``, makes that same file
again.  The -q scale counts in thousandths (``Q_UNITS``), finer than the
hundredths of a model's own q, so every q a model can code has a -q value,
and that holds for the presets and for the files of earlier releases too.  A
model named with ``-m`` takes any q of the scale its stretch's line reaches
inside its grid (``reach``).

A gain is g = r^m with r the ratio of neighbouring scale tables
(``export.hyperprior.scales``) and m an integer per channel: the scale table
of g * y is then exactly the table m steps up, and the mean the hyperprior
predicts for y is scaled to g * y with an integer multiplier.  So the gain
changes no exactness argument (``l3ic.hyperprior``).  Between grid points, m
is interpolated and rounded with integer arithmetic, and the inverse gain (it
only scales the decoder's input) in floating point.
"""
from typing import NamedTuple

from l3ic.errors import L3icError

QUALITY_SCALE = 100  # a file stores its model's own q in hundredths
MAX_MODEL_QUALITY = 200  # a model's own q reaches at most this (lambda_of(200) = 0.22): files hold 0..20000 hundredths
Q_UNITS = 1000  # the -q scale in thousandths: at most 10x coarser than a stretch's model q, which keeps from_model exact
MODEL_PRESETS = {"low": 25, "medium": 65, "high": 95}  # a model's own q that its preset name encodes at


class Stretch(NamedTuple):
    """A model serves ``start`` <= q < ``end`` of the -q scale (the last one up to 100 inclusive), which maps
    linearly onto its own q ``model_start``..``model_end``."""

    model: str
    start: float
    end: float
    model_start: float
    model_end: float


SCALE = (  # python -m benchmarks.qscale (l3ic 0.9.0: 0.8's models, latents coded about the hyperprior's mean;
    # measured on the training set's held-out photos)
    Stretch("low", 0, 29, 0, 54.2),
    Stretch("medium", 29, 64, 30, 91.8),
    Stretch("high", 64, 100, 65, 145),
)


def lambda_of(q):
    """The rate weight a model's own q stands for (training's loss = MSE + lambda * bpp)."""
    return 50.0 * 5.0 ** ((65.0 - q) / 40.0)


def quality_units(q, name="quality"):
    """``q`` on the -q scale (a number 0..100, as text too, or a preset name) in ``Q_UNITS``; L3icError if it is
    none of these or out of range."""
    given = q
    if isinstance(q, str):
        q = PRESETS.get(q.strip().lower())
        if q is None:
            try:
                q = float(given)
            except ValueError:
                pass
    try:
        units = round(float(q) * Q_UNITS)
    except (TypeError, ValueError, OverflowError):
        units = None
    if isinstance(q, bool) or units is None or not 0 <= units <= 100 * Q_UNITS:
        raise L3icError("%s must be a number 0..100 or one of %s, got %r" % (name, ", ".join(PRESETS), given))
    return units


def model_for(units):
    """The model that serves q (``Q_UNITS`` of the -q scale); a boundary q goes to the larger model."""
    for stretch in reversed(SCALE):
        if round(stretch.start * Q_UNITS) <= units:
            return stretch.model
    raise L3icError("quality %s is outside 0..100" % (units / Q_UNITS))


def to_model(name, units):
    """Model ``name``'s own q (hundredths) for q (``Q_UNITS`` of the -q scale): its stretch's line, rounded
    half up.  A model outside ``SCALE`` (one trained by a user) takes q as its own."""
    line = _line(name)
    if line is None:
        return _divide(units * QUALITY_SCALE, Q_UNITS)
    u0, u1, m0, m1 = line
    return m0 + _divide((units - u0) * (m1 - m0), u1 - u0)


def from_model(name, model_units):
    """The q (``Q_UNITS`` of the -q scale) whose ``to_model`` is ``model_units``: there is one for every own q the
    model's grid holds, since a stretch's line moves at most one own-q hundredth per thousandth of q.  Of the q
    that give it, the one with the fewest decimals, inside the stretch that ``model_for`` gives the model where
    it can be: a file made with ``-q 57.25`` shows 57.25."""
    line = _line(name)
    if line is None:
        return model_units * (Q_UNITS // QUALITY_SCALE)
    u0, u1, m0, m1 = line
    lo = hi = u0 + _divide((model_units - m0) * (u1 - u0), m1 - m0)
    while to_model(name, lo - 1) == model_units:
        lo -= 1
    while to_model(name, hi + 1) == model_units:
        hi += 1
    last = name == SCALE[-1].model
    if lo < u1 + last and hi >= u0:  # inside the stretch: keep to it
        lo, hi = max(lo, u0), min(hi, u1 - (not last))
    for step in (Q_UNITS, Q_UNITS // 10, Q_UNITS // 100):
        roundest = -(-lo // step) * step
        if roundest <= hi:
            return roundest
    return lo


def reach(name, model_lo, model_hi):
    """(lowest, highest) q (``Q_UNITS`` of the -q scale, within 0..100) that model ``name`` can encode, given its
    grid's range in its own q (hundredths)."""
    top = 100 * Q_UNITS
    lo, hi = max(0, from_model(name, model_lo)), min(top, from_model(name, model_hi))
    while lo <= top and to_model(name, lo) < model_lo:
        lo += 1
    while hi >= 0 and to_model(name, hi) > model_hi:
        hi -= 1
    return lo, hi


def served(name):
    """(start, end) of the -q scale that ``model_for`` gives model ``name``, or None."""
    return next(((s.start, s.end) for s in SCALE if s.model == name), None)


def _line(name):
    stretch = next((s for s in SCALE if s.model == name), None)
    if stretch is None:
        return None
    return (round(stretch.start * Q_UNITS), round(stretch.end * Q_UNITS),
            round(stretch.model_start * QUALITY_SCALE), round(stretch.model_end * QUALITY_SCALE))


def _divide(numerator, denominator):
    """numerator / denominator rounded half up, in integers (denominator > 0): the same on every machine."""
    return (2 * numerator + denominator) // (2 * denominator)


PRESETS = {name: from_model(name, q * QUALITY_SCALE) / Q_UNITS for name, q in MODEL_PRESETS.items()}  # on the -q scale
