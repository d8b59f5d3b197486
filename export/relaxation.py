"""Refinement's relaxation, for training the encoder against a released decoder and entropy model.

``l3ic --refine`` improves a file by gradient descent on its latents: the
decoder sees them *soft-rounded* (a random point between the two nearest
integers, which anneals to plain rounding), and their cost is the exact code
length of the static FSE tables the file uses, interpolated between integers
(``l3ic.refine``).  That relaxation moves latents the right way on l3ic's
models, where additive noise and straight-through rounding did not.

``export.train --encoder-only`` trains the analysis transform with the same
two pieces, so that the plain encode lands where refinement would go:

* ``soft_round``: the stochastic (two-Gumbel) soft rounding of Yang, Bamler
  and Mandt (2020), as ``l3ic.refine.descent.soft_round`` computes it;
* ``TableRate``: the code lengths of the released model's tables (fitted or
  Gaussian, whichever ``entropy_model.npz`` holds) for the latents' distance
  from the mean the frozen hyper-synthesis gives for ẑ, with the table of its
  scale index, as files code them (``container.FLAG_MEAN_SHIFT``).

The side information ẑ follows the latents (it is computed from them, as an
encode does) but carries no gradient into them, as in refinement, which keeps
the plain encode's ẑ.  Everything here runs in float32.
"""
import numpy as np
import tensorflow as tf

from export.hyperprior import PHASES, gained, quantise_z

TEMPERATURE = (0.3, 0.02)  # soft rounding's temperature at the start and at the end of a run (geometric in between)


def temperature(fraction):
    """The soft-rounding temperature a fraction 0..1 of the way through a run."""
    start, end = TEMPERATURE
    return start * (end / start) ** min(max(fraction, 0.0), 1.0)


def soft_round(r, temp, noise):
    """A random point between floor(r) and floor(r) + 1, differentiable in r: the weight of the upper integer is
    a logistic relaxation with log-odds (atanh(f) - atanh(1 - f)) / temp plus logistic noise, f = r - floor(r);
    near an integer it picks that integer, and as ``temp`` falls it becomes plain rounding."""
    floor = tf.stop_gradient(tf.floor(r))
    f = tf.clip_by_value(r - floor, 1e-4, 1.0 - 1e-4)
    u = noise.uniform(tf.shape(r), 1e-6, 1.0 - 1e-6, dtype=tf.float32)
    log_odds = (tf.atanh(f) - tf.atanh(1.0 - f)) / temp + tf.math.log(u) - tf.math.log1p(-u)
    return floor + tf.sigmoid(tf.clip_by_value(log_odds, -50.0, 50.0))


class TableRate:
    """The code lengths (bits) of the static tables of a released ``entropy_model.npz``, rows = tables
    (scale index * PHASES + phase), columns = symbols ŷ - origin - codebook_min."""

    def __init__(self, path, codebook):
        from l3ic.hyperprior import code_lengths
        with np.load(path) as arrays:
            bits = code_lengths(arrays["latent_counts"], int(arrays["table_log"]))
        if bits.shape[1] != codebook.size:
            raise SystemExit("error: %s has tables of %d symbols, the model a codebook of %d"
                             % (path, bits.shape[1], codebook.size))
        self.bits = tf.constant(bits, tf.float32)
        self.lo, self.hi, self.size = float(codebook.minimum), float(codebook.maximum), codebook.size

    def residuals(self, model, y, gain):
        """(r, mean, rows, ẑ's bits): y's latents (times ``gain`` = (m, g, inverse), if any) relative to the mean
        of their ẑ, as files code them (``container.FLAG_MEAN_SHIFT``), clipped to the symbols; each element's
        table row (its scale's, of phase 0)."""
        z = model.hyper_analysis(tf.stop_gradient(y))
        z_hat = quantise_z(z)
        mean, index = model.hyper_synthesis(z_hat)
        if gain is not None:
            mean, index = gained(mean, index, gain[0], gain[1])
            y = gain[1] * y
        mean, index = tf.stop_gradient(mean), tf.stop_gradient(index)
        rows = tf.cast(tf.round(index) * PHASES, tf.int32)
        r = tf.clip_by_value(y - mean, self.lo, self.hi)
        z_bits = tf.reduce_sum(tf.stop_gradient(model.z_prior.bits(z_hat)))
        return r, mean, rows, z_bits

    def bits_of(self, r, rows):
        """Total code length of residuals r (integers: exact; between two integers: linearly interpolated, so the
        gradient is the difference of the two neighbours' lengths)."""
        left = tf.clip_by_value(tf.floor(r), self.lo, self.hi - 1.0)
        frac = r - tf.stop_gradient(left)
        column = tf.cast(left - self.lo, tf.int32)
        below = tf.gather_nd(self.bits, tf.stack([rows, column], -1))
        above = tf.gather_nd(self.bits, tf.stack([rows, column + 1], -1))
        return tf.reduce_sum(below + frac * (above - below))

    def coded(self, model, y, point, temp=None, noise=None):
        """(bits of ŷ and ẑ, the decoder's input) of latents y at quality grid point ``point``: ŷ = mean + s, s
        rounded, with the gradient of soft rounding at ``temp`` with ``noise`` (a tf.random.Generator) unless
        ``temp`` is None."""
        gain = model.gain_units.gain(point) if model.config["qualities"] else None
        r, mean, rows, z_bits = self.residuals(model, y, gain)
        hard = tf.round(r)
        bits = self.bits_of(hard, rows)
        if temp is not None:  # the values of rounding, the gradients of the relaxation
            soft = tf.clip_by_value(soft_round(r, temp, noise), self.lo, self.hi)
            hard = soft + tf.stop_gradient(hard - soft)
            interpolated = self.bits_of(r, rows)
            bits = interpolated + tf.stop_gradient(bits - interpolated)
        y_hat = mean + hard
        return bits + z_bits, y_hat if gain is None else y_hat * gain[2]

