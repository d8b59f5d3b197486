"""The hyperprior (Ballé et al. 2018, mean and scale) and its integer hyper-synthesis, for training.

Side information z is computed from the latents y by a small hyper-analysis,
rounded to integers and transmitted; a hyper-synthesis turns the rounded ẑ
into, for every latent element, a mean μ (in quarters) and a scale index k.
The latent is quantised as before, ŷ = round(y), so the decoder sees the
integers it was trained on, and coded relative to floor(μ) with the static
FSE table of a discretised Gaussian of scale ``scales()[k]`` whose mean is
μ's fractional quarter: K scales x 4 phases = 256 tables (``export.fit_tables``
then fits each table to the symbols it codes on training photos).

The index map decides how every symbol is decoded, so the hyper-synthesis is
an *integer network* (Ballé, Johnston & Minnen 2019): integer kernels and
biases, a rounding power-of-two rescale and a clip after every layer.  Here it
is trained with fake quantisation (straight-through rounding of weights,
biases and activations), so the float net trained is, up to float32 rounding
of its accumulators (a few table choices in a thousand, which export checks),
the integer net that ``l3ic.hyperprior`` runs exactly (in float64 over integers, every
partial sum far below 2^53).  ``integer_layers`` exports it.

Everything here runs in float32, also under a mixed-precision policy.
"""
import math

import keras
import numpy as np
import tensorflow as tf

HYPER_STRIDE = 4  # z is at 1/4 of the latent resolution (1/32 of the image)
Z_MIN, Z_SIZE = -8, 16  # z symbols are integers -8..7
WEIGHT_MAX = 2047  # integer kernels: |w| <= 2^11 - 1, one power-of-two step per output channel ...
MIN_WEIGHT_EXP = -20  # ... of at least 2^-20 (so that a near-zero channel's bias stays a modest integer)
ACT_MAX = 4095  # hidden activations: integers 0..4095 ...
ACT_EXP = -8  # ... in steps of 2^-8 (so 0..16)
MEAN_EXP = -2  # means in quarters: the table of an element is chosen by its scale and its mean's quarter
MEAN_MAX = 64  # |mean| <= 16
PHASES = 2 ** -MEAN_EXP
SCALE_COUNT = 64  # K: scale tables
SCALE_MIN, SCALE_MAX = 0.11, 20.0
TABLE_LOG = 12  # FSE tables of 4096 states: no symbol is cheaper than ~0.01 bit or dearer than 12 bits
PROB_FLOOR = 2.0 ** -TABLE_LOG


def scales():
    """The K scales, log-spaced from SCALE_MIN to SCALE_MAX (float64)."""
    return SCALE_MIN * (SCALE_MAX / SCALE_MIN) ** (np.arange(SCALE_COUNT) / (SCALE_COUNT - 1))


def ste_round(x):
    """Rounded forward, identity gradient backward."""
    return x + tf.stop_gradient(tf.round(x) - x)


