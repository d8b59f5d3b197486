"""Format 3's entropy coding: ŷ conditioned on the hyperprior, ẑ with static tables (docs/FORMAT.md).

The entropy model (``l3ic.hyperprior.EntropyModel``) turns ẑ into an origin
and a table index for every latent element; ŷ - origin is coded with those
static FSE tables (STATIC chunks), or a channel keeps format 2's adaptive
coding (FSE/CONTEXT chunks of its own) where that is shorter.  The origin is
floor(mean), or in a mean-shifted file (``container.FLAG_MEAN_SHIFT``) the
mean itself (``EntropyModel.tile_origins``), whose ŷ are then quarters.
Decoding runs the same entropy model on the decoded ẑ, so it knows every
symbol's table before reading it.  ẑ is one chunk: channel c coded with z
table c, or, where that is shorter, with a table of its own (FSE/CONTEXT, as
format 2 codes a channel): the static ẑ tables were made on textured photos,
and on smooth ones ẑ cost 20-40 % of a low-rate file.  With a quality field,
base and index are those of the gained latent (``l3ic.hyperprior.Gain``).
"""
import numpy as np

from l3ic import container, fse
from l3ic.analysis import rounded_about
from l3ic.options import checked_channels

# Chunks of a format-3 tile in these modes code the latent values themselves with per-file tables, as in format 2:
# the encoder takes them where they are shorter (smooth, high-energy channels that format 2's neighbour
# prediction codes better than the hyperprior); chunks in the other modes code ŷ - base with the static tables.
ADAPTIVE_MODES = (fse.FSE, fse.CONTEXT)


class ConditionalCoder:
    """Format 3: ``encode`` / ``decode`` ŷ tile by tile with the tables the hyperprior gives ``model``'s ẑ."""

    def __init__(self, model):
        self.model = model

    def encode(self, latents, header):
        """Code ``latents`` (``l3ic.analysis.Latents``: ŷ at the header's quality, and ẑ) of a file with ``header``.

        Returns:
            (one ``container.TileChunks`` per tile, the ẑ chunk as a ``container.TileChunks``).
        """
        em, gain, shifted = self.model.entropy_model, self.model.gain_of(header), header.mean_shifted
        tiles = []
        for t in range(header.n_tiles):
            y, x, h, w = rect = header.tile_rect(t)
            if latents.origins is None:
                origin, index = em.tile_origins(latents.z, rect, gain, shifted)
            else:  # the same values (``EntropyModel.tile_parameters``), computed once by the quantisation
                origin, index = (np.ascontiguousarray(a[:, y:y + h, x:x + w]) for a in latents.origins)
            coded = tile_chunks(em, latents.values[:, y:y + h, x:x + w], origin, index, header.codebook_min,
                                header.codebook_size, shifted)
            tiles.append(container.TileChunks(coded.modes, coded.sizes, coded.payload))
        coded = z_chunk(em, latents.z)
        return tiles, container.TileChunks(coded.modes, coded.sizes, coded.payload)

    def decode(self, parsed, channels=None, tiles=None):
        """ŷ of a parsed file (``container.L3icFile``), float32 (C, latent_h, latent_w), before any inverse gain.

        Args:
            channels: the channels to decode (default all); the others hold the hyperprior's guess, the origin.
            tiles: the tile indices to decode (default all); the others hold 0.
        """
        h = parsed.header
        wanted = checked_channels(channels, h.channels)
        em, gain, shifted = self.model.entropy_model, self.model.gain_of(h), h.mean_shifted
        z = self.decode_z(parsed)
        values = np.zeros((h.channels, h.latent_h, h.latent_w), np.float32)
        for t in range(h.n_tiles) if tiles is None else tiles:
            y, x, th, tw = rect = h.tile_rect(t)
            origin, index = em.tile_origins(z, rect, gain, shifted)
            chunks = parsed.tile_chunks(t, wanted)
            block = origin.copy()
            block[wanted] = tile_values(em, chunks, origin[wanted], index[wanted], h.codebook_min, h.codebook_size,
                                        shifted)
            values[:, y:y + th, x:x + tw] = block
        return values

    def decode_channels(self, parsed, channels):
        """ŷ of the chosen channels, float32 (len(channels), latent_h, latent_w) (``read_latents``)."""
        wanted = checked_channels(channels, parsed.header.channels)
        return self.decode(parsed, wanted)[wanted]

    def decode_z(self, parsed):
        """The ẑ symbols of a parsed file, uint8 (z_channels, zh, zw)."""
        h = parsed.header
        chunks = parsed.z_chunks()
        shape = (h.z_channels,) + h.z_shape
        tables = self.model.entropy_model.z_tables
        if int(chunks.modes[0]) in ADAPTIVE_MODES:
            symbols = fse.decode_channels(chunks.payload, chunks.modes, chunks.sizes, int(np.prod(shape)),
                                          tables.alphabet_size, width=shape[2])
        else:
            symbols = tables.decode(chunks.payload, chunks.modes, chunks.sizes, _z_table_index(shape))
        return symbols.reshape(shape)


def z_chunk(entropy_model, z):
    """The ẑ chunk of ẑ symbols (Zc, zh, zw), as ``fse.EncodedChannels``: the static z tables, channel c with
    table c, or the adaptive coder's own table (row width zw) where that is strictly shorter."""
    row = np.ascontiguousarray(z).reshape(1, -1)
    static = entropy_model.z_tables.encode(row, _z_table_index(z.shape))
    adaptive = fse.encode_channels(row, entropy_model.z_tables.alphabet_size, width=z.shape[2])
    if int(adaptive.modes[0]) in ADAPTIVE_MODES and adaptive.sizes[0] < static.sizes[0]:
        return adaptive
    return static


