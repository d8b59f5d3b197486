"""The l3ic network: a Theis et al. (2017) style convolutional auto-encoder.

Analysis (encoder): two strided convolutions to 1/4 resolution, a third to
1/8, residual blocks at 1/8, and a projection to ``channels`` latent maps.
Synthesis (decoder): the mirror image, upsampling with sub-pixel convolutions
(convolution + depth-to-space), which export to plain ONNX ``Conv`` and
``DepthToSpace``.  No normalisation layers: the entropy penalty is the only
regulariser.  Most residual blocks sit at 1/8 resolution, where they are
cheap, so the net stays fast on a CPU (see ``benchmarks.speed``); ``detail``
optional blocks at 1/4 and 1/2 resolution give the decoder the capacity that
fine texture needs at higher rates.

Both halves are subclassed Keras models: ``tf2onnx.convert.from_function`` on a
``tf.function`` around them exports cleanly (functional Keras 3 models with raw
``tf.nn`` ops do not).
"""
import keras
import tensorflow as tf

STRIDE = 8  # total downsampling of the analysis transform
LEAK = 0.2  # slope of the leaky ReLUs


def _conv(filters, kernel, stride=1, name=None, kernel_initializer="glorot_uniform"):
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", name=name,
                               kernel_initializer=kernel_initializer)


