"""The geometry of coding an image: pixels to latent cells, tiles, blocks and the context around them.

The latent of an image has one cell per ``stride`` x ``stride`` pixels, plus,
on an axis of at most ``SMALL_SIDE`` pixels, ``MARGIN`` cells of
edge-replicated image on both sides (``container.FLAG_MARGIN``).  A file codes
the latent tile by tile (the header records the grid); the networks run block
by block, each block with a halo of latent cells of context so that blocks
join as a whole-image run would.  Everything here is arithmetic on
rectangles: no model, no network, no file contents.

Rectangles are (y, x, h, w) in latent cells; regions of the image are
(x, y, width, height) in pixels, as users give them.
"""
from dataclasses import dataclass

import numpy as np

from l3ic.errors import L3icError
from l3ic.options import whole_number

# The default Tiling, in latent cells:
WHOLE_IMAGE_LATENT = 256  # latents up to 256 x 256 cells (2048 px at stride 8) are coded as one tile
TILE_LATENT = 128  # larger images: tiles of 128 x 128 latent cells, coded and run through the networks one by one
HALO = 12  # latent cells of context around a block the decoder runs on: more than its receptive field
ENCODE_HALO = 24  # the encoder's: its receptive field plus the hyper-analysis's, so that a window's latents and
# ẑ match a whole-image encode; a multiple of the hyper stride, so that a window's ẑ cells are the image's
REFINE_BLOCK = 80  # refinement works on blocks of at most 80 x 80 latent cells plus ENCODE_HALO:
# its backward pass holds ~1.3 KB per pixel, so this bounds its memory to ~1.4 GB at any image size
SMALL_SIDE = 16  # an image axis of at most this many pixels gets MARGIN latent cells of edge-replicated image on
MARGIN = 3  # both sides (container.FLAG_MARGIN): the networks' zero padding spoils the decoded colours within ~3
# cells of the latent's border (worst at the top-left corner), and a latent of a few cells is all border


@dataclass(frozen=True)
class Tiling:
    """How a codec cuts the latent into tiles and blocks, in latent cells (defaults above).

    A latent up to ``whole_image`` cells on both axes is one tile, a larger
    one is cut into ``tile`` x ``tile`` tiles (the file records the grid, so
    any tiling decodes any file).  The networks run block by block with
    ``halo`` (decoder) or ``encode_halo`` (encoder) cells of context, and
    refinement on blocks of at most ``refine_block`` cells: memory is bounded
    by the block size, and the halos make the blocks match a whole-image run.
    """

    whole_image: int = WHOLE_IMAGE_LATENT
    tile: int = TILE_LATENT
    halo: int = HALO
    encode_halo: int = ENCODE_HALO
    refine_block: int = REFINE_BLOCK

    def __post_init__(self):
        for name, least in (("whole_image", 1), ("tile", 1), ("halo", 0), ("encode_halo", 0), ("refine_block", 1)):
            whole_number(getattr(self, name), name, "latent cells", least)

    def tile_shape(self, latent_h, latent_w):
        """Tile size for a latent: the whole latent when small (fewer FSE tables, better rate), else fixed tiles."""
        if latent_h <= self.whole_image and latent_w <= self.whole_image:
            return latent_h, latent_w
        return min(self.tile, latent_h), min(self.tile, latent_w)

    def encode_blocks(self, header, refine=False):
        """Latent rectangles the encoder runs on: the tiles, cut into ``refine_block`` squares when refining."""
        tiles = [header.tile_rect(t) for t in range(header.n_tiles)]
        if not refine:
            return tiles
        b = self.refine_block
        return [(y + by, x + bx, min(b, h - by), min(b, w - bx))
                for y, x, h, w in tiles for by in range(0, h, b) for bx in range(0, w, b)]

    def check_hyper_stride(self, hyper_stride):
        """Format 3 samples ẑ on one grid: tiles, blocks and the encoder's halo must be whole ẑ cells."""
        for name in ("tile", "encode_halo", "refine_block"):
            if getattr(self, name) % hyper_stride:
                raise L3icError("%s %d is not a multiple of the model's hyper stride %d"
                                % (name, getattr(self, name), hyper_stride))