def _z_table_index(shape):
    """Table indices for ẑ (z_channels, zh, zw) coded as one row: channel c uses z table c."""
    channels, zh, zw = shape
    return np.repeat(np.arange(channels, dtype=np.uint8), zh * zw)[None]


def tile_chunks(entropy_model, latents, origin, index, codebook_min, codebook_size, shifted=False):
    """The chunks of one tile's ŷ, as ``fse.EncodedChannels``: per channel the shorter of the static coding, of
    s = ŷ - origin with the tables ``index`` (C, h, w), and the adaptive one (of ŷ, or of s in a mean-shifted
    file).  ``latents`` (C, h, w): ŷ, or any float latents, which are rounded first (``l3ic.analysis.rounded_about``).

    Where the hyperprior's base is so far off that the static symbols cannot
    reach ŷ (small images, whose ẑ has little context), the channel is coded
    adaptively whatever its size, so a file decodes to its ŷ (except a
    one-element tile, coded statically with ŷ clipped to the base's reach).
    A mean-shifted file's ŷ is always within reach.
    """
    channels, h, w = latents.shape
    values, steps = rounded_about(latents, origin, codebook_min, codebook_size, shifted)
    symbols = (steps - codebook_min).astype(np.uint8)
    static = entropy_model.latent_tables.encode(symbols.reshape(channels, h * w), index.reshape(channels, h * w))
    exact = np.all((_values_of(symbols, origin, codebook_min) == values).reshape(channels, -1), axis=1)
    # the adaptive coder's model search is the slow part: only where static coding is dear (>= 1 bit a symbol)
    # can it win, and where the static symbols cannot reach ŷ it must be used
    tried = np.flatnonzero(~exact | (8 * static.sizes.astype(np.int64) >= h * w))
    plain_values = steps if shifted else values
    adaptive = fse.encode_channels(np.ascontiguousarray((plain_values[tried] - codebook_min).astype(np.uint8).reshape(len(tried), h * w)),
                                   codebook_size, width=w)
    take = np.zeros(channels, bool)
    take[tried] = ~exact[tried] | (np.isin(adaptive.modes, ADAPTIVE_MODES) & (adaptive.sizes < static.sizes[tried]))
    # a chunk the static symbols cannot code must code plain values, which only FSE/CONTEXT chunks are read as:
    # a CONSTANT or RAW choice of the adaptive coder is wrapped as CONTEXT (4 bytes); a single element (CONTEXT
    # needs two) is coded statically after all, clipped to the base's reach
    plain = np.flatnonzero(take[tried] & ~np.isin(adaptive.modes, ADAPTIVE_MODES))
    if len(plain) and h * w < 2:
        take[tried[plain]] = False
    elif len(plain):
        adaptive = fse.as_context(adaptive, plain)
    return _merged(static, adaptive, tried, take)


def _merged(static, adaptive, tried, take):
    """One tile's chunks: channel c from ``adaptive`` (which codes the channels ``tried``, in order) where
    ``take[c]``, else from ``static`` (which codes them all)."""
    channels = len(take)
    row = np.full(channels, -1)
    row[tried] = np.arange(len(tried))
    static_ends, adaptive_ends = np.cumsum(static.sizes, dtype=np.int64), np.cumsum(adaptive.sizes, dtype=np.int64)
    modes, sizes, chunks = np.empty(channels, np.uint8), np.empty(channels, np.uint32), []
    for c in range(channels):
        coded, ends, i = (adaptive, adaptive_ends, row[c]) if take[c] else (static, static_ends, c)
        modes[c], sizes[c] = coded.modes[i], coded.sizes[i]
        chunks.append(coded.payload[ends[i] - coded.sizes[i]:ends[i]])
    return fse.EncodedChannels(modes, sizes, b"".join(chunks))


def tile_values(entropy_model, chunks, origin, index, codebook_min, codebook_size, shifted=False):
    """ŷ (k, h, w) of k chunks of one tile (a ``container.TileChunks``); ``origin``/``index`` (k, h, w) are those
    of their channels (``EntropyModel.tile_origins``)."""
    k, h, w = origin.shape
    modes, sizes = chunks.modes, chunks.sizes
    values = np.empty((k, h, w), np.float32)
    adaptive = np.isin(modes, ADAPTIVE_MODES)
    ends = np.cumsum(sizes, dtype=np.int64)
    view = memoryview(chunks.payload)
    pick = lambda rows: b"".join(view[ends[c] - sizes[c]:ends[c]] for c in rows)
    static_rows, adaptive_rows = np.flatnonzero(~adaptive), np.flatnonzero(adaptive)
    if len(static_rows):
        symbols = entropy_model.latent_tables.decode(pick(static_rows), modes[static_rows], sizes[static_rows],
                                                     np.ascontiguousarray(index[static_rows]).reshape(len(static_rows), h * w))
        values[static_rows] = _values_of(symbols.reshape(-1, h, w), origin[static_rows], codebook_min)
    if len(adaptive_rows):
        symbols = fse.decode_channels(pick(adaptive_rows), modes[adaptive_rows], sizes[adaptive_rows], h * w,
                                      codebook_size, width=w).reshape(-1, h, w)
        values[adaptive_rows] = (_values_of(symbols, origin[adaptive_rows], codebook_min) if shifted
                                 else symbols.astype(np.float32) + codebook_min)
    return values


def _values_of(symbols, origin, codebook_min):
    """ŷ = origin + the symbol's value (float32, exact: integers, or quarters in a mean-shifted file)."""
    return (symbols.astype(np.float32) + codebook_min) + origin.astype(np.float32)
