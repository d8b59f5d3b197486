"""The training-time quantiser and rate estimate (export extra: needs TensorFlow)."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from export.quantizer import Codebook, empirical_bits_per_symbol  # noqa: E402


def test_hard_values_lie_in_the_codebook():
    cb = Codebook(-15, 32)
    y = tf.constant(np.linspace(-40, 40, 1001), tf.float32)
    hard = cb.hard(y).numpy()
    assert set(np.unique(hard)) <= set(cb.values)
    assert hard.min() == -15 and hard.max() == 16
    symbols = cb.to_symbols(y).numpy()
    assert symbols.dtype == np.uint8 and symbols.max() == 31
    np.testing.assert_array_equal(cb.from_symbols(symbols).numpy(), hard)


def test_straight_through_passes_gradients_inside_the_range():
    cb = Codebook(-15, 32)
    y = tf.Variable([0.3, -2.7, 5.5, 40.0])
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(cb.straight_through(y) * tf.constant([1.0, 2.0, 3.0, 4.0]))
    grad = tape.gradient(out, y).numpy()
    np.testing.assert_allclose(grad[:3], [1.0, 2.0, 3.0])
    assert grad[3] == 0.0  # clipped at the top of the codebook


def test_rate_has_gradients():
    cb = Codebook(-15, 32)
    y = tf.Variable(np.random.default_rng(0).normal(0, 3, (2, 8, 8, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        bpp = cb.bits_per_pixel(y, 8)
    grad = tape.gradient(bpp, y).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


@pytest.mark.parametrize("scale", [0.7, 2.0, 6.0])
def test_soft_entropy_matches_hard_entropy(scale):
    cb = Codebook(-15, 32)
    rng = np.random.default_rng(1)
    y = tf.constant(rng.laplace(0, scale, (4, 32, 32, 3)).astype(np.float32))
    soft = cb.bits_per_symbol(y).numpy()
    hard = empirical_bits_per_symbol(cb.to_symbols(y), 32).numpy()
    # the soft histogram is the hard one of dithered values: slightly smoother, so slightly higher entropy
    np.testing.assert_allclose(soft, hard, atol=0.25)
    assert np.all(soft >= hard - 0.02)
