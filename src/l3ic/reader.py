"""Reading l3ic files without a ``Codec``: their header (``read_info``) and their latents (``read_latents``).

Neither runs a network: ``read_info`` reads the header alone (no model),
``read_latents`` entropy-decodes (format 3 needs the installed model the
file names, for its entropy model only).  Both take the file as bytes or as
a path (``file_bytes``) and refuse a file claiming more than ``max_pixels``
before allocating anything, as ``Codec.decode`` does.
"""
import os

from l3ic import container
from l3ic import image as images
from l3ic.entropy import PerFileCoder, coder_for
from l3ic.errors import L3icError, ModelError
from l3ic.files import read_input
from l3ic.model import Model, find_decoder
from l3ic.options import checked_channels
from l3ic.quality import Q_UNITS, QUALITY_SCALE, from_model


def read_info(data, max_pixels=images.DEFAULT_MAX_PIXELS):
    """The header of an l3ic file as a dict; no model needed, nothing decoded.

    Args:
        data: the file, as bytes or a path (str or os.PathLike).
        max_pixels: files claiming larger images are refused.
    Returns:
        dict: width, height, mode, model, decoder_sha256_prefix, channels, stride, codebook, latent, tile, tiles,
        side_data (tag -> bytes), bytes, bpp, format_version; z_channels and hyper_stride (format 3); quality (q,
        with a quality field); lossless (a lossless file); mean_shifted (latents coded about the hyperprior's mean,
        so ``read_latents`` gives quarters); source, when the encoder changed the source beyond what
        decoding restores (16-bit samples reduced to 8 bits, CMYK to RGB, ...).
    Raises:
        FormatError: for anything but a valid l3ic file; L3icError for a path that cannot be read.
    """
    data = file_bytes(data)
    return describe(container.L3icFile.parse(data, max_pixels=max_pixels), len(data))


def describe(parsed, n_bytes):
    """``read_info`` of an already parsed file (``container.L3icFile``) of ``n_bytes`` bytes (the Pillow plugin
    parses once)."""
    h = parsed.header
    info = {
        "width": h.width, "height": h.height, "mode": h.mode,
        "model": h.model_name, "decoder_sha256_prefix": h.decoder_hash.hex(),
        "channels": h.channels, "stride": h.stride,
        "codebook": {"minimum": h.codebook_min, "size": h.codebook_size},
        "latent": [h.latent_h, h.latent_w], "tile": [h.tile_h, h.tile_w], "tiles": h.n_tiles,
        "side_data": {tag: len(value) for tag, value in parsed.side_data.items()},
        "bytes": n_bytes, "bpp": 8.0 * n_bytes / (h.width * h.height),
        "format_version": parsed.version,
    }
    if h.z_channels:
        info["z_channels"], info["hyper_stride"] = h.z_channels, h.hyper_stride
    if h.flags & container.FLAG_QUALITY:
        info["quality"] = from_model(h.model_name, h.quality) / Q_UNITS  # the -q that makes this file
        info["model_quality"] = h.quality / QUALITY_SCALE  # the model's own q, which picks its gains
    if h.flags & container.FLAG_LOSSLESS:
        info["lossless"] = True
    if h.mean_shifted:
        info["mean_shifted"] = True  # latents coded about the hyperprior's mean: read_latents gives quarters
    record = parsed.side_record(images.SOURCE)
    if record is not None:
        info["source"] = images.read_source_record(record)
    return info


def read_latents(data, channels=None, max_pixels=images.DEFAULT_MAX_PIXELS):
    """The latent values a file codes, without running the decoder network.

    Formats 1 and 2: codebook values, and this is random access: only the
    chosen channels are entropy-decoded, and only they are held in memory.
    Format 3: ŷ, at the file's quality (before the inverse gain), which needs
    the installed model the file names for its entropy model (not its networks).

    Args:
        data: the file, as bytes or a path (str or os.PathLike).
        channels: the latent channels to read (default all).
        max_pixels: files claiming larger images are refused before anything is allocated.
    Returns:
        (len(channels), latent_h, latent_w): int16 codebook values (formats 1 and 2), or float32 ŷ (format 3:
        integers, or quarters in a file coded about the hyperprior's mean, ``container.FLAG_MEAN_SHIFT``).
    Raises:
        FormatError: for a damaged file; ModelError when its model is not installed; L3icError for bad channels
        or a lossless file (which has no latents).
    """
    parsed = container.L3icFile.parse(file_bytes(data), max_pixels=max_pixels)
    h = parsed.header
    wanted = checked_channels(channels, h.channels)
    if h.flags & container.FLAG_LOSSLESS:
        raise L3icError("this file stores a tiny image losslessly, as pixels: it has no latents")
    if h.version < 3:
        return PerFileCoder().decode_channels(parsed, wanted)
    folder = find_decoder(h.model_name, h.decoder_hash)
    if folder is None:
        raise ModelError("this file needs model %r (identity %s), which is not installed" % (h.model_name, h.decoder_hash.hex()[:12]))
    model = Model(folder, "cpu")
    model.check_header(h)
    return coder_for(model).decode_channels(parsed, wanted)


def file_bytes(data):
    """The bytes of an l3ic file, given as bytes or as a path (str or os.PathLike; ``-``: standard input)."""
    if isinstance(data, (str, os.PathLike)):
        return read_input(os.fspath(data))
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    raise L3icError("expected an l3ic file: bytes or a path, got %s" % type(data).__name__)
