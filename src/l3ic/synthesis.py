"""Synthesis, the last stage of decoding: latent values through the decoder network to pixels.

``latent_values`` takes what the entropy coder decodes (ŷ, ``l3ic.entropy``)
to the decoder network's input (times the inverse gain of the file's
quality); ``synthesise`` runs the decoder network block by block, each block
with ``Tiling.halo`` latent cells of context, and pastes the blocks' pixels
together.  ``decoded`` is the whole decode of a parsed file, for the image or
a region of it: only the tiles under the region are entropy-decoded and only
the blocks inside it run through the network.  A lossless file
(``l3ic.lossless``) has no latent: its pixels are unpacked instead.
"""
import numpy as np

from l3ic import container, lossless, progress
from l3ic import image as images
from l3ic.errors import L3icError, ModelError
from l3ic.tiling import Tiling, blocks as tile_blocks, checked_region, on_canvas, tiles_under, with_halo


def latent_values(parsed, coder, channels=None, tiles=None):
    """Entropy-decode the chosen channels of the chosen tiles into what the decoder network takes.

    Args:
        parsed: the file (``container.L3icFile``).
        coder: its model's entropy coder (``l3ic.entropy.coder_for``).
        channels, tiles: as ``coder.decode`` takes them (default all).
    Returns:
        float32 (C, latent_h, latent_w): ŷ, times the inverse gain of the file's quality field if it has one.
    """
    values = coder.decode(parsed, channels, tiles)
    gain = coder.model.gain_of(parsed.header)
    return values if gain is None else gain.invert(values)


def synthesise(model, values, header, region=None, blocks=None, tiling=None):
    """Run the decoder network on latent values block by block, each with ``tiling.halo`` cells of latent context.

    Args:
        model: the ``l3ic.model.Model`` that decodes the file.
        values: the decoder's input, float32 (C, latent_h, latent_w) (``latent_values``).
        header: the file's ``container.Header``.
        region: (x, y, w, h) in the decoded latent's pixels, which are the image's shifted by its margin
            (``l3ic.tiling.on_canvas``); default the whole image.
        blocks: the latent rectangles to run (default those under the region, ``l3ic.tiling.blocks``).
        tiling: the ``l3ic.tiling.Tiling`` whose ``halo`` to use (default ``Tiling()``).
    Returns:
        uint8 pixels of the region: (h, w, 3), or (h, w) for a gray image.
    """
    region = region or on_canvas(header, checked_region(None, header))
    blocks = blocks if blocks is not None else tile_blocks(header, region)
    halo = (Tiling() if tiling is None else tiling).halo
    s = model.stride
    rx, ry, rw, rh = region
    rgb = np.empty((rh, rw, 3), np.uint8)
    for done, block in enumerate(blocks):
        if len(blocks) > 1:
            progress.step("synthesis", done, len(blocks))
        ((cy, ch), (cx, cw)), ((ya, yb), (xa, xb)) = with_halo(header, block, halo)
        out = images.to_uint8(model.run_decoder(values[:, ya:yb, xa:xb]))
        # pixels of the block's core, clipped to the region
        y0, x0 = max((ya + cy) * s, ry), max((xa + cx) * s, rx)
        y1, x1 = min((ya + cy + ch) * s, ry + rh), min((xa + cx + cw) * s, rx + rw)
        rgb[y0 - ry:y1 - ry, x0 - rx:x1 - rx] = out[y0 - ya * s:y1 - ya * s, x0 - xa * s:x1 - xa * s]
    if header.mode == "L":
        return np.rint(rgb.mean(axis=2)).astype(np.uint8)
    return rgb


def decoded(parsed, coder, tiling, channels=None, region=None):
    """The pixels of a parsed file, or of a region of it.

    Args:
        coder: the entropy coder of the model that decodes the file (None for a lossless file).
        tiling: the ``l3ic.tiling.Tiling`` whose ``halo`` the decoder runs with.
        channels: decode only these latent channels (the others: the hyperprior's guess, or 0 in format 2).
        region: (x, y, w, h) of the image, in pixels, checked (``l3ic.tiling.checked_region``); default all.
    Returns:
        uint8 pixels of the region, (h, w, 3) RGB or (h, w) gray, without the alpha plane (side data).
    """
    h = parsed.header
    x, y, w, hh = region = checked_region(region, h)
    if h.flags & container.FLAG_LOSSLESS:  # a tiny image stored as pixels: no model involved
        pixels = lossless.unpack(parsed.side_record(container.LOSSLESS), h.height, h.width, h.mode)
        return np.ascontiguousarray(pixels[y:y + hh, x:x + w])
    canvas = on_canvas(h, region)
    blocks = tile_blocks(h, canvas)
    values = latent_values(parsed, coder, channels, tiles_under(h, blocks, tiling.halo))
    return synthesise(coder.model, values, h, canvas, blocks, tiling)


def cropped_side_data(side_data, header, region):
    """Side data for a region (x, y, w, h) of the image (default all): the alpha plane is cropped like the pixels."""
    x, y, w, h = checked_region(region, header)
    if images.ALPHA not in side_data or (w, h) == (header.width, header.height):
        return side_data
    alpha = np.frombuffer(side_data[images.ALPHA], np.uint8)
    if alpha.size != header.width * header.height:
        return side_data  # to_pil reports the damage
    cropped = dict(side_data)
    cropped[images.ALPHA] = np.ascontiguousarray(alpha.reshape(header.height, header.width)[y:y + h, x:x + w]).tobytes()
    return cropped


def checked_latents(latents, model):
    """Latent values a user gives ``model``'s decoder, as float32 (C, h, w).

    Raises:
        ModelError: for the wrong number of channels; L3icError for anything else the decoder cannot take.
    """
    latents = np.asarray(latents)
    if latents.dtype.kind not in "iuf":
        raise L3icError("latents must be an integer or float array, got dtype %s" % latents.dtype)
    if latents.ndim != 3 or min(latents.shape) < 1:
        raise L3icError("latents must have shape (channels, h, w) with h, w >= 1, got %s" % (latents.shape,))
    if latents.shape[0] != model.channels:
        raise ModelError("latents have %d channels, model %r takes %d" % (latents.shape[0], model.name, model.channels))
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused just below
        values = latents.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise L3icError("latent values must be finite float32 numbers")
    if model.has_hyperprior:
        return values
    lo, hi = model.codebook_min, model.codebook_min + model.codebook_size - 1
    if not (np.all(values == np.rint(values)) and lo <= values.min() and values.max() <= hi):
        raise L3icError("latent values of a format-2 model must be integers of the codebook %d..%d" % (lo, hi))
    return values
