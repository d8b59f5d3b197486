"""Analysis, the first stage of encoding: an image through the encoder network to the latents a file codes.

``header_for`` decides what the file says of the image (geometry, margin,
tile grid, model identity, quality); ``analyse`` runs the encoder network
(``Model.run_encoder``) block by block, each block a ``Window`` with
``Tiling.encode_halo`` latent cells of image context around it, and pastes
the blocks' cores together into an ``Analysis``: the latents y and, for a
format-3 model, the hyperprior's side information ẑ.  The context makes a
blockwise encode match a whole-image encode (up to float rounding), while
memory stays bounded by the block size.  ``Analysis.quantised`` then applies
the gain of the file's quality and rounds: ``Latents``, the integers ŷ that
the entropy coder (``l3ic.entropy``) codes.  Refinement (``l3ic.refine``)
replaces that rounding with a search, window by window.
"""
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import numpy as np

from l3ic import container, progress
from l3ic.tiling import MARGIN, canvas, margins, pad_to, with_halo

ANALYSIS_REACH = 8  # latent cells from a border within which the image's padding changes the latents (measured:
# padding to 32 instead of 8 px changes none further in), and the context that reproduces them exactly


@dataclass(frozen=True, eq=False)
class Latents:
    """What a file codes: ``values`` ŷ, float32 integers of the codebook (C, latent_h, latent_w), gained at the
    file's quality; ``z`` the ẑ symbols, uint8 (Zc, ceil(latent_h / f), ceil(latent_w / f)) for hyper stride f
    (format 3; None in format 2)."""

    values: np.ndarray
    z: Optional[np.ndarray] = None
    origins: Optional[tuple] = None  # (origin, table index) of the whole latent where quantisation computed them
    # (``EntropyModel.tile_origins``): the entropy coder takes each tile's from them instead of again from ẑ


@dataclass(frozen=True, eq=False)
class Analysis:
    """The encoder network's outputs for a whole image: ``latents`` float32 (C, latent_h, latent_w), y before the
    gain and rounding (format 3) or the codebook values the network rounded to (format 2); ``z`` as in ``Latents``.
    A plain analysis is the same at every quality: only ``quantised`` depends on it."""

    latents: np.ndarray
    z: Optional[np.ndarray] = None

    def quantised(self, model, gain=None, shifted=False):
        """The ``Latents`` a file of ``model`` codes: y times ``gain`` (a ``l3ic.hyperprior.Gain``, or None),
        rounded to the codebook, or with ``shifted`` about the hyperprior's mean (``rounded_about``; format 2:
        the network's own rounding)."""
        if self.z is None:
            return Latents(self.latents)
        y = self.latents if gain is None else gain.apply(self.latents)
        if not shifted:
            return Latents(rounded(y, model.codebook_min, model.codebook_size), self.z)
        origin, index = model.entropy_model.tile_origins(self.z, (0, 0) + y.shape[1:], gain, shifted)
        values = rounded_about(y, origin, model.codebook_min, model.codebook_size, shifted)[0]
        return Latents(values, self.z, (origin, index))


def rounded(latents, codebook_min, codebook_size):
    """ŷ: latents rounded to the nearest integer of the codebook ``codebook_min``.. (float32 integers)."""
    return np.rint(np.clip(latents.astype(np.float32), codebook_min, codebook_min + codebook_size - 1))


def rounded_about(latents, origin, codebook_min, codebook_size, shifted):
    """(ŷ, s = ŷ - origin) of float latents, s within the codebook's values (what a symbol codes).

    Plain: ŷ is rounded to the codebook (``rounded``), and s clipped to the
    symbols' reach (the coder checks that ŷ is reached).  Mean-shifted
    (``container.FLAG_MEAN_SHIFT``): s is the latent minus the hyperprior's
    mean ``origin``, rounded, and ŷ = origin + s is as fine as the mean.
    """
    lo, hi = codebook_min, codebook_min + codebook_size - 1
    if shifted:
        steps = np.clip(np.rint(latents.astype(np.float32) - origin), lo, hi)
        return origin + steps, steps
    values = rounded(latents, codebook_min, codebook_size)
    return values, np.clip(values - origin, lo, hi)