def margins(height, width, margin):
    """(y, x) latent cells of margin for an image: ``margin`` on an axis of at most SMALL_SIDE pixels, else 0."""
    return tuple(margin if side <= SMALL_SIDE else 0 for side in (height, width))


def with_halo(header, rect, halo):
    """For a rect, the latent window to run a network on and where the rect sits inside it.

    Returns ((cy, ch), (cx, cw)) = the rect's offset and size within the window,
    and ((ya, yb), (xa, xb)) = the window, clipped to the latent.
    """
    y, x, h, w = rect
    ya, xa = max(0, y - halo), max(0, x - halo)
    yb, xb = min(header.latent_h, y + h + halo), min(header.latent_w, x + w + halo)
    return ((y - ya, h), (x - xa, w)), ((ya, yb), (xa, xb))


def checked_region(region, header):
    """(x, y, w, h) of the pixels to decode, checked to lie inside the image; the whole image by default."""
    if region is None:
        return 0, 0, header.width, header.height
    try:
        x, y, w, h = (whole_number(v, "a region coordinate", "pixels", least=0) for v in region)
    except (TypeError, ValueError):
        raise L3icError("region must be (x, y, width, height) in whole pixels, got %r" % (region,))
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > header.width or y + h > header.height:
        raise L3icError("region %d,%d,%d,%d is not inside the %dx%d image" % (x, y, w, h, header.width, header.height))
    return x, y, w, h


def on_canvas(header, region):
    """A region (x, y, w, h) of the image in the pixels of the decoded latent: shifted by the header's margin."""
    x, y, w, h = region
    my, mx = header.margin
    return x + mx * header.stride, y + my * header.stride, w, h


def blocks(header, region):
    """Latent rectangles to run the decoder on: the tiles cut down to a region (x, y, w, h) of the latent's pixels."""
    s = header.stride
    x, y, w, h = region
    ly0, lx0, ly1, lx1 = y // s, x // s, -(-(y + h) // s), -(-(x + w) // s)
    found = []
    for t in range(header.n_tiles):
        ty, tx, th, tw = header.tile_rect(t)
        by0, bx0, by1, bx1 = max(ty, ly0), max(tx, lx0), min(ty + th, ly1), min(tx + tw, lx1)
        if by0 < by1 and bx0 < bx1:
            found.append((by0, bx0, by1 - by0, bx1 - bx0))
    return found


def tiles_under(header, rects, halo):
    """Indices of the tiles whose symbols the rects need, ``halo`` cells around them included."""
    needed = set()
    for rect in rects:
        (ya, yb), (xa, xb) = with_halo(header, rect, halo)[1]
        for t in range(header.n_tiles):
            ty, tx, th, tw = header.tile_rect(t)
            if ty < yb and ya < ty + th and tx < xb and xa < tx + tw:
                needed.add(t)
    return sorted(needed)


def canvas(rgb, header):
    """The image with its margin (``header.margin`` cells on each side) edge-replicated around it, as far as the
    latent reaches; without a margin the image itself (the analysis pads it to the stride)."""
    my, mx = header.margin
    if not (my or mx):
        return rgb
    s, h, w = header.stride, rgb.shape[0], rgb.shape[1]
    return np.pad(rgb, ((my * s, header.latent_h * s - h - my * s), (mx * s, header.latent_w * s - w - mx * s), (0, 0)),
                  mode="edge")


def pad_to(rgb, stride):
    """Edge-replicate the bottom/right borders of an image (H, W, 3) up to a multiple of ``stride`` pixels."""
    h, w = rgb.shape[:2]
    return np.pad(rgb, ((0, -h % stride), (0, -w % stride), (0, 0)), mode="edge")
