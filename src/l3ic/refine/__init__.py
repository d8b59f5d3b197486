"""Encoder-side refinement: better latents for this one image, found by gradient descent.

The encoder network is an *amortised* guess: one fast pass, trained to do
well on average.  For a given image, better latents usually exist, and the
decoder can tell us which way they lie (Campos et al. 2019, "Content adaptive
optimization for neural image compression").  Refinement starts from the
encoder's float latents and takes a few Adam steps on the training objective
of ``export.train``::

    J = MSE (0..255 scale) + lambda * bits per pixel

- MSE and its gradient come from ``decoder_gradient.onnx``.  Rounding has no
  useful gradient, so each step decodes a *stochastic soft rounding* of the
  latents (Yang et al. 2020, "Improving inference for neural image
  compression", stochastic Gumbel annealing): every value sits between its
  two nearest integers with a random, differentiable weight that hardens to
  a plain rounding as the temperature falls.  On held-out training images
  this found 24 % fewer bits at equal PSNR in 30 steps, against 15 % for the
  straight-through rounding of training.
- bits per pixel, for a format-3 model, is the code length of each latent
  under the static table its element is coded with (the table and the base it
  is coded relative to come from the hyperprior, whose side information ẑ
  stays as the encoder chose it); between integers it is interpolated linearly, which
  gives its gradient.  For a format-2 model it is the entropy of each
  channel's histogram (what the FSE coder pays per channel, to first order),
  with the gradient of the soft histogram of ``export.quantizer``.

Refinement keeps the rate: the file of a refined image is as large as the
plain encode's, and better.  The rate weight lambda starts at the model's
(``refine`` in its manifest; for a model with gains, scaled to the quality's
``l3ic.quality.lambda_of``), and after every step it is raised or lowered
by the relative excess of the hard rounding's rate over the plain encode's
(a multiplicative dual ascent).  Every CHECK_EVERY steps the hard rounding
is entropy-coded as the file will code it, the rate it steers to is corrected
by the ratio of the plain file's size to this one's (the coder's adaptive
chunks need not follow the code length), and a rounding that fits is scored.  The symbols
returned are those of least squared error among the candidates coded in at
most the plain encode's bytes and at least (1 - SIZE_BAND) of them, or, if a
smaller candidate is better than all of those, that one; the encoder's own
symbols are the first candidate, so refinement never returns a worse image
or a larger file than plain encoding.  The rate control leaves the last
candidates a few per cent above or below the size, so at the end more
candidates are made to land in the band: the final latents rounded with a
dead zone whose width is bisected, and the best ones and the last one over
the size moved by one-step moves, twice (``l3ic.refine.descent``): elements
step by one where that lowers squared error + weight * bits most, to second
order, with the weight bisected until the coded file fits.  The random draws are
seeded, so the same image always gives the same file.  Only the encoder side
changes: files stay standard and decode with the same decoder, at the same
speed.  It costs about one decoder forward and backward pass per step
(``benchmarks.speed``).

A large image is refined in windows (``Tiling.refine_block`` cells plus the
encoder's halo, ``l3ic.analysis.windows``), each keeping its own size.  The
file is then checked as a whole, once: a window's candidates were scored in
the window, whose halo the file replaces with the neighbours' refined
latents, so ``refined_file`` keeps the plain file where the refined one is
larger or decodes worse.  Where the windows are the plain analysis's (an
image of one block), their encoder outputs serve both files.

The package: this module chooses (``refined_file``, ``refined_latents``,
``refine_window``); ``l3ic.refine.descent`` searches; ``l3ic.refine.rate``
measures the rate of each format.
"""
import numpy as np

from l3ic import analysis, synthesis
from l3ic.quality import QUALITY_SCALE, lambda_of
from l3ic.refine.descent import Distortion, descend
from l3ic.refine.rate import HistogramRate, TableRate


