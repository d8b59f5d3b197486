"""Image-quality metrics of decoded images, in plain numpy: PSNR (``l3ic.image.psnr``) and MS-SSIM.

Used by ``l3ic.evaluate`` (a model's RD, recorded by ``export.to_onnx``) and every benchmark.

``ms_ssim`` follows ``tf.image.ssim_multiscale`` exactly (weights
0.0448/0.2856/0.3001/0.2363/0.1333, 11-tap Gaussian with sigma 1.5, valid
convolution, 2x2 average-pool downscaling with symmetric padding of odd sizes,
per-channel values averaged), so our numbers can be compared with published
ones; ``tests/test_metrics.py`` checks it against TensorFlow when installed.
"""
import numpy as np

from l3ic.image import psnr  # noqa: F401  (one PSNR for the runtime, the export and the benchmarks)

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE, FILTER_SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


def _gaussian():
    x = np.arange(FILTER_SIZE, dtype=np.float64) - (FILTER_SIZE - 1) / 2.0
    g = np.exp(-x * x / (2.0 * FILTER_SIGMA ** 2))
    return g / g.sum()


def _blur(x):
    """Separable Gaussian, 'valid' on both spatial axes of an (H, W, C) array."""
    g = _gaussian()
    n = FILTER_SIZE
    rows = sum(g[k] * x[k:x.shape[0] - n + 1 + k] for k in range(n))
    return sum(g[k] * rows[:, k:rows.shape[1] - n + 1 + k] for k in range(n))


def _ssim_terms(x, y, peak):
    """Per-channel mean SSIM and contrast-structure term at one scale."""
    c1, c2 = (K1 * peak) ** 2, (K2 * peak) ** 2
    mx, my = _blur(x), _blur(y)
    num0, den0 = 2.0 * mx * my, mx * mx + my * my
    luminance = (num0 + c1) / (den0 + c1)
    num1, den1 = 2.0 * _blur(x * y), _blur(x * x + y * y)
    cs = (num1 - num0 + c2) / (den1 - den0 + c2)
    return (luminance * cs).mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def _downscale(x):
    """2x2 average pooling; odd sizes are first padded symmetrically (as TensorFlow does)."""
    pad = ((0, x.shape[0] % 2), (0, x.shape[1] % 2), (0, 0))
    x = np.pad(x, pad, mode="symmetric")
    return (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4.0


def ms_ssim(a, b, peak=255.0):
    """MS-SSIM of two (H, W, C) or (H, W) images; None when smaller than 176 px (5 scales of 11 taps)."""
    x, y = (np.asarray(v, np.float64) for v in (a, b))
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    if min(x.shape[:2]) < (FILTER_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1:
        return None
    values = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim_terms(x, y, peak)
        last = scale == len(MS_SSIM_WEIGHTS) - 1
        values.append(np.maximum(ssim if last else cs, 0.0))
        if not last:
            x, y = _downscale(x), _downscale(y)
    per_channel = np.prod([v ** w for v, w in zip(values, MS_SSIM_WEIGHTS)], axis=0)
    return float(per_channel.mean())


def ms_ssim_db(value):
    """MS-SSIM on the usual dB scale, -10 log10(1 - MS-SSIM)."""
    return float(-10.0 * np.log10(max(1.0 - value, 1e-12)))