class IntConv(keras.layers.Layer):
    """A convolution trained as an integer layer.

    Input values are integers times 2^in_exp, outputs integers times 2^out_exp
    clipped to [lo, hi].  The kernel is rounded to a power-of-two step per
    output channel (at most WEIGHT_MAX steps), the bias to the accumulator's
    step; so the exported layer is
    ``clip(floor(acc * 2^shift + 1/2), lo, hi)`` over integers.
    """

    def __init__(self, filters, kernel, in_exp, out_exp, lo, hi, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.filters, self.kernel_size = filters, kernel
        self.in_exp, self.out_exp, self.lo, self.hi = in_exp, out_exp, lo, hi

    def build(self, input_shape):
        cin = int(input_shape[-1])
        fan_in = self.kernel_size * self.kernel_size * cin
        self.kernel = self.add_weight(name="kernel", shape=(self.kernel_size, self.kernel_size, cin, self.filters),
                                      initializer=keras.initializers.RandomUniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in)))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def weight_exponents(self):
        """Per output channel, the power-of-two exponent e of the kernel step (float tensor, no gradient)."""
        peak = tf.reduce_max(tf.abs(self.kernel), axis=(0, 1, 2))
        e = tf.math.ceil(tf.math.log(tf.maximum(peak, 1e-12) / WEIGHT_MAX) / math.log(2.0))
        return tf.stop_gradient(tf.maximum(e, float(MIN_WEIGHT_EXP)))

    def call(self, x):
        step = tf.pow(2.0, self.weight_exponents())
        kernel = ste_round(self.kernel / step) * step
        bias_step = step * 2.0 ** self.in_exp
        bias = ste_round(self.bias / bias_step) * bias_step
        acc = tf.nn.conv2d(tf.cast(x, tf.float32), kernel, 1, "SAME") + bias
        out = acc / 2.0 ** self.out_exp
        out = out + tf.stop_gradient(tf.floor(out + 0.5) - out)  # rounds half up, as the integer net does
        return tf.clip_by_value(out, float(self.lo), float(self.hi)) * 2.0 ** self.out_exp

    def integer_layer(self):
        """The exported layer: int kernel (k, k, cin, cout), int bias, per-channel shift, clip bounds."""
        e = self.weight_exponents().numpy().astype(np.int64)
        step = 2.0 ** e
        kernel = np.round(self.kernel.numpy() / step).astype(np.int64)
        bias = np.round(self.bias.numpy() / (step * 2.0 ** self.in_exp)).astype(np.int64)
        return {"kernel": kernel, "bias": bias, "shift": e + self.in_exp - self.out_exp,
                "lo": self.lo, "hi": self.hi}


