"""Bjontegaard-delta rate and curve interpolation, as the ``bjontegaard`` package computes them (method 'pchip').

BD-rate: log10(rate) as a piecewise-cubic Hermite (pchip) function of the
quality metric for both curves, integrated over the metric interval where they
overlap; the mean difference d gives (10**d - 1) * 100 percent.  Negative means
the test codec needs fewer bits than the anchor for the same quality.
``tests/test_bdrate.py`` checks this against the package.
"""
import numpy as np
from scipy.interpolate import PchipInterpolator


def _increasing(x, y):
    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    keep = np.concatenate([[True], np.diff(x) > 0])  # pchip needs strictly increasing x
    return x[keep], y[keep]


def bd_rate(rate_anchor, metric_anchor, rate_test, metric_test):
    """Average rate difference in percent at equal quality (nan when the curves do not overlap)."""
    xa, ya = _increasing(metric_anchor, np.log10(rate_anchor))
    xt, yt = _increasing(metric_test, np.log10(rate_test))
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if hi <= lo or len(xa) < 2 or len(xt) < 2:
        return float("nan")
    fa, ft = PchipInterpolator(xa, ya), PchipInterpolator(xt, yt)
    mean_diff = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    return float((10 ** mean_diff - 1) * 100)


def overlap(metric_anchor, metric_test):
    """The quality interval ``bd_rate`` averages over, as (lo, hi), or None when there is none: a BD-rate over a sliver
    of the test curve says little, so callers report how much of the curve it covers."""
    xa, xt = np.unique(np.asarray(metric_anchor, float)), np.unique(np.asarray(metric_test, float))
    if len(xa) < 2 or len(xt) < 2:
        return None
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    return (float(lo), float(hi)) if hi > lo else None


def metric_at_rate(rates, metrics, rate):
    """The quality a curve reaches at ``rate`` bpp (pchip in log-rate; nan outside the measured range)."""
    x, y = _increasing(np.log10(rates), metrics)
    if not x[0] <= np.log10(rate) <= x[-1] or len(x) < 2:
        return float("nan")
    return float(PchipInterpolator(x, y)(np.log10(rate)))
