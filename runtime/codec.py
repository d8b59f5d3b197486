"""The l3ic codec: image -> encoder.onnx -> symbols -> FSE -> container, and back.

``Codec`` is the one code path behind the Python API, the command-line tools
and the Pillow plugin.  It owns one ``Model`` (ONNX Runtime sessions created
once and reused) and does the glue the networks cannot: padding to the model
stride, splitting the latent into tiles, choosing what goes into the header,
and on decode checking that the file was made by this model before trusting it.
"""
import numpy as np
from PIL import Image

from runtime import container, fse
from runtime import image as images
from runtime.errors import L3icError, ModelError
from runtime.model import DEFAULT_MODEL, Model

MODES = ("RGB", "L")


class Codec:
    """Encode images to l3ic bytes and decode them, with one model.

    ``model``: ``"low"``, ``"medium"`` (default), ``"high"`` or a model folder.
    ``providers``: ``None``/``"auto"`` (CUDA when available, else CPU), ``"cpu"``,
    ``"cuda"`` or a list of ONNX Runtime execution providers.
    """

    def __init__(self, model=DEFAULT_MODEL, providers=None, max_pixels=images.DEFAULT_MAX_PIXELS):
        self.model = Model(model, providers)
        self.max_pixels = max_pixels

    # ---- encoding ------------------------------------------------------------
    def encode(self, image, strip=False):
        """Compress an image to l3ic bytes.

        ``image``: uint8 array (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) gray, or a
        Pillow image in any mode.  ICC profile and EXIF of a Pillow image are
        kept unless ``strip``; alpha is kept losslessly.
        """
        picture = self._picture(image, strip)
        symbols = self._symbols_of(picture.rgb())
        header = self._header(picture, symbols.shape[1:])
        tiles = [self._code_tile(symbols, header.tile_rect(t)) for t in range(header.n_tiles)]
        return container.write(header, tiles, picture.side_data)

    def encode_latents(self, image):
        """The quantised latents of an image: int16 codebook values, shape (C, ceil(H/s), ceil(W/s))."""
        symbols = self._symbols_of(self._picture(image, strip=True).rgb())
        return symbols.astype(np.int16) + self.model.codebook_min

    def _picture(self, image, strip):
        if isinstance(image, images.Picture):
            return image
        if isinstance(image, Image.Image):
            return images.from_pil(image, strip)
        return images.from_array(image)

    def _symbols_of(self, rgb):
        """Run the encoder on the image padded (edge-replicated) to a multiple of the stride."""
        s = self.model.stride
        h, w = rgb.shape[:2]
        padded = np.pad(rgb, ((0, -h % s), (0, -w % s), (0, 0)), mode="edge")
        return self.model.encode(padded)

    def _header(self, picture, latent_shape):
        m = self.model
        return container.Header(
            width=picture.width, height=picture.height, mode=picture.mode,
            model_name=m.name, decoder_hash=m.decoder_hash,
            codebook_size=m.codebook_size, codebook_min=m.codebook_min,
            channels=m.channels, stride=m.stride,
            latent_h=latent_shape[0], latent_w=latent_shape[1],
            tile_h=latent_shape[0], tile_w=latent_shape[1])

    def _code_tile(self, symbols, rect):
        y, x, h, w = rect
        tile = np.ascontiguousarray(symbols[:, y:y + h, x:x + w]).reshape(symbols.shape[0], h * w)
        coded = fse.encode_channels(tile, self.model.codebook_size)
        return container.TileChunks(coded.modes, coded.sizes, coded.payload)

    # ---- decoding ------------------------------------------------------------
    def decode(self, data, channels=None):
        """Decompress l3ic bytes to a uint8 array: (H, W, 3) RGB, (H, W) gray, or with a 4th alpha channel.

        ``channels``: decode only these latent channels (the others are taken as
        zero); channel 0 is the most important, so ``range(k)`` is the best
        k-channel preview.
        """
        return np.asarray(self.decode_to_pil(data, channels))

    def decode_to_pil(self, data, channels=None):
        """Like ``decode`` but returns a Pillow image carrying alpha, ICC profile and EXIF."""
        parsed = self._parse(data)
        pixels = self._pixels_of(read_symbols(parsed, channels), parsed.header)
        return images.to_pil(pixels, parsed.header.mode, parsed.side_data)

    def decode_latents(self, latents):
        """Run the decoder on int codebook values (C, h, w) -> uint8 RGB (h*s, w*s, 3)."""
        latents = np.asarray(latents)
        m = self.model
        if latents.ndim != 3 or latents.shape[0] != m.channels:
            raise ValueError("latents must have shape (%d, h, w), got %s" % (m.channels, latents.shape))
        symbols = latents.astype(np.int64) - m.codebook_min
        if symbols.min() < 0 or symbols.max() >= m.codebook_size:
            raise ValueError("latent values must lie in the codebook %d..%d" % (m.codebook_min, m.codebook_min + m.codebook_size - 1))
        return _to_uint8(m.decode(symbols.astype(np.uint8)))

    def _parse(self, data):
        parsed = container.L3icFile.parse(data, max_pixels=self.max_pixels)
        h, m = parsed.header, self.model
        if h.decoder_hash != m.decoder_hash or h.channels != m.channels or h.stride != m.stride \
                or h.codebook_size != m.codebook_size or h.codebook_min != m.codebook_min:
            raise ModelError("this file was made with model %r (decoder %s), not with %r (decoder %s)"
                             % (h.model_name, h.decoder_hash.hex()[:12], m.name, m.decoder_hash.hex()[:12]))
        return parsed

    def _pixels_of(self, symbols, header):
        rgb = _to_uint8(self.model.decode(symbols))[:header.height, :header.width]
        if header.mode == "L":
            return np.rint(rgb.mean(axis=2)).astype(np.uint8)
        return rgb