class HyperAnalysis(keras.Model):
    """Latents y (B, h, w, C) -> z (B, h/4, w/4, z_channels), continuous."""

    def __init__(self, z_channels, width=64, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.conv1 = keras.layers.Conv2D(width, 3, padding="same", dtype="float32")
        self.conv2 = keras.layers.Conv2D(width, 5, strides=2, padding="same", dtype="float32")
        self.conv3 = keras.layers.Conv2D(z_channels, 5, strides=2, padding="same", dtype="float32")

    def call(self, y):
        h = tf.nn.leaky_relu(self.conv1(tf.cast(y, tf.float32)), 0.2)
        h = tf.nn.leaky_relu(self.conv2(h), 0.2)
        return self.conv3(h)


class HyperSynthesis(keras.Model):
    """ẑ (B, h/4, w/4, z_channels) integers -> (mean, scale index), each (B, h, w, channels).

    Layers: 3x3 conv at 1/4, 3x3 conv + depth-to-space to 1/2, 3x3 conv +
    depth-to-space to 1/1, then two 1x1 heads: the mean in quarters and
    the scale index 0..K-1.  Hidden activations are clipped ReLUs (0..16).
    """

    def __init__(self, channels, width=64, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        act = dict(out_exp=ACT_EXP, lo=0, hi=ACT_MAX)
        self.conv1 = IntConv(width, 3, in_exp=0, **act)
        self.conv2 = IntConv(4 * (3 * width // 4), 3, in_exp=ACT_EXP, **act)
        self.conv3 = IntConv(4 * (width // 2), 3, in_exp=ACT_EXP, **act)
        self.mean = IntConv(channels, 1, in_exp=ACT_EXP, out_exp=MEAN_EXP, lo=-MEAN_MAX, hi=MEAN_MAX)
        self.scale = IntConv(channels, 1, in_exp=ACT_EXP, out_exp=0, lo=0, hi=SCALE_COUNT - 1)

    def call(self, z_hat):
        h = self.conv1(z_hat)
        h = tf.nn.depth_to_space(self.conv2(h), 2)
        h = tf.nn.depth_to_space(self.conv3(h), 2)
        return self.mean(h), self.scale(h)

    def integer_layers(self):
        """The integer network as a list of layer dicts, in order (see l3ic.hyperprior)."""
        layers = [dict(self.conv1.integer_layer(), depth_to_space=1),
                  dict(self.conv2.integer_layer(), depth_to_space=2),
                  dict(self.conv3.integer_layer(), depth_to_space=2)]
        return layers, self.mean.integer_layer(), self.scale.integer_layer()


class ZPrior(keras.layers.Layer):
    """A learned discrete distribution over Z_MIN..Z_MIN+Z_SIZE-1 for each z channel."""

    def __init__(self, z_channels, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.z_channels = z_channels

    def build(self, input_shape=None):
        values = np.arange(Z_SIZE) + Z_MIN
        init = np.tile(-0.5 * (values / 2.0) ** 2, (self.z_channels, 1)).astype(np.float32)
        self.logits = self.add_weight(name="logits", shape=(self.z_channels, Z_SIZE),
                                      initializer=keras.initializers.Constant(init))

    def probabilities(self):
        return tf.nn.softmax(self.logits, axis=-1)

    def bits(self, z):
        """Code length in bits of each element of z (B, h, w, Zc); linear interpolation between integers."""
        z = tf.clip_by_value(tf.cast(z, tf.float32), float(Z_MIN), float(Z_MIN + Z_SIZE - 1))
        values = tf.constant(np.arange(Z_SIZE) + Z_MIN, tf.float32)
        weight = tf.nn.relu(1.0 - tf.abs(z[..., None] - values))  # (B, h, w, Zc, L)
        p = tf.reduce_sum(weight * self.probabilities(), axis=-1)
        return -tf.math.log(tf.maximum(p, PROB_FLOOR)) / math.log(2.0)


def quantise_z(z):
    """Straight-through rounding of z to its integer alphabet."""
    return ste_round(tf.clip_by_value(z, float(Z_MIN), float(Z_MIN + Z_SIZE - 1)))


def sigma_of(index):
    """The scale of a (float, integer-valued) scale index."""
    log_step = math.log(SCALE_MAX / SCALE_MIN) / (SCALE_COUNT - 1)
    return SCALE_MIN * tf.exp(tf.cast(index, tf.float32) * log_step)


def residual_bits(r, sigma):
    """Code length in bits of residuals r under a zero-mean Gaussian of scale sigma convolved with U(-1/2, 1/2).

    The probability is floored at 2^-TABLE_LOG, the smallest an FSE table of
    TABLE_LOG states can give a symbol.
    """
    r = tf.abs(r)
    scale = sigma * math.sqrt(2.0)
    p = 0.5 * (tf.math.erfc((r - 0.5) / scale) - tf.math.erfc((r + 0.5) / scale))
    return -tf.math.log(tf.maximum(p, PROB_FLOOR)) / math.log(2.0)


def gained(mean, index, m, g):
    """The mean and scale index of g * y from those of y, as the runtime computes them (``l3ic.hyperprior``):
    the mean scaled and rounded to its steps (straight-through) and clipped, the index shifted by m and clipped."""
    scaled = g * mean * PHASES
    scaled = scaled + tf.stop_gradient(tf.floor(scaled + 0.5) - scaled)
    return (tf.clip_by_value(scaled, -float(MEAN_MAX), float(MEAN_MAX)) / PHASES,
            tf.clip_by_value(index + m, 0.0, float(SCALE_COUNT - 1)))


def coded_bits(model, y, codebook, noise=None, round_latents=False, gain=None):
    """(bits, ŷ): the hyperprior's code length of latents y and their side information, and the decoder's input.

    ŷ = μ + round(y - μ) (straight-through, the rounded distance within the
    codebook's values), with the mean μ and scale that the integer
    hyper-synthesis gives from ẑ, as files code it (``container.FLAG_MEAN_SHIFT``),
    coded with a Gaussian of that scale: the rate is measured on ŷ and ẑ, or,
    given a ``noise`` generator, on z plus uniform noise (the differentiable
    stand-in for rounding) and, unless ``round_latents``, on y plus noise too.
    While the analysis is frozen, y needs no gradient, and the rate of ŷ
    itself is what the hyperprior should fit.  ``gain`` = (m, g) per channel
    (``export.gain``): ẑ still comes from y, and g * y is coded (``gained``),
    before any inverse gain.
    """
    z = model.hyper_analysis(y)
    z_hat = quantise_z(z)
    mean, index = model.hyper_synthesis(z_hat)
    if gain is not None:
        mean, index = gained(mean, index, *gain)
        y = gain[1] * y
    y_hat = mean + codebook.straight_through(y - mean)
    r, z_coded = y_hat - mean, z_hat
    if noise is not None:
        z_coded = z + noise.uniform(tf.shape(z), -0.5, 0.5, dtype=tf.float32)
        if not round_latents:
            r = codebook.clip(y - mean) + noise.uniform(tf.shape(y), -0.5, 0.5, dtype=tf.float32)
    bits = tf.reduce_sum(residual_bits(r, sigma_of(index))) + tf.reduce_sum(model.z_prior.bits(z_coded))
    return bits, y_hat


def table_counts(probabilities, table_log=TABLE_LOG):
    """FSE normalized counts for rows of probabilities: every count >= 1, each row sums to 2^table_log.

    Each symbol first gets 1, the rest of the table is shared in proportion to
    the probabilities (rounded), and the rounding error goes to the most
    probable symbol.  Done once at export; the counts are stored in the model.
    """
    p = np.asarray(probabilities, np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    size = 1 << table_log
    counts = 1 + np.round(p * (size - p.shape[1])).astype(np.int64)
    top = np.argmax(p, axis=1)
    counts[np.arange(len(p)), top] += size - counts.sum(axis=1)
    if counts.min() < 1:
        raise ValueError("a table cannot hold these probabilities")
    return counts.astype(np.int16)


def gaussian_table_probabilities(codebook):
    """P(v) for the codebook values v relative to floor(mean), row k * PHASES + q: a Gaussian of scale
    scales()[k] and mean q / PHASES, convolved with U(-1/2, 1/2); tails folded into the end symbols."""
    from math import erfc, sqrt
    rows = []
    for sigma in scales():
        for q in range(PHASES):
            cdf = lambda t: 0.5 * erfc(-(t - q / PHASES) / (sigma * sqrt(2.0)))
            edges = [cdf(v - 0.5) for v in codebook.values] + [1.0]
            edges[0] = 0.0
            rows.append(np.diff(edges))
    return np.array(rows)


def entropy_model_arrays(model, codebook, latent_counts=None):
    """Everything ``l3ic.hyperprior.EntropyModel`` loads, as arrays for ``np.savez`` (all integers but the
    inverse gains of a model with continuous quality, which only scale the decoder's input); the latent tables are
    ``latent_counts`` (fitted ones, ``export.fit_tables``) or else the Gaussians training measured its rate with."""
    hidden, mean, scale = model.hyper_synthesis.integer_layers()
    arrays = {"hidden_layers": np.int64(len(hidden)), "mean_exp": np.int64(MEAN_EXP),
              "hyper_stride": np.int64(HYPER_STRIDE), "z_min": np.int64(Z_MIN), "table_log": np.int64(TABLE_LOG),
              "latent_counts": (table_counts(gaussian_table_probabilities(codebook)) if latent_counts is None
                                else np.asarray(latent_counts, np.int16)),
              "z_counts": table_counts(model.z_prior.probabilities().numpy())}
    for prefix, layer in [("hs%d_" % i, layer) for i, layer in enumerate(hidden)] + [("mean_", mean), ("scale_", scale)]:
        arrays[prefix + "kernel"] = layer["kernel"].astype(np.int32)
        arrays[prefix + "bias"] = layer["bias"].astype(np.int64)
        arrays[prefix + "shift"] = layer["shift"].astype(np.int32)
        arrays[prefix + "clip"] = np.array([layer["lo"], layer["hi"]], np.int64)
        if "depth_to_space" in layer:
            arrays[prefix + "depth_to_space"] = np.int64(layer["depth_to_space"])
    qualities = model.config.get("qualities")
    if qualities:
        from l3ic.quality import QUALITY_SCALE
        arrays.update(model.gain_units.arrays(), default_quality=np.int64(round(model.config["default_quality"] * QUALITY_SCALE)),
                      quality_grid=np.array([round(q * QUALITY_SCALE) for q in qualities], np.int64))
    return arrays
