"""Encoder-side refinement: better latents for this one image, found by gradient descent.

The encoder network is an *amortised* guess: one fast pass, trained to do
well on average.  For a given image, better latents usually exist, and the
decoder can tell us which way they lie (Campos et al. 2019, "Content adaptive
optimization for neural image compression"; Yang et al. 2020).  Refinement
starts from the encoder's float latents and takes a few Adam steps on the
training objective of ``export.train``::

    J = MSE (0..255 scale) + lambda * bits per pixel

- MSE and its gradient come from ``decoder_gradient.onnx``, evaluated at the
  rounded latents (straight-through rounding, as in training);
- bits per pixel is the entropy of each channel's histogram (what the FSE
  coder pays per channel, to first order); its gradient comes from the soft
  histogram of ``export.quantizer``.

The step size decays linearly to 0, and the symbols with the lowest J seen
(hard rounding, hard histograms) are returned: the encoder's own symbols are
the first candidate, so refinement never returns a worse J than plain
encoding.  Only the encoder side changes: files stay standard and decode
with the same decoder, at the same speed.  It costs about one decoder
forward and backward pass per step (``benchmarks.speed``).
"""
import numpy as np

ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-7


def refine_symbols(model, rgb, iterations):
    """Symbols (uint8, C x h x w) for a uint8 RGB image whose sides are multiples of the model's stride."""
    latents = model.latents(rgb)
    params = model.refine_parameters()
    lam, learning_rate = float(params["lambda"]), float(params["learning_rate"])
    lo, size = model.codebook_min, model.codebook_size
    pixels_per_latent = model.stride ** 2
    samples = rgb.size  # pixels x 3 colour channels: the MSE denominator
    y = latents.astype(np.float32)
    adam = _Adam(y.shape)
    best_cost, best = np.inf, None
    for step in range(iterations + 1):
        q = np.rint(y)
        sse, distortion_gradient = model.squared_error_and_gradient(q, rgb)
        cost = sse / samples + lam * hard_bits(q, lo, size) / pixels_per_latent
        if cost < best_cost:
            best_cost, best = cost, q
        if step == iterations:
            break
        _, rate_gradient = soft_bits(y, lo, size)
        gradient = distortion_gradient / samples + lam * rate_gradient / pixels_per_latent
        y = np.clip(y - adam.step(gradient, learning_rate * (1.0 - step / iterations)), lo, lo + size - 1)
    return (best - lo).astype(np.uint8)


def hard_bits(q, lo, size):
    """Sum over channels of the entropy (bits per symbol) of each channel's histogram of integer values."""
    channels = q.shape[0]
    index = (q.reshape(channels, -1) - lo).astype(np.int64) + size * np.arange(channels)[:, None]
    counts = np.bincount(index.ravel(), minlength=channels * size).reshape(channels, size)
    p = counts / counts.sum(axis=1, keepdims=True)
    return float(-(p * np.log2(np.where(p > 0, p, 1.0))).sum())


def soft_bits(y, lo, size):
    """The same sum for the soft histogram of float latents, and its gradient with respect to ``y``.

    Each value spreads its unit mass over the two nearest codebook entries
    (triangular kernel), as ``export.quantizer.Codebook.soft_histogram``.
    Moving a value from entry k towards k+1 changes the entropy by
    -(log2 p[k+1] - log2 p[k]) / n per unit, which is the gradient.
    """
    channels = y.shape[0]
    flat = y.reshape(channels, -1)
    n = flat.shape[1]
    left = np.minimum(np.floor(flat), lo + size - 2)
    frac = flat - left
    index = (left - lo).astype(np.int64) + size * np.arange(channels)[:, None]
    counts = (np.bincount(index.ravel(), (1.0 - frac).ravel(), channels * size)
              + np.bincount(index.ravel() + 1, frac.ravel(), channels * size))
    p = counts / n
    log_p = np.log2(np.maximum(p, 1e-12))
    bits = float(-(p * log_p).sum())
    gradient = -(log_p[index + 1] - log_p[index]) / n
    return bits, gradient.reshape(y.shape).astype(np.float32)


class _Adam:
    """Adam (Kingma & Ba) on one array."""

    def __init__(self, shape):
        self.m = np.zeros(shape, np.float32)
        self.v = np.zeros(shape, np.float32)
        self.t = 0

    def step(self, gradient, learning_rate):
        b1, b2 = ADAM_BETAS
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * gradient
        self.v = b2 * self.v + (1 - b2) * gradient * gradient
        m_hat = self.m / (1 - b1 ** self.t)
        v_hat = self.v / (1 - b2 ** self.t)
        return learning_rate * m_hat / (np.sqrt(v_hat) + ADAM_EPSILON)
