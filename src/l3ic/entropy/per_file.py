"""Format 2's entropy coding: every (tile, channel) chunk with a table of its own (docs/FORMAT.md).

``l3ic.fse.encode_channels`` chooses each chunk's mode (FSE with the chunk's
normalised histogram in its header, CONTEXT with a neighbour's prediction,
CONSTANT, RAW, EMPTY).  The symbols are codebook indices, ŷ - codebook_min;
nothing depends on a model but the codebook the header records, so format-1
and format-2 files decode without one.
"""
import numpy as np

from l3ic import container, fse
from l3ic.options import checked_channels


class PerFileCoder:
    """Format 2: ``encode`` / ``decode`` ŷ tile by tile, each chunk with its own tables.  ``model``: the model whose
    files these are (None to read the latents of format-1 and format-2 files without one)."""

    def __init__(self, model=None):
        self.model = model

    def encode(self, latents, header):
        """Code ``latents`` (``l3ic.analysis.Latents``) of a file with ``header``.

        Returns:
            (one ``container.TileChunks`` per tile, None): format 2 has no ẑ chunk.
        """
        symbols = (latents.values - header.codebook_min).astype(np.uint8)
        tiles = []
        for t in range(header.n_tiles):
            y, x, h, w = header.tile_rect(t)
            tile = np.ascontiguousarray(symbols[:, y:y + h, x:x + w]).reshape(symbols.shape[0], h * w)
            coded = fse.encode_channels(tile, header.codebook_size, width=w)
            tiles.append(container.TileChunks(coded.modes, coded.sizes, coded.payload))
        return tiles, None

    def decode(self, parsed, channels=None, tiles=None):
        """ŷ of a parsed file (``container.L3icFile``), float32 (C, latent_h, latent_w).

        Args:
            channels: the channels to decode (default all); the others hold 0, the neutral latent.
            tiles: the tile indices to decode (default all); the others hold 0.
        """
        h = parsed.header
        wanted = checked_channels(channels, h.channels)
        zero = min(max(-h.codebook_min, 0), h.codebook_size - 1)
        symbols = np.full((h.channels, h.latent_h, h.latent_w), zero, np.uint8)
        for (y, x, th, tw), block in self._decoded_tiles(parsed, wanted, tiles):
            symbols[wanted, y:y + th, x:x + tw] = block
        return symbols.astype(np.float32) + h.codebook_min

    def decode_channels(self, parsed, channels):
        """ŷ of the chosen channels only, int16 (len(channels), latent_h, latent_w): only they are entropy-decoded
        and held in memory (``read_latents``)."""
        h = parsed.header
        wanted = checked_channels(channels, h.channels)
        latents = np.empty((len(wanted), h.latent_h, h.latent_w), np.int16)
        for (y, x, th, tw), block in self._decoded_tiles(parsed, wanted):
            latents[:, y:y + th, x:x + tw] = block.astype(np.int16) + h.codebook_min
        return latents

    @staticmethod
    def _decoded_tiles(parsed, wanted, tiles=None):
        """Yield (tile rectangle, symbols of the wanted channels in it) for each tile."""
        h = parsed.header
        for t in range(h.n_tiles) if tiles is None else tiles:
            y, x, th, tw = h.tile_rect(t)
            chunks = parsed.tile_chunks(t, wanted)
            decoded = fse.decode_channels(chunks.payload, chunks.modes, chunks.sizes, th * tw, h.codebook_size, width=tw)
            yield (y, x, th, tw), decoded.reshape(len(wanted), th, tw)
