"""Quantisation to the integer codebook and the per-channel rate estimate.

The runtime codes every latent channel of an image on its own, with an FSE
table built from that channel's own histogram.  So the rate we train against
is exactly that: the entropy of each channel's histogram over the codebook, in
bits per pixel.  A histogram is not differentiable, so training uses a *soft*
histogram in which every latent value spreads its unit mass linearly over the
two nearest codebook entries (a triangular kernel).  This is the expected
histogram of dithered rounding, round(y + u) with u ~ U(-1/2, 1/2), so it
tracks the hard histogram closely while giving every latent a gradient.

Everything here runs in float32, also under a mixed-precision policy.
"""
import tensorflow as tf


class Codebook:
    """The integer codebook: ``size`` consecutive values starting at ``minimum``.

    The seed codec used 32 values, -15..16.  Symbols are indices 0..size-1
    (value = minimum + index), which is what the entropy coder sees.
    """

    def __init__(self, minimum=-15, size=32):
        if size < 2 or size > 256:
            raise ValueError("codebook size must be in 2..256")
        self.minimum = int(minimum)
        self.size = int(size)

    @property
    def maximum(self):
        return self.minimum + self.size - 1

    @property
    def values(self):
        return list(range(self.minimum, self.maximum + 1))

    def clip(self, y):
        return tf.clip_by_value(tf.cast(y, tf.float32), float(self.minimum), float(self.maximum))

    def hard(self, y):
        """Nearest codebook value (float tensor); what inference uses."""
        return tf.round(self.clip(y))

    def to_symbols(self, y):
        """Nearest codebook value as a symbol index (uint8), for the exported encoder."""
        return tf.cast(self.hard(y) - float(self.minimum), tf.uint8)

    def from_symbols(self, symbols):
        """Symbol indices back to codebook values (float32), for the exported decoder."""
        return tf.cast(symbols, tf.float32) + float(self.minimum)

    def straight_through(self, y):
        """Hard values forward, identity gradient backward (inside the codebook range)."""
        y = self.clip(y)
        return y + tf.stop_gradient(tf.round(y) - y)

    def noisy(self, y, seed_generator):
        """Additive uniform noise: the usual smooth stand-in for rounding early in training."""
        y = self.clip(y)
        noise = seed_generator.uniform(tf.shape(y), -0.5, 0.5, dtype=tf.float32)
        return y + noise

    def soft_histogram(self, y):
        """Per-channel probability of each codebook entry, shape (channels, size).

        ``y`` has shape (batch, height, width, channels); the histogram pools
        all positions of the batch, which makes the estimate smoother than a
        per-crop histogram of a few hundred symbols (and it upper-bounds the
        per-image rate the coder actually pays, by concavity of entropy).
        """
        y = self.clip(y)
        channels = tf.shape(y)[-1]
        flat = tf.transpose(tf.reshape(y, [-1, channels]))  # (C, N)
        values = tf.constant(self.values, tf.float32)
        weight = tf.nn.relu(1.0 - tf.abs(flat[:, :, None] - values[None, None, :]))  # (C, N, L)
        counts = tf.reduce_sum(weight, axis=1)
        return counts / tf.reduce_sum(counts, axis=1, keepdims=True)

    def bits_per_symbol(self, y):
        """Entropy of each channel's soft histogram, in bits, shape (channels,)."""
        p = self.soft_histogram(y)
        return -tf.reduce_sum(p * tf.math.log(tf.maximum(p, 1e-12)), axis=1) / tf.math.log(2.0)

    def bits_per_pixel(self, y, stride):
        """Estimated rate of all channels in bits per image pixel."""
        return tf.reduce_sum(self.bits_per_symbol(y)) / float(stride * stride)


def empirical_bits_per_symbol(symbols, size):
    """Entropy (bits) of the hard histogram of each channel of an int tensor (B, H, W, C)."""
    channels = tf.shape(symbols)[-1]
    flat = tf.transpose(tf.reshape(tf.cast(symbols, tf.int32), [-1, channels]))
    counts = tf.cast(tf.math.bincount(flat, minlength=size, maxlength=size, axis=-1), tf.float32)
    p = counts / tf.reduce_sum(counts, axis=1, keepdims=True)
    return -tf.reduce_sum(p * tf.math.log(tf.maximum(p, 1e-12)), axis=1) / tf.math.log(2.0)
