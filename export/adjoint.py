"""The decoder's gradient, written out with forward ops so that it exports to plain ONNX.

Encoder-side refinement (``l3ic.refine``) needs d(distortion)/d(latents)
at inference time, without TensorFlow.  ``tf.GradientTape`` graphs do not
export (tf2onnx has no ``ShapeN``/``LeakyReluGrad``), so this module spells
out the vector-Jacobian product of ``export.model.Synthesis`` by hand: the
adjoint of a stride-1 "same" convolution with an odd kernel is a convolution
with the kernel flipped in space and its in/out channels swapped; the adjoint
of depth-to-space is space-to-depth; a leaky ReLU multiplies the gradient by
1 or its slope; a residual block adds its branch's adjoint to the skip.
Everything becomes ``Conv``, ``SpaceToDepth``, ``Mul``, ``Add`` and friends.
``tests/test_export.py`` checks it against ``tf.GradientTape``.
"""
import tensorflow as tf

from export.model import LEAK


def _lrelu_slope(pre):
    """d leaky_relu(pre) / d pre: 1 where pre > 0, else LEAK."""
    return LEAK + (1.0 - LEAK) * tf.cast(pre > 0, tf.float32)


def _conv_adjoint(g, layer):
    """The transpose of ``layer`` (a stride-1, "same" Conv2D) applied to g; the bias drops out.

    ``conv2d_transpose`` with the layer's own kernel exports to ONNX
    ``ConvTranspose`` sharing the ``Conv``'s weight tensor, so the weights are
    stored once in the file.
    """
    kernel = tf.cast(layer.kernel, tf.float32)
    shape = tf.concat([tf.shape(g)[:3], tf.shape(kernel)[2:3]], 0)
    return tf.nn.conv2d_transpose(g, kernel, shape, 1, "SAME")


class _Tape:
    """Forward pass of a Synthesis that keeps the pre-activations its adjoint needs."""

    def __init__(self, synthesis):
        self.s = synthesis

    def block(self, block, h, saved):
        a = block.conv1(h)
        saved.append(a)
        return h + block.conv2(tf.nn.leaky_relu(a, LEAK))

    def forward(self, q):
        s, self.saved = self.s, {"blocks": [], "detail4": [], "detail2": []}
        h = s.expand(q)
        for block in s.blocks:
            h = self.block(block, h, self.saved["blocks"])
        self.p0 = h
        self.p1 = tf.nn.depth_to_space(s.up1(tf.nn.leaky_relu(h, LEAK)), 2)
        h = tf.nn.leaky_relu(self.p1, LEAK)
        for block in s.detail4:
            h = self.block(block, h, self.saved["detail4"])
        self.p2 = tf.nn.depth_to_space(s.up2(h), 2)
        h = tf.nn.leaky_relu(self.p2, LEAK)
        for block in s.detail2:
            h = self.block(block, h, self.saved["detail2"])
        return tf.nn.depth_to_space(s.up3(h), 2) + 0.5

    @staticmethod
    def block_adjoint(block, g, a):
        return g + _conv_adjoint(_lrelu_slope(a) * _conv_adjoint(g, block.conv2), block.conv1)

    def backward(self, g):
        s = self.s
        g = _conv_adjoint(tf.nn.space_to_depth(g, 2), s.up3)
        for block, a in reversed(list(zip(s.detail2, self.saved["detail2"]))):
            g = self.block_adjoint(block, g, a)
        g = _conv_adjoint(tf.nn.space_to_depth(g * _lrelu_slope(self.p2), 2), s.up2)
        for block, a in reversed(list(zip(s.detail4, self.saved["detail4"]))):
            g = self.block_adjoint(block, g, a)
        g = _conv_adjoint(tf.nn.space_to_depth(g * _lrelu_slope(self.p1), 2), s.up1)
        g = g * _lrelu_slope(self.p0)
        for block, a in reversed(list(zip(s.blocks, self.saved["blocks"]))):
            g = self.block_adjoint(block, g, a)
        return _conv_adjoint(g, s.expand)


def squared_error_and_gradient(synthesis, q, x):
    """SSE on the 0..255 scale between the clipped decoder output and ``x``, and d SSE / d q.

    ``q``: codebook values (B, h, w, C) float32; ``x``: the image in [0, 1]
    (B, 8h, 8w, 3).  The decoder output is clipped to [0, 1] as the runtime
    does, so the gradient is zero where the clip is active.
    """
    tape = _Tape(synthesis)
    out = tape.forward(q)
    clipped = tf.clip_by_value(out, 0.0, 1.0)
    error = (clipped - x) * 255.0
    sse = tf.reduce_sum(tf.square(error))
    inside = tf.cast(out > 0.0, tf.float32) * tf.cast(out < 1.0, tf.float32)
    return sse, tape.backward(2.0 * 255.0 * error * inside)