def header_for(model, picture, tiling, quality, lossless=False):
    """The file header of a picture (``l3ic.image.Picture``) coded by ``model`` with ``tiling``.

    Args:
        quality: the quality in hundredths (``Model.quality_units``), or None for a model without gains.
        lossless: the geometry of a lossless file (no margin).
    Returns:
        a ``container.Header``: image size and mode, model identity, latent size (with its margin), tile grid,
        the hyperprior's fields (format 3) and the quality field.
    """
    margin_y, margin_x = margins(picture.height, picture.width, MARGIN if model.has_hyperprior and not lossless else 0)
    latent_h = -(-picture.height // model.stride) + 2 * margin_y
    latent_w = -(-picture.width // model.stride) + 2 * margin_x
    tile_h, tile_w = tiling.tile_shape(latent_h, latent_w)
    hyper = {}
    if model.has_hyperprior:
        em = model.entropy_model
        tiling.check_hyper_stride(em.hyper_stride)
        hyper = dict(z_channels=em.z_channels, hyper_stride=em.hyper_stride)
    flags = ((0 if quality is None else container.FLAG_QUALITY) | (container.FLAG_MARGIN if margin_y or margin_x else 0)
             | (container.FLAG_MEAN_SHIFT if model.has_hyperprior else 0))
    return container.Header(
        width=picture.width, height=picture.height, mode=picture.mode, model_name=model.name,
        decoder_hash=model.decoder_hash, codebook_size=model.codebook_size, codebook_min=model.codebook_min,
        channels=model.channels, stride=model.stride, latent_h=latent_h, latent_w=latent_w, tile_h=tile_h,
        tile_w=tile_w, flags=flags, quality=quality or 0, **hyper)


class Window:
    """One block of an image and its context, as the encoder network runs on it.

    ``rgb``: the window's pixels, padded to whole ẑ cells, or at the bottom
    or right border of a format-3 image to the stride only (``outputs`` then
    puts ẑ on its grid); ``core``: ((cy, ch), (cx, cw)), the block within the
    window in latent cells; ``origin``: (y, x) of the window in the latent,
    None when the window is the whole image.
    """

    def __init__(self, model, rgb, core, origin, cell):
        s = model.stride
        self.model, self.core, self.origin, self.cell = model, core, origin, cell
        self.border = model.has_hyperprior and bool(rgb.shape[0] % cell or rgb.shape[1] % cell)
        self.rgb = pad_to(rgb, s if self.border else cell)

    @cached_property
    def outputs(self):
        """(latents, ẑ or None) of the window, as in ``Analysis``; the window's ẑ cells are the image's."""
        if not self.border:
            return self.model.run_encoder(self.rgb)
        s, f = self.model.stride, self.cell // self.model.stride
        y, z = _on_grid(self.model, self.rgb, self.cell)
        h, w = self.rgb.shape[0] // s, self.rgb.shape[1] // s
        return y[:, :h, :w], z[:, :-(-h // f), :-(-w // f)]


def windows(model, rgb, header, blocks, halo):
    """Yield the ``Window`` of each block (latent rectangles) of an image, with ``halo`` latent cells of context,
    one at a time: a window holds a padded copy of its pixels."""
    s = model.stride
    rgb = canvas(rgb, header)
    cell = s * (header.hyper_stride if model.has_hyperprior else 1)  # a ẑ cell in pixels
    if len(blocks) == 1:
        yield Window(model, rgb, ((0, -(-rgb.shape[0] // s)), (0, -(-rgb.shape[1] // s))), None, cell)
        return
    for block in blocks:
        core, ((ya, yb), (xa, xb)) = with_halo(header, block, halo)
        yield Window(model, rgb[ya * s:yb * s, xa * s:xb * s], core, (ya, xa), cell)


class Assembly:
    """The whole image's (latents, ẑ or None), pasted together from each window's: ``add`` them one by one, then
    take the ``result``.  Block corners and the encoder's halo are whole ẑ cells, so ẑ pastes like the latents."""

    def __init__(self, header):
        self.header = header
        self.factors = (1, header.hyper_stride or 1)
        self.whole = None

    def add(self, window, outputs):
        """Paste the core of one ``Window``'s (latents, ẑ or None)."""
        h = self.header
        if window.origin is None:  # the whole image
            self.whole = [None if o is None else np.ascontiguousarray(o[:, :-(-h.latent_h // f), :-(-h.latent_w // f)])
                          for o, f in zip(outputs, self.factors)]
            return
        if self.whole is None:
            self.whole = [None if o is None else np.empty((o.shape[0], -(-h.latent_h // f), -(-h.latent_w // f)), o.dtype)
                          for o, f in zip(outputs, self.factors)]
        (cy, ch), (cx, cw) = window.core
        ya, xa = window.origin
        for target, out, f in zip(self.whole, outputs, self.factors):
            if out is not None:
                target[:, (ya + cy) // f:-(-(ya + cy + ch) // f), (xa + cx) // f:-(-(xa + cx + cw) // f)] = \
                    out[:, cy // f:-(-(cy + ch) // f), cx // f:-(-(cx + cw) // f)]

    def result(self):
        """(latents, ẑ or None) of the whole image."""
        return tuple(self.whole)


def analyse(model, rgb, header, tiling):
    """Run the encoder network on an image, block by block.

    Args:
        model: the ``l3ic.model.Model``.
        rgb: uint8 (H, W, 3), the image of ``header`` (``header_for``).
        tiling: the ``l3ic.tiling.Tiling``: the blocks are its ``encode_blocks`` (the tiles), with its
            ``encode_halo`` of context.
    Returns:
        the ``Analysis`` of the whole image.
    """
    blocks = tiling.encode_blocks(header)
    whole = Assembly(header)
    for done, window in enumerate(windows(model, rgb, header, blocks, tiling.encode_halo)):
        if len(blocks) > 1:
            progress.step("analysis", done, len(blocks))
        whole.add(window, window.outputs)
    return Analysis(*whole.result())


def _on_grid(model, rgb, cell):
    """The encoder's (latents, ẑ) for an image (a window) whose sides are multiples of the stride but not of
    ``cell`` (a whole ẑ cell in pixels): ẑ on its grid, the latents as the image padded to the stride gives them.

    A stride-2 convolution's "same" padding depends on the parity of its
    input, so the hyper-analysis samples ẑ on the grid the hyper-synthesis
    reads (ẑ cell j over latent cells fj..fj+f-1) only for an input of
    whole ẑ cells; padded to the stride only, ẑ fell off that grid and
    files were 5-18 % larger.  But the replicated rows and columns change
    the latents within ``ANALYSIS_REACH`` cells of the bottom and right
    borders, which the decoder sees next to its own zero padding (-0.7 dB
    on 260 px crops).  So those border cells are computed again, from a
    strip of the image padded to the stride with ``ANALYSIS_REACH`` cells
    of context: the latents are exactly the stride-padded ones.
    """
    s, reach = model.stride, ANALYSIS_REACH
    y, z = model.run_encoder(pad_to(rgb, cell))
    h, w = -(-rgb.shape[0] // s), -(-rgb.shape[1] // s)
    if rgb.shape[0] % cell:
        top = max(0, h - 2 * reach)
        strip = model.run_encoder(pad_to(rgb[top * s:], s))[0]
        k = min(h, reach)
        y[:, h - k:h, :w] = strip[:, h - k - top:, :w]
    if rgb.shape[1] % cell:
        left = max(0, w - 2 * reach)
        strip = model.run_encoder(pad_to(rgb[:, left * s:], s))[0]
        k = min(w, reach)
        y[:, :h, w - k:w] = strip[:, :h, w - k - left:]
    return y, z
