"""Continuous quality: ``q`` in 0..100 names a rate-distortion trade-off, and the models share the range.

Cui et al. (2021, "Asymmetric gained deep image compression with continuous
rate adaptation"): a model trained with a *gain vector* per operating point
scales its latent y channel by channel before quantisation (ŷ = round(g * y))
and an *inverse gain* rescales ŷ before synthesis; between two trained
points the gains are interpolated.  Here:

* ``q`` stands for the rate weight ``lambda_of(q)`` = 50 * 5^((65 - q) / 40)
  (MSE on 0..255 per bit per pixel): q 25, 65, 95 are the trade-offs the low,
  medium and high models were first trained for, and are those names' presets.
* ``-q`` takes the model that serves q in ``MODEL_RANGES``: at the same
  lambda a larger model spends more bits for less distortion, and these
  switch points are where it becomes the better trade-off.  Each model is
  trained at a few grid points over a wider range that overlaps its
  neighbours' (``export.train --qualities``, the range is in its entropy
  model), so that ``--target-bpp`` can reach the sizes between two models at
  their switch point.  A file records q in hundredths (``QUALITY_SCALE``).
* A gain is g = r^m with r the ratio of neighbouring scale tables
  (``export.hyperprior.scales``) and m an integer per channel: the scale
  table of g * y is then exactly the table m steps up, and the mean the
  hyperprior predicts for y is scaled to g * y with an integer multiplier.
  So the gain changes no exactness argument (``l3ic.hyperprior``).  Between
  grid points, m is interpolated and rounded with integer arithmetic, and
  the inverse gain (it only scales the decoder's input) in floating point.
"""
from l3ic.errors import L3icError

QUALITY_SCALE = 100  # a file stores q * 100 as an integer
PRESETS = {"low": 25, "medium": 65, "high": 95}
MODEL_RANGES = {"low": (0, 45), "medium": (45, 80), "high": (80, 100)}  # what -q picks (inclusive; a boundary q goes
# to the larger model); each model is trained on a grid reaching beyond (export.train --qualities)


def lambda_of(q):
    """The rate weight a quality stands for (training's loss = MSE + lambda * bpp)."""
    return 50.0 * 5.0 ** ((65.0 - q) / 40.0)


def quality_units(q, name="quality"):
    """``q`` (a number 0..100, as text too, or a preset name) as the integer the file stores (hundredths);
    L3icError if it is none of these or out of range."""
    given = q
    if isinstance(q, str):
        q = PRESETS.get(q.strip().lower())
        if q is None:
            try:
                q = float(given)
            except ValueError:
                pass
    try:
        units = round(float(q) * QUALITY_SCALE)
    except (TypeError, ValueError, OverflowError):
        units = None
    if isinstance(q, bool) or units is None or not 0 <= units <= 100 * QUALITY_SCALE:
        raise L3icError("%s must be a number 0..100 or one of %s, got %r" % (name, ", ".join(PRESETS), given))
    return units


def model_for(units):
    """The quality model that serves q (in hundredths): the best model whose range holds it."""
    for name in ("high", "medium", "low"):
        lo, hi = MODEL_RANGES[name]
        if lo * QUALITY_SCALE <= units <= hi * QUALITY_SCALE:
            return name
    raise L3icError("quality %s is outside 0..100" % (units / QUALITY_SCALE))
