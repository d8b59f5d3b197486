"""Gain units for continuous quality (Cui et al. 2021), trained so that the runtime can apply them exactly.

One row of gains per quality grid point of the model (``l3ic.quality``): an
exponent m per latent channel, rounded to an integer in the forward pass
(straight-through), for the gain g = r^m applied to y before quantisation,
and a free inverse gain applied to ŷ before synthesis.  r is the ratio of
neighbouring scale tables, so the gained latent's table is the ungained one's
index plus m (``export.hyperprior.gained``).  The exported tables are
integers except the inverse gains' corrections, which touch only the decoder's input.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from export.hyperprior import SCALE_COUNT, scales

RATIO = float(scales()[1] / scales()[0])  # r: one scale-table step
MULTIPLIER_BITS = 16  # the runtime scales a mean by an integer multiplier round(r^m * 2^16), then shifts
MAX_EXPONENT = SCALE_COUNT - 1  # |m| <= 63: a shift beyond the table range changes nothing
EXPONENTS_PER_Q = 0.35  # where gains start: about this many table steps per unit of q (measured on the released
# medium model with a uniform gain, on held-out training photos), counted from the model's preset


def initial_exponents(qualities, default):
    """A starting gain exponent per grid point: uniform over the channels, 0 at the model's default quality."""
    return [round(EXPONENTS_PER_Q * (q - default)) for q in qualities]


class GainUnits(keras.layers.Layer):
    """Per-grid-point gain exponents (n, C), starting at ``initial_exponents``, and inverse-gain logarithms (n, C),
    starting at 0 (the inverse gain 1/g)."""

    def __init__(self, qualities, default, channels, pin_default=False, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.points, self.channels = len(qualities), channels
        # pinned: the default quality's gains stay the identity (gains added to a released model keep its preset)
        self.pinned = qualities.index(default) if pin_default and default in qualities else -1
        self.initial = np.repeat(np.array(initial_exponents(qualities, default), np.float32)[:, None], channels, axis=1)

    def build(self, input_shape=None):
        shape = (self.points, self.channels)
        self.exponent = self.add_weight(name="exponent", shape=shape, initializer=keras.initializers.Constant(self.initial))
        self.inverse_log = self.add_weight(name="inverse_log", shape=shape, initializer="zeros")

    def exponents(self, point):
        """Integer-valued exponents m of a grid point (C,), straight-through rounded and clipped."""
        e = tf.clip_by_value(tf.gather(self.exponent, point), -float(MAX_EXPONENT), float(MAX_EXPONENT))
        return self._unless_pinned(point, e + tf.stop_gradient(tf.round(e) - e))

    def gain(self, point):
        """(m, g, inverse gain) of a grid point, each (C,): the inverse gain is exp(inverse_log) / g."""
        m = self.exponents(point)
        g = tf.exp(m * math.log(RATIO))
        return m, g, tf.exp(self._unless_pinned(point, tf.gather(self.inverse_log, point))) / g

    def _unless_pinned(self, point, value):
        """``value``, or 0 (no gradient) at the pinned grid point."""
        return tf.where(tf.equal(point, self.pinned), tf.zeros_like(value), value)

    def arrays(self):
        """What the runtime loads: integer exponents (n, C), the inverse gains' corrections exp(inverse_log) (n, C)
        float32 (the runtime divides them by the gain its exponent gives), mean multipliers."""
        m = np.clip(np.round(self.exponent.numpy()), -MAX_EXPONENT, MAX_EXPONENT).astype(np.int64)
        corrections = np.exp(self.inverse_log.numpy().astype(np.float64)).astype(np.float32)
        steps = np.arange(-MAX_EXPONENT, MAX_EXPONENT + 1)
        multipliers = np.round(RATIO ** steps.astype(np.float64) * 2.0 ** MULTIPLIER_BITS).astype(np.int64)
        return {"gain_exponents": m.astype(np.int16), "gain_corrections": corrections, "gain_multipliers": multipliers,
                "multiplier_bits": np.int64(MULTIPLIER_BITS)}