class ResidualBlock(keras.layers.Layer):
    """x + conv(lrelu(conv(x))): two 3x3 convolutions with a skip connection.

    ``identity_init`` zeroes the second convolution, so a block added to a
    trained net starts as the identity and fine-tuning grows it from there.
    """

    def __init__(self, width, identity_init=False, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = _conv(width, 3)
        self.conv2 = _conv(width, 3, kernel_initializer="zeros" if identity_init else "glorot_uniform")

    def call(self, x):
        h = tf.nn.leaky_relu(self.conv1(x), LEAK)
        return x + self.conv2(h)


class Analysis(keras.Model):
    """Image in [0, 1] (B, H, W, 3) -> continuous latents (B, H/8, W/8, channels)."""

    def __init__(self, channels, width=128, blocks=3, extra=0, **kwargs):
        super().__init__(**kwargs)
        self.down1 = _conv(width // 2, 5, 2)
        self.down2 = _conv(width, 3, 2)
        self.down3 = _conv(width, 3, 2)
        self.blocks = [ResidualBlock(width) for _ in range(blocks)]
        self.project = _conv(channels, 3)
        # ``extra`` blocks after those, starting as the identity: a larger encoder for a released decoder
        # (--encoder-only). Created last, so the weights of an encoder without them keep their order.
        self.extra = [ResidualBlock(width, identity_init=True) for _ in range(extra)]

    def call(self, x):
        h = tf.nn.leaky_relu(self.down1(x - 0.5), LEAK)
        h = tf.nn.leaky_relu(self.down2(h), LEAK)
        h = self.down3(h)
        for block in self.blocks + self.extra:
            h = block(h)
        return self.project(tf.nn.leaky_relu(h, LEAK))


class Synthesis(keras.Model):
    """Codebook values (B, h, w, channels) -> image in [0, 1] (B, 8h, 8w, 3), unclipped."""

    def __init__(self, channels, width=128, blocks=3, detail=0, **kwargs):
        super().__init__(**kwargs)
        self.expand = _conv(width, 3)
        self.blocks = [ResidualBlock(width) for _ in range(blocks)]
        self.up1 = _conv(4 * (3 * width // 4), 3)
        self.up2 = _conv(4 * (width // 2), 3)
        self.up3 = _conv(4 * 3, 3)
        # Created last, so the weights of a net without them keep their order (see export.train.warm_start).
        self.detail4 = [ResidualBlock(3 * width // 4, identity_init=True) for _ in range(detail)]
        self.detail2 = [ResidualBlock(width // 2, identity_init=True) for _ in range(detail)]

    def call(self, q):
        h = self.expand(q)
        for block in self.blocks:
            h = block(h)
        h = tf.nn.leaky_relu(h, LEAK)
        h = tf.nn.leaky_relu(tf.nn.depth_to_space(self.up1(h), 2), LEAK)
        for block in self.detail4:
            h = block(h)
        h = tf.nn.leaky_relu(tf.nn.depth_to_space(self.up2(h), 2), LEAK)
        for block in self.detail2:
            h = block(h)
        return tf.nn.depth_to_space(self.up3(h), 2) + 0.5


class L3icModel(keras.Model):
    """Encoder + decoder pair with the hyper-parameters needed to rebuild it.

    With ``z_channels`` > 0 the model has a hyperprior (``export.hyperprior``):
    the entropy model of format 3.  Without, it is a format-2 model whose
    channels are coded with per-file histograms.  ``qualities`` (a hyperprior
    model's quality grid, ``l3ic.quality``, with its ``default_quality``) adds gain units (``export.gain``).
    """

    def __init__(self, channels, width=128, blocks=3, detail=0, z_channels=0, hyper_width=64, qualities=None,
                 default_quality=None, gains_only=False, free_preset=False, analysis_extra=0, **kwargs):
        super().__init__(**kwargs)
        self.config = {"channels": channels, "width": width, "blocks": blocks, "detail": detail,
                       "z_channels": z_channels, "hyper_width": hyper_width, "qualities": qualities,
                       "default_quality": default_quality, "gains_only": gains_only, "free_preset": free_preset,
                       "analysis_extra": analysis_extra}
        self.analysis = Analysis(channels, width, blocks, analysis_extra, name="analysis")
        self.synthesis = Synthesis(channels, width, blocks, detail, name="synthesis")
        if z_channels:
            from export import hyperprior
            self.hyper_analysis = hyperprior.HyperAnalysis(z_channels, hyper_width, name="hyper_analysis")
            self.hyper_synthesis = hyperprior.HyperSynthesis(channels, hyper_width, name="hyper_synthesis")
            self.z_prior = hyperprior.ZPrior(z_channels, name="z_prior")
        if qualities:
            from export.gain import GainUnits
            self.gain_units = GainUnits(qualities, default_quality, channels, pin_default=gains_only and not free_preset,
                                        name="gain_units")

    @property
    def has_hyperprior(self):
        return bool(self.config["z_channels"])

    @classmethod
    def from_config_dict(cls, config):
        """The net described by a run's or a release's config.json (``detail``, ``z_channels`` and
        ``analysis_extra`` default to 0)."""
        return cls(config["channels"], config["width"], config["blocks"], config.get("detail", 0),
                   config.get("z_channels", 0), config.get("hyper_width", 64), config.get("qualities"),
                   config.get("default_quality"), config.get("gains_only", False), config.get("free_preset", False),
                   config.get("analysis_extra", 0))

    def unrounded(self, x):
        """The decoded image of ``x`` (NHWC in [0, 1]) from its latents *unrounded*, at the top of the quality grid
        (where the gain g and the inverse gain cancel but for its learned correction): no quantisation at all,
        so the ceiling that no quality of the model can pass (``export.ceiling``)."""
        y = tf.cast(self.analysis(x), tf.float32)
        if self.config["qualities"]:
            _, g, inverse = self.gain_units.gain(tf.constant(len(self.config["qualities"]) - 1))
            y = y * g * inverse
        return tf.clip_by_value(tf.cast(self.synthesis(y), tf.float32), 0.0, 1.0)

    def build_for(self, size=64):
        """Create all variables by running a dummy image through both halves (and the hyperprior)."""
        y = self.analysis(tf.zeros([1, size, size, 3]))
        self.synthesis(tf.cast(y, tf.float32))
        if self.has_hyperprior:
            z = self.hyper_analysis(y)
            self.hyper_synthesis(tf.round(z))
            self.z_prior.build()
        if self.config["qualities"]:
            self.gain_units.build()
        self.built = True  # Keras does not mark a container of called sub-models as built
        return self

    def parameter_counts(self):
        count = lambda m: int(sum(int(tf.size(v)) for v in m.trainable_weights))
        counts = {"encoder": count(self.analysis), "decoder": count(self.synthesis)}
        if self.has_hyperprior:
            counts["hyper_encoder"] = count(self.hyper_analysis)
            counts["hyper_decoder"] = count(self.hyper_synthesis) + count(self.z_prior)
        if self.config["qualities"]:
            counts["gains"] = count(self.gain_units)
        return counts