def refined_file(codec, picture, header, steps):
    """The file of a picture with refined latents, or the plain file where that is no larger and decodes better.

    Args:
        codec: the ``l3ic.codec.Codec`` to code with (its model, tiling, ``write``, ``parse``, ``analyse``).
        picture: the ``l3ic.image.Picture``; header: its ``container.Header`` (``Codec.header_for``).
        steps: refinement steps per window (>= 1).
    Returns:
        bytes: the refined file unless the plain one is smaller or decodes with a smaller squared error.
    """
    refined, plain = _refined(codec.model, codec.tiling, picture.rgb(), header, steps)
    plain = plain or codec.analyse(picture.rgb(), header)
    data = codec.write(picture, header, refined)
    plain_data = codec.write(picture, header, codec.quantise(plain, header))

    def squared_error(d):
        parsed, coder = codec.parse(d)
        return float(np.sum((synthesis.decoded(parsed, coder, codec.tiling).astype(np.float64) - picture.pixels) ** 2))
    return data if len(data) <= len(plain_data) and squared_error(data) <= squared_error(plain_data) else plain_data


def refined_latents(model, tiling, rgb, header, steps):
    """The ``l3ic.analysis.Latents`` of an image refined by ``steps``, window by window (``refine_window``)."""
    return _refined(model, tiling, rgb, header, steps)[0]


def _refined(model, tiling, rgb, header, steps):
    """(refined ``Latents``, the plain ``Analysis`` where the refinement's windows are the plain analysis's, else
    None): the windows' encoder outputs then serve both."""
    blocks = tiling.encode_blocks(header, refine=True)
    shared = blocks == tiling.encode_blocks(header)
    gain = model.gain_of(header)
    refined, plain = analysis.Assembly(header), analysis.Assembly(header)
    for window in analysis.windows(model, rgb, header, blocks, tiling.encode_halo):
        refined.add(window, refine_window(model, window, steps, gain, header.mean_shifted))
        if shared:
            plain.add(window, window.outputs)
    return analysis.Latents(*refined.result()), analysis.Analysis(*plain.result()) if shared else None


def refine_window(model, window, steps, gain=None, shifted=False):
    """ŷ and ẑ of one ``l3ic.analysis.Window``, refined by ``steps``: (values, ẑ or None) as in ``Latents``.

    The size is kept on the window's core alone, since the halo overlaps the
    neighbouring windows and is thrown away.  Format 3 refines the residuals
    ŷ - origin under the tables the hyperprior gives the encoder's ẑ (which stays
    as the encoder chose it; with ``shifted`` the origin is the mean itself,
    ``container.FLAG_MEAN_SHIFT``), with ``gain`` (a ``l3ic.hyperprior.Gain``
    or None) applied as a file of that quality codes it, and the rate weight
    scaled to the quality (``l3ic.quality.lambda_of``); format 2 the codebook
    values.
    """
    kept = (slice(None),) + tuple(slice(a, a + n) for a, n in window.core)
    lo, size = model.codebook_min, model.codebook_size
    lam = float(model.refine_parameters()["lambda"])
    if not model.has_hyperprior:
        y = model.latents(window.rgb).astype(np.float32)
        return descend(Distortion(model, window.rgb), HistogramRate(kept, lo, size), y, lam, steps), None
    y, z = window.outputs
    em = model.entropy_model
    if gain is not None:
        y = gain.apply(y)
        lam *= lambda_of(gain.quality / QUALITY_SCALE) / lambda_of(em.default_quality / QUALITY_SCALE)
    origin, index = em.tile_origins(z, (0, 0) + y.shape[1:], gain, shifted)
    index = index.astype(np.int64)
    rate = TableRate(em, y, origin, index, kept, lo, size, shifted)
    residual = np.clip(y - origin, *rate.bounds)  # r = ŷ - origin must be a symbol value (and, plain, ŷ a codebook value)
    return origin + descend(Distortion(model, window.rgb, origin, gain), rate, residual, lam, steps), z