def read_symbols(parsed, channels=None):
    """Entropy-decode the chosen channels of all tiles into (C, latent_h, latent_w) symbol indices.

    Channels not asked for hold the index of the value 0, the neutral latent.
    """
    h = parsed.header
    wanted = _channel_list(channels, h.channels)
    zero = min(max(-h.codebook_min, 0), h.codebook_size - 1)  # index of the value 0, the neutral latent
    symbols = np.full((h.channels, h.latent_h, h.latent_w), zero, np.uint8)
    for t in range(h.n_tiles):
        y, x, th, tw = h.tile_rect(t)
        chunks = parsed.tile_chunks(t, wanted)
        decoded = fse.decode_channels(chunks.payload, chunks.modes, chunks.sizes, th * tw, h.codebook_size)
        symbols[wanted, y:y + th, x:x + tw] = decoded.reshape(len(wanted), th, tw)
    return symbols


def read_latents(data, channels=None):
    """Latent codebook values of an l3ic file without running any network: int16 (len(channels), h, w).

    This is random access: only the chosen channels are entropy-decoded.
    """
    parsed = container.L3icFile.parse(data)
    wanted = _channel_list(channels, parsed.header.channels)
    return read_symbols(parsed, wanted)[wanted].astype(np.int16) + parsed.header.codebook_min


def read_info(data):
    """The header of an l3ic file as a dict (no model needed)."""
    parsed = container.L3icFile.parse(data)
    h = parsed.header
    return {
        "width": h.width, "height": h.height, "mode": h.mode,
        "model": h.model_name, "decoder_sha256_prefix": h.decoder_hash.hex(),
        "channels": h.channels, "stride": h.stride,
        "codebook": {"minimum": h.codebook_min, "size": h.codebook_size},
        "latent": [h.latent_h, h.latent_w], "tile": [h.tile_h, h.tile_w], "tiles": h.n_tiles,
        "side_data": {tag: len(value) for tag, value in parsed.side_data.items()},
        "bytes": len(data), "bpp": 8.0 * len(data) / (h.width * h.height),
        "format_version": container.FORMAT_VERSION,
    }


def _channel_list(channels, count):
    if channels is None:
        return list(range(count))
    wanted = [int(c) for c in channels]
    if not wanted or len(set(wanted)) != len(wanted) or min(wanted) < 0 or max(wanted) >= count:
        raise L3icError("channels must be distinct indices in 0..%d" % (count - 1))
    return wanted


def _to_uint8(unit_float):
    return np.clip(np.rint(unit_float * 255.0), 0, 255).astype(np.uint8)
