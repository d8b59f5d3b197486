"""The l3ic codec: image -> encoder.onnx -> symbols -> entropy model -> FSE -> container, and back.

Format 3 (models with a hyperprior): encoder.onnx gives the latents y and the
side information ẑ; the entropy model (``l3ic.hyperprior``) turns ẑ into a
base and a table index for every latent element; round(y) - base is coded
with those static FSE tables (or a channel keeps format 2's adaptive coding
where that is shorter).  Decoding runs the same entropy model
on the decoded ẑ, so it knows every symbol's table before reading it.
Format 2 (earlier models): the symbols are coded with per-file tables.

``Codec`` is the one code path behind the Python API, the command-line tools
and the Pillow plugin.  It owns one ``Model`` (ONNX Runtime sessions created
once and reused) and does the glue the networks cannot: padding to the model
stride, splitting the latent into tiles, choosing what goes into the header,
and on decode checking that the file was made by this model before trusting it.
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image

from l3ic import container, fse, hyperprior, lossless, progress
from l3ic import image as images
from l3ic.files import read_input
from l3ic.errors import ImageError, L3icError, ModelError
from l3ic.model import DEFAULT_MODEL, Model, find_decoder
from l3ic.options import CodecOptions, EncodeOptions, refine_steps, whole_number
from l3ic.quality import QUALITY_SCALE, model_for, quality_units

# The default Tiling, in latent cells:
WHOLE_IMAGE_LATENT = 256  # latents up to 256 x 256 cells (2048 px at stride 8) are coded as one tile
TILE_LATENT = 128  # larger images: tiles of 128 x 128 latent cells, coded and run through the networks one by one
ANALYSIS_REACH = 8  # latent cells from a border within which the image's padding changes the latents (measured:
# padding to 32 instead of 8 px changes none further in), and the context that reproduces them exactly
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

    def encode_blocks(self, header, refine):
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


class Codec:
    """Encode images to l3ic bytes and decode them, with one model.

    ``model``: ``"low"``, ``"medium"`` (default), ``"high"`` or a model folder.
    ``providers``: ``None``/``"auto"`` (CUDA when available, else CPU), ``"cpu"``,
    ``"cuda"`` or a list of ONNX Runtime execution providers.
    ``threads``: ONNX Runtime intra-op threads (default: all cores).
    ``max_pixels``: image files and files claiming larger images are refused before decoding.
    ``tiling``: a ``Tiling`` (default ``Tiling()``), how the latent is cut into tiles and blocks.

    ``encode`` and ``decode`` are made of public stages, for tools that time,
    inspect or replace one of them (``benchmarks/speed.py``):

    * encode: ``header_for(picture)`` (geometry, model identity, tile grid) ->
      ``analyse(picture.rgb(), header)`` (the encoder network: image to
      symbols) -> ``code(analysed, header)`` (entropy-code the tiles) ->
      ``container.write``;
    * decode: ``parse(data)`` (the parsed file and the model that decodes it;
      ``decoder_for(header)`` alone) -> ``latent_values(parsed, model)``
      (entropy-decode) -> ``synthesise(model, values, header)`` (the decoder
      network: latents to pixels) -> ``image.to_pil``.
    """

    def __init__(self, model=DEFAULT_MODEL, providers=None, max_pixels=images.DEFAULT_MAX_PIXELS, threads=None,
                 tiling=None):
        options = CodecOptions.validated(providers, max_pixels, threads)
        self.model = Model(model, options.providers, options.threads)
        self.max_pixels = options.max_pixels
        self.tiling = Tiling() if tiling is None else tiling
        if not isinstance(self.tiling, Tiling):
            raise L3icError("tiling must be a l3ic.codec.Tiling, got %r" % (tiling,))
        self._decoders = {self.model.decoder_hash: self.model}  # model identity -> Model (legacy decoders)

    # ---- encoding ------------------------------------------------------------
    def encode(self, image, strip=False, refine=0, quality=None):
        """Compress an image to l3ic bytes.

        ``image``: uint8 array (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) gray, a
        Pillow image in any mode, or the path (str or os.PathLike) of an image
        file.  ICC profile and EXIF of a Pillow image or file are kept unless
        ``strip``; alpha is kept losslessly (so the decoded image has the
        input's shape and mode).  ``refine``: steps of encoder-side refinement
        (``l3ic.refine``; 0 = off): a better image in the same file size, for
        about one decoder pass and a half per step; the file is never larger
        than the plain encode's, nor decodes worse (that one is returned if it
        would).
        ``quality``: for a model trained for continuous quality, q (0..100, in
        steps of 0.01) within ``quality_range``; default the model's preset.
        """
        refine = refine_steps(refine)
        picture = self._picture(image, strip)
        header = self.header_for(picture, quality)
        tiles, z_chunks = self.code(self.analyse(picture.rgb(), header, refine), header)
        data = container.write(header, tiles, picture.side_data, z_chunks)
        if refine:
            tiles, z_chunks = self.code(self.analyse(picture.rgb(), header), header)
            plain = container.write(header, tiles, picture.side_data, z_chunks)
            error = lambda d: float(np.sum((self.decode(d).astype(np.float64) - picture.pixels) ** 2))
            data = data if len(data) <= len(plain) and error(data) <= error(plain) else plain  # a block's candidates
            # are scored in its window, whose halo the file replaces with the neighbours' refined latents
        return self.lossless_or(picture, data)

    def lossless_or(self, picture, data):
        """``data`` (a lossy file of ``picture``), or the lossless file of a tiny image where that is no larger, or
        where the lossy one would decode below ``lossless.MIN_PSNR`` (``l3ic.lossless``)."""
        if picture.width * picture.height > lossless.MAX_PIXELS or not self.model.has_hyperprior:
            return data
        header = dataclasses.replace(self.header_for(picture, lossless=True), flags=container.FLAG_LOSSLESS, quality=0)
        files = [container.write(header, [], dict(picture.side_data, **{container.LOSSLESS: record}))
                 for record in lossless.records(picture.pixels)]
        best = min(files, key=len)
        small = max(picture.width, picture.height) <= lossless.SMALL_SIDE
        if len(best) <= len(data) or (small and images.psnr(picture.pixels, self.decode(data)) < lossless.MIN_PSNR):
            return best
        return data

    def encode_latents(self, image, refine=0, quality=None):
        """The quantised latents of an image as the file codes them, shape (C, ceil(H/s), ceil(W/s)), plus
        2 * MARGIN on an axis of at most SMALL_SIDE pixels (the image then starts MARGIN cells in).

        int16 codebook values (rounded latents, gained at ``quality``: decode them with ``decode_latents`` at the
        same quality), in every format.
        """
        refine = refine_steps(refine)
        picture = self._picture(image, strip=True)
        header = self.header_for(picture, quality)
        analysed = self.analyse(picture.rgb(), header, refine)
        if not self.model.has_hyperprior:
            return analysed[0].astype(np.int16) + self.model.codebook_min
        gain = gain_of(header, self.model)
        latents = analysed[0] if gain is None else analysed[0] * gain.encoder[:, None, None]
        return hyperprior.rounded(latents, self.model.codebook_min, self.model.codebook_size).astype(np.int16)

    def _picture(self, image, strip):
        """What ``encode`` takes as an ``l3ic.image.Picture``."""
        if isinstance(image, images.Picture):
            return image
        if isinstance(image, Image.Image):
            return images.from_pil(image, strip)
        if isinstance(image, (str, os.PathLike)):
            return images.load(os.fspath(image), self.max_pixels, strip)
        if isinstance(image, np.ndarray):
            return images.from_array(image)
        raise ImageError("expected an image: an array, a Pillow image or a path, got %s" % type(image).__name__)

    def analyse(self, rgb, header, refine=0):
        """Stage 1 of encoding: run the encoder block by block, each block with ``tiling.encode_halo`` latent cells
        of image context around it.

        Returns the encoder's outputs for the whole image: [symbols] (format
        2) or [latents, ẑ symbols] (format 3; ẑ at 1/hyper_stride of the
        latent).  The blocks are the tiles; with refinement, tiles are cut
        further into blocks of at most ``tiling.refine_block`` cells.  The context makes
        a blockwise encode match a whole-image encode (up to float rounding),
        while memory stays bounded by the block size.
        """
        blocks = self.tiling.encode_blocks(header, refine)
        s = self.model.stride
        rgb = _canvas(rgb, header)
        factors = [1, header.hyper_stride] if self.model.has_hyperprior else [1]
        gain = gain_of(header, self.model)
        pad = s * factors[-1]  # a whole number of ẑ cells (see _encode_block)
        if len(blocks) == 1:
            everything = ((0, -(-rgb.shape[0] // s)), (0, -(-rgb.shape[1] // s)))
            outs = self._encode_block(rgb, pad, refine, gain, everything)
            return [np.ascontiguousarray(o[:, :-(-header.latent_h // f), :-(-header.latent_w // f)])
                    for o, f in zip(outs, factors)]
        outputs = None
        for done, block in enumerate(blocks):
            if not refine:  # refinement reports its own steps
                progress.step("analysis", done, len(blocks))
            core, window = _with_halo(header, block, self.tiling.encode_halo)
            (ya, yb), (xa, xb) = window
            outs = self._encode_block(rgb[ya * s:yb * s, xa * s:xb * s], pad, refine, gain, core)
            if outputs is None:
                outputs = [np.empty((o.shape[0], -(-header.latent_h // f), -(-header.latent_w // f)), o.dtype)
                           for o, f in zip(outs, factors)]
            (cy, ch), (cx, cw) = core
            for whole, out, f in zip(outputs, outs, factors):  # block corners and the halo are multiples of f
                whole[:, (ya + cy) // f:-(-(ya + cy + ch) // f), (xa + cx) // f:-(-(xa + cx + cw) // f)] = \
                    out[:, cy // f:-(-(cy + ch) // f), cx // f:-(-(cx + cw) // f)]
        return outputs

    def _encode_block(self, rgb, pad, refine, gain, core):
        """The encoder's outputs for one window (or the whole image) of which ``core`` is kept, refined if asked,
        on the grid of whole ẑ cells (``pad`` pixels): a window that is not made of them is one at the bottom or
        right border, coded by ``_encode_on_grid`` (and refined as the image padded to the stride, which is what
        its file codes)."""
        if self.model.has_hyperprior and (rgb.shape[0] % pad or rgb.shape[1] % pad):
            rgb = _pad_to(rgb, self.model.stride)
            y, z = self._encode_on_grid(rgb, pad)
            h, w = rgb.shape[0] // self.model.stride, rgb.shape[1] // self.model.stride
            f = pad // self.model.stride
            return self._encode_window(rgb, refine, gain, core, [y[:, :h, :w], z[:, :-(-h // f), :-(-w // f)]])
        return self._encode_window(_pad_to(rgb, pad), refine, gain, core)

    def _encode_on_grid(self, rgb, pad):
        """The encoder's [latents, ẑ] for a whole image (the canvas) whose sides are not multiples of ``pad``
        (a whole ẑ cell in pixels): ẑ on its grid, the latents as the image padded to the stride gives them.

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
        s, reach = self.model.stride, ANALYSIS_REACH
        y, z = self.model.encode(_pad_to(rgb, pad))
        h, w = -(-rgb.shape[0] // s), -(-rgb.shape[1] // s)
        if rgb.shape[0] % pad:
            top = max(0, h - 2 * reach)
            strip = self.model.encode(_pad_to(rgb[top * s:], s))[0]
            k = min(h, reach)
            y[:, h - k:h, :w] = strip[:, h - k - top:, :w]
        if rgb.shape[1] % pad:
            left = max(0, w - 2 * reach)
            strip = self.model.encode(_pad_to(rgb[:, left * s:], s))[0]
            k = min(w, reach)
            y[:, :h, w - k:w] = strip[:, :h, w - k - left:]
        return [y, z]

    def _encode_window(self, rgb, refine, gain, core, encoded=None):
        """The encoder's outputs (``encoded``, or the network's on ``rgb``) for one window, of which ``core``
        (None: all) is kept.  Refinement works on the gained latents of the header's quality
        (``l3ic.hyperprior.Gain``); its result is divided by the gain again, so that ``code`` gains all alike
        (and rounds back to the refined integers): a plain analysis is the same at every quality."""
        if not refine:
            return encoded or self.model.encode(rgb)
        from l3ic.refine import refine_symbols  # only refining encodes load it
        outs = refine_symbols(self.model, rgb, refine, gain, core, encoded)
        if gain is not None:
            outs[0] = outs[0] / gain.encoder[:, None, None]
        return outs

    @property
    def quality_range(self):
        """(lowest, highest) q (0..100) of a model trained for continuous quality, else None."""
        qualities = self.model.entropy_model.qualities if self.model.has_hyperprior else None
        return None if qualities is None else tuple(q / QUALITY_SCALE for q in qualities)

    @property
    def default_quality(self):
        """The q (0..100) an encode without one uses (the model's preset), or None without continuous quality."""
        return None if self.quality_range is None else self.model.entropy_model.default_quality / QUALITY_SCALE

    def _quality_units(self, quality):
        """q (0..100, or None: the model's preset) as the hundredths a file records; L3icError for a bad value, a
        q outside the model's range or a q for a model without continuous quality (None for it)."""
        em = self.model.entropy_model if self.model.has_hyperprior else None
        if em is None or em.qualities is None:
            if quality is not None:
                raise L3icError("model %r has no continuous quality: use a quality preset or another model" % self.model.name)
            return None
        units = em.default_quality if quality is None else quality_units(quality)
        em.gain(units)  # refuses a quality outside the model's range
        return units

    def header_for(self, picture, quality=None, lossless=False):
        """The file header for a picture (``l3ic.image.Picture``): geometry, model identity, tile grid, and for a
        model with gains the quality q (0..100; default the model's preset); ``lossless``: without a margin."""
        m = self.model
        quality = self._quality_units(quality)
        flags = 0 if quality is None else container.FLAG_QUALITY
        margin = MARGIN if m.has_hyperprior and not lossless else 0  # FLAG_MARGIN is a format-3 flag
        margin_y, margin_x = (margin if side <= SMALL_SIDE else 0 for side in (picture.height, picture.width))
        latent_h = -(-picture.height // m.stride) + 2 * margin_y
        latent_w = -(-picture.width // m.stride) + 2 * margin_x
        tile_h, tile_w = self.tiling.tile_shape(latent_h, latent_w)
        if m.has_hyperprior:
            self.tiling.check_hyper_stride(m.entropy_model.hyper_stride)
        return container.Header(
            width=picture.width, height=picture.height, mode=picture.mode,
            model_name=m.name, decoder_hash=m.decoder_hash,
            codebook_size=m.codebook_size, codebook_min=m.codebook_min,
            channels=m.channels, stride=m.stride,
            latent_h=latent_h, latent_w=latent_w, tile_h=tile_h, tile_w=tile_w,
            flags=flags | (container.FLAG_MARGIN if margin_y or margin_x else 0), quality=quality or 0,
            **(dict(z_channels=m.entropy_model.z_channels, hyper_stride=m.entropy_model.hyper_stride) if m.has_hyperprior else {}))

    def code(self, analysed, header):
        """Stage 2 of encoding: entropy-code what ``analyse`` gave -> (one TileChunks per tile, ẑ chunks or None)."""
        if not self.model.has_hyperprior:
            return [self._code_tile(analysed[0], header.tile_rect(t)) for t in range(header.n_tiles)], None
        latents, z = analysed
        gain = gain_of(header, self.model)
        return [self._code_tile_hyper(latents, z, header.tile_rect(t), gain) for t in range(header.n_tiles)], self._code_z(z)

    def _code_tile(self, symbols, rect):
        y, x, h, w = rect
        tile = np.ascontiguousarray(symbols[:, y:y + h, x:x + w]).reshape(symbols.shape[0], h * w)
        coded = fse.encode_channels(tile, self.model.codebook_size, width=w)
        return container.TileChunks(coded.modes, coded.sizes, coded.payload)

    def _code_tile_hyper(self, latents, z, rect, gain):
        """Format 3: one tile, each element coded with the table the entropy model gives it (``hyperprior.encode_tile``)."""
        m, em = self.model, self.model.entropy_model
        y, x, h, w = rect
        base, index = em.tile_parameters(z, rect, gain)
        tile = latents[:, y:y + h, x:x + w]
        if gain is not None:
            tile = tile * gain.encoder[:, None, None]
        coded = hyperprior.encode_tile(em, tile, base, index, m.codebook_min, m.codebook_size)
        return container.TileChunks(coded.modes, coded.sizes, coded.payload)

    def _code_z(self, z):
        """Format 3: ẑ as one chunk, channel by channel, channel c coded with z table c."""
        em = self.model.entropy_model
        coded = em.z_tables.encode(np.ascontiguousarray(z).reshape(1, -1), _z_table_index(z.shape))
        return container.TileChunks(coded.modes, coded.sizes, coded.payload)

    # ---- decoding ------------------------------------------------------------
    def decode(self, data, channels=None, region=None):
        """Decompress l3ic bytes (or the path of an .l3ic file) to a uint8 array of the encoded image's shape:
        (H, W, 3) RGB, (H, W) gray, (H, W, 4) RGBA or (H, W, 2) gray + alpha.

        ``channels``: decode only these latent channels (the others are the
        hyperprior's guess in format 3, zero in format 2); channel 0 is the most important, so ``range(k)`` is the best
        k-channel preview.  ``region``: (x, y, width, height) in pixels; only
        the tiles it needs are entropy-decoded and run through the decoder.
        """
        return np.asarray(self.decode_to_pil(data, channels, region))

    def decode_to_pil(self, data, channels=None, region=None):
        """Like ``decode`` but returns a Pillow image carrying alpha, ICC profile and EXIF."""
        parsed = container.L3icFile.parse(_file_bytes(data), max_pixels=self.max_pixels)
        h = parsed.header
        region = _checked_region(region, h)
        if h.flags & container.FLAG_LOSSLESS:  # a tiny image stored as pixels: no model involved
            return images.to_pil(_lossless_pixels(parsed, region), h.mode, _crop_side_data(parsed.side_data, h, region))
        model = self.decoder_for(h)
        canvas = _on_canvas(h, region)
        blocks = _blocks(h, canvas)
        values = latent_values(parsed, model, channels, _tiles_under(h, blocks, self.tiling.halo))
        pixels = synthesise(model, values, h, canvas, blocks, self.tiling)
        return images.to_pil(pixels, h.mode, _crop_side_data(parsed.side_data, h, region))

    def decode_latents(self, latents, quality=None):
        """Run the decoder on latent values (C, h, w), as ``encode_latents`` gives them -> uint8 RGB (h*s, w*s, 3).

        Format-2 models take integer codebook values; format-3 models any finite values (ŷ are integers),
        which a model with gains multiplies by the inverse gain of ``quality`` (default its preset): give the
        quality ``encode_latents`` was given.
        """
        values = _checked_latents(latents, self.model)
        units = self._quality_units(quality)
        if units is not None:
            values = values * self.model.entropy_model.gain(units).inverse[:, None, None]
        return _to_uint8(self.model.decode(values))

    def parse(self, data):
        """Stage 1 of decoding: the parsed file (``container.L3icFile``) and the model that decodes it: this
        codec's, or the legacy decoder of an earlier release that the file names.  ``data``: bytes or a path."""
        parsed = container.L3icFile.parse(_file_bytes(data), max_pixels=self.max_pixels)
        return parsed, self.decoder_for(parsed.header)

    def decoder_for(self, h):
        """The model that decodes a file with header ``h``: this codec's or a legacy decoder (ModelError if none)."""
        m = self._decoders.get(h.decoder_hash)
        if m is None:  # a file of an earlier release of this model decodes with its legacy decoder
            folder = find_decoder(h.model_name, h.decoder_hash, current=False) if h.model_name == self.model.name else None
            if folder is None:
                m = self.model
                raise ModelError("this file was made with model %r (decoder %s), not with %r (decoder %s)"
                                 % (h.model_name, h.decoder_hash.hex()[:12], m.name, m.decoder_hash.hex()[:12]))
            m = self._decoders[h.decoder_hash] = Model(folder, self.model.providers, self.model.threads)
        return _checked_against(h, m)


def _checked_against(h, m):
    """``m``, after checking that header ``h`` describes a file this model can have made (ModelError if not)."""
    if h.channels != m.channels or h.stride != m.stride or h.codebook_size != m.codebook_size \
            or h.codebook_min != m.codebook_min or h.version != m.format \
            or (m.has_hyperprior and (h.z_channels, h.hyper_stride) != (m.entropy_model.z_channels, m.entropy_model.hyper_stride)):
        raise ModelError("this file's header does not match model %r (%d channels, stride %d, format %d)"
                         % (m.name, m.channels, m.stride, m.format))
    qualities = m.entropy_model.qualities if m.has_hyperprior else None
    if bool(h.flags & container.FLAG_QUALITY) != (qualities is not None) \
            or (qualities and not qualities[0] <= h.quality <= qualities[1]):
        raise ModelError("this file's quality field does not fit model %r (quality %s)"
                         % (m.name, "%g..%g" % tuple(q / QUALITY_SCALE for q in qualities) if qualities else "none"))
    return m


def gain_of(header, model):
    """The ``l3ic.hyperprior.Gain`` a file's latents are coded with (its quality field), or None."""
    return model.entropy_model.gain(header.quality) if header.flags & container.FLAG_QUALITY else None


def synthesise(model, values, header, region=None, blocks=None, tiling=None):
    """Stage 3 of decoding: run the decoder on latent values block by block, each with ``tiling.halo`` cells of
    latent context, and paste the region (x, y, w, h in the decoded latent's pixels, which are the image's shifted
    by its margin: ``_on_canvas``; default the whole image) together -> uint8 pixels."""
    region = region or _on_canvas(header, _checked_region(None, header))
    blocks = blocks if blocks is not None else _blocks(header, region)
    halo = (Tiling() if tiling is None else tiling).halo
    s = model.stride
    rx, ry, rw, rh = region
    rgb = np.empty((rh, rw, 3), np.uint8)
    for done, block in enumerate(blocks):
        if len(blocks) > 1:
            progress.step("synthesis", done, len(blocks))
        ((cy, ch), (cx, cw)), ((ya, yb), (xa, xb)) = _with_halo(header, block, halo)
        out = _to_uint8(model.decode(values[:, ya:yb, xa:xb]))
        # pixels of the block's core, clipped to the region
        y0, x0 = max((ya + cy) * s, ry), max((xa + cx) * s, rx)
        y1, x1 = min((ya + cy + ch) * s, ry + rh), min((xa + cx + cw) * s, rx + rw)
        rgb[y0 - ry:y1 - ry, x0 - rx:x1 - rx] = out[y0 - ya * s:y1 - ya * s, x0 - xa * s:x1 - xa * s]
    if header.mode == "L":
        return np.rint(rgb.mean(axis=2)).astype(np.uint8)
    return rgb


def latent_values(parsed, model, channels=None, tiles=None):
    """Stage 2 of decoding: entropy-decode the chosen channels of the chosen tiles into latent values, float32 (C, latent_h, latent_w).

    These are what the decoder network takes.  Format 3: ŷ (``coded_latents``),
    and channels not asked for hold the hyperprior's guess, the base floor(mean);
    in a file with a quality field, times the inverse gain of that quality.
    Formats 1 and 2: codebook values, and channels not asked for hold 0.
    Tiles not asked for hold 0.
    """
    h = parsed.header
    if h.version < 3:
        return read_symbols(parsed, channels, tiles).astype(np.float32) + h.codebook_min
    gain = gain_of(h, model)
    values = coded_latents(parsed, model, channels, tiles, gain)
    return values if gain is None else values * gain.inverse[:, None, None]


def coded_latents(parsed, model, channels=None, tiles=None, gain=None):
    """The ŷ a format-3 file codes, float32 (C, latent_h, latent_w): ``latent_values`` before any inverse gain."""
    h = parsed.header
    wanted = _channel_list(channels, h.channels)
    em = model.entropy_model
    z = decode_z(parsed, em)
    values = np.zeros((h.channels, h.latent_h, h.latent_w), np.float32)
    for t in range(h.n_tiles) if tiles is None else tiles:
        y, x, th, tw = rect = h.tile_rect(t)
        base, index = em.tile_parameters(z, rect, gain)
        chunks = parsed.tile_chunks(t, wanted)
        block = base.astype(np.float32)
        block[wanted] = hyperprior.decode_tile(em, chunks.payload, chunks.modes, chunks.sizes, base[wanted], index[wanted],
                                               h.codebook_min, h.codebook_size)
        values[:, y:y + th, x:x + tw] = block
    return values


def decode_z(parsed, entropy_model):
    """The ẑ symbols of a format-3 file, uint8 (z_channels, zh, zw)."""
    h = parsed.header
    zh, zw = h.z_shape
    chunks = parsed.z_chunks()
    shape = (h.z_channels, zh, zw)
    return entropy_model.z_tables.decode(chunks.payload, chunks.modes, chunks.sizes, _z_table_index(shape)).reshape(shape)


def _z_table_index(shape):
    """Table indices for ẑ (z_channels, zh, zw) coded as one row: channel c uses z table c."""
    channels, zh, zw = shape
    return np.repeat(np.arange(channels, dtype=np.uint8), zh * zw)[None]


def read_symbols(parsed, channels=None, tiles=None):
    """Entropy-decode the chosen channels of the chosen tiles into (C, latent_h, latent_w) symbol indices.

    Channels (and tiles) not asked for hold the index of the value 0, the neutral latent.
    """
    h = parsed.header
    wanted = _channel_list(channels, h.channels)
    zero = min(max(-h.codebook_min, 0), h.codebook_size - 1)
    symbols = np.full((h.channels, h.latent_h, h.latent_w), zero, np.uint8)
    for (y, x, th, tw), block in _decoded_tiles(parsed, wanted, tiles):
        symbols[wanted, y:y + th, x:x + tw] = block
    return symbols


def _decoded_tiles(parsed, wanted, tiles=None):
    """Yield (tile rectangle, symbols of the wanted channels in it) for each tile."""
    h = parsed.header
    for t in range(h.n_tiles) if tiles is None else tiles:
        y, x, th, tw = h.tile_rect(t)
        chunks = parsed.tile_chunks(t, wanted)
        decoded = fse.decode_channels(chunks.payload, chunks.modes, chunks.sizes, th * tw, h.codebook_size, width=tw)
        yield (y, x, th, tw), decoded.reshape(len(wanted), th, tw)


def read_latents(data, channels=None, max_pixels=images.DEFAULT_MAX_PIXELS):
    """Latent values of an l3ic file without running the decoder network: int16 (len(channels), h, w).

    Formats 1 and 2: codebook values, and this is random access: only the
    chosen channels are entropy-decoded, and only they are held in memory.
    Format 3: ŷ (``latent_values``), which needs the installed model the file
    names for its entropy model (not its networks).
    ``max_pixels`` refuses files claiming larger images before anything is
    allocated, as ``Codec.decode`` does.  ``data``: bytes or a path.
    """
    parsed = container.L3icFile.parse(_file_bytes(data), max_pixels=max_pixels)
    h = parsed.header
    wanted = _channel_list(channels, h.channels)
    if h.flags & container.FLAG_LOSSLESS:
        raise L3icError("this file stores a tiny image losslessly, as pixels: it has no latents")
    if h.version >= 3:
        folder = find_decoder(h.model_name, h.decoder_hash)
        if folder is None:
            raise ModelError("this file needs model %r (identity %s), which is not installed" % (h.model_name, h.decoder_hash.hex()[:12]))
        model = _checked_against(h, Model(folder, "cpu"))
        return coded_latents(parsed, model, wanted, gain=gain_of(h, model))[wanted].astype(np.int16)
    latents = np.empty((len(wanted), h.latent_h, h.latent_w), np.int16)
    for (y, x, th, tw), block in _decoded_tiles(parsed, wanted):
        latents[:, y:y + th, x:x + tw] = block.astype(np.int16) + h.codebook_min
    return latents


def read_info(data, max_pixels=images.DEFAULT_MAX_PIXELS):
    """The header of an l3ic file as a dict (no model needed, nothing decoded).

    ``source`` is present when the encoder changed the source beyond what
    decoding restores (16-bit samples reduced to 8 bits, CMYK to RGB, ...).
    ``data``: bytes or a path.
    """
    data = _file_bytes(data)
    return describe(container.L3icFile.parse(data, max_pixels=max_pixels), len(data))


def describe(parsed, n_bytes):
    """``read_info`` of an already parsed file of ``n_bytes`` bytes (the Pillow plugin parses once)."""
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
        info["quality"] = h.quality / QUALITY_SCALE
    if h.flags & container.FLAG_LOSSLESS:
        info["lossless"] = True
    record = parsed.side_record(images.SOURCE)
    if record is not None:
        info["source"] = images.read_source_record(record)
    return info


def _file_bytes(data):
    """The bytes of an l3ic file, given as bytes or as a path (str or os.PathLike)."""
    if isinstance(data, (str, os.PathLike)):
        return read_input(os.fspath(data))
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    raise L3icError("expected an l3ic file: bytes or a path, got %s" % type(data).__name__)


def _checked_latents(latents, model):
    """Latent values for ``model``'s decoder as float32 (C, h, w); L3icError (ModelError for the channel count)
    for anything its decoder cannot take."""
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


def _channel_list(channels, count):
    if channels is None:
        return list(range(count))
    try:
        wanted = [whole_number(c, "a channel", "channel index", least=0) for c in channels]
    except TypeError:
        raise L3icError("channels must be a list of channel indices, got %r" % (channels,))
    if not wanted or len(set(wanted)) != len(wanted) or min(wanted) < 0 or max(wanted) >= count:
        raise L3icError("channels must be distinct indices in 0..%d" % (count - 1))
    return wanted


def _lossless_pixels(parsed, region):
    """The pixels of a lossless file (``l3ic.lossless``) in ``region`` (x, y, w, h)."""
    h = parsed.header
    x, y, w, hh = region
    return np.ascontiguousarray(lossless.unpack(parsed.side_record(container.LOSSLESS), h.height, h.width, h.mode)[y:y + hh, x:x + w])


def _checked_region(region, header):
    """(x, y, w, h) of the pixels to decode; the whole image by default."""
    if region is None:
        return 0, 0, header.width, header.height
    try:
        x, y, w, h = (whole_number(v, "a region coordinate", "pixels", least=0) for v in region)
    except (TypeError, ValueError):
        raise L3icError("region must be (x, y, width, height) in whole pixels, got %r" % (region,))
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > header.width or y + h > header.height:
        raise L3icError("region %d,%d,%d,%d is not inside the %dx%d image" % (x, y, w, h, header.width, header.height))
    return x, y, w, h


def _blocks(header, region):
    """Latent rectangles to run the decoder on: the tiles (or the one-tile latent) cut down to the region."""
    s = header.stride
    x, y, w, h = region
    ly0, lx0, ly1, lx1 = y // s, x // s, -(-(y + h) // s), -(-(x + w) // s)
    blocks = []
    for t in range(header.n_tiles):
        ty, tx, th, tw = header.tile_rect(t)
        by0, bx0, by1, bx1 = max(ty, ly0), max(tx, lx0), min(ty + th, ly1), min(tx + tw, lx1)
        if by0 < by1 and bx0 < bx1:
            blocks.append((by0, bx0, by1 - by0, bx1 - bx0))
    return blocks


def _tiles_under(header, blocks, halo):
    """Tiles whose symbols the blocks need, ``halo`` cells around them included."""
    needed = set()
    for block in blocks:
        (ya, yb), (xa, xb) = _with_halo(header, block, halo)[1]
        for t in range(header.n_tiles):
            ty, tx, th, tw = header.tile_rect(t)
            if ty < yb and ya < ty + th and tx < xb and xa < tx + tw:
                needed.add(t)
    return sorted(needed)


def _crop_side_data(side_data, header, region):
    """Side data for a region: the alpha plane is cropped like the pixels."""
    x, y, w, h = region
    if images.ALPHA not in side_data or (w, h) == (header.width, header.height):
        return side_data
    alpha = np.frombuffer(side_data[images.ALPHA], np.uint8)
    if alpha.size != header.width * header.height:
        return side_data  # to_pil reports the damage
    cropped = dict(side_data)
    cropped[images.ALPHA] = np.ascontiguousarray(alpha.reshape(header.height, header.width)[y:y + h, x:x + w]).tobytes()
    return cropped


def _with_halo(header, rect, halo):
    """For a tile rect, the latent window to run a network on and where the tile sits inside it.

    Returns ((cy, ch), (cx, cw)) = the tile's offset and size within the window,
    and ((ya, yb), (xa, xb)) = the window, clipped to the latent.
    """
    y, x, h, w = rect
    ya, xa = max(0, y - halo), max(0, x - halo)
    yb, xb = min(header.latent_h, y + h + halo), min(header.latent_w, x + w + halo)
    return ((y - ya, h), (x - xa, w)), ((ya, yb), (xa, xb))


def _on_canvas(header, region):
    """A region (x, y, w, h) of the image in the pixels of the decoded latent: shifted by the header's margin."""
    x, y, w, h = region
    my, mx = header.margin
    return x + mx * header.stride, y + my * header.stride, w, h


def _canvas(rgb, header):
    """The image with its margin (``header.margin`` cells on each side) edge-replicated around it, as far as the
    latent reaches; without a margin the image itself (``analyse`` pads it to the stride)."""
    my, mx = header.margin
    if not (my or mx):
        return rgb
    s, h, w = header.stride, rgb.shape[0], rgb.shape[1]
    return np.pad(rgb, ((my * s, header.latent_h * s - h - my * s), (mx * s, header.latent_w * s - w - mx * s), (0, 0)),
                  mode="edge")


def _pad_to(rgb, stride):
    """Edge-replicate the bottom/right borders up to a multiple of the stride."""
    h, w = rgb.shape[:2]
    return np.pad(rgb, ((0, -h % stride), (0, -w % stride), (0, 0)), mode="edge")


def _to_uint8(unit_float):
    return np.clip(np.rint(unit_float * 255.0), 0, 255).astype(np.uint8)


TARGET_TOLERANCE = 0.01  # the quality search stops at a file within 1 % below the target


@dataclass(frozen=True)
class Encoded:
    """An encode's result: the file, the model and quality (q 0..100; None for a model without continuous
    quality) it was made with, and a one-line note for the user (or None)."""

    data: bytes
    model: str
    quality: Optional[float]
    note: Optional[str] = None


def encode_picture(picture, options, codec_for):
    """Encode an ``l3ic.image.Picture`` with validated ``EncodeOptions``: the one code path of the command-line
    tools, the Ray job and the Pillow plugin.  ``codec_for(name)`` returns a Codec for a model name (callers cache
    them).  With ``target_bpp`` the quality is searched (``encode_to_target``)."""
    if options.target_bpp is not None:
        return encode_to_target(picture, options.target_bpp, codec_for, options.refine)
    codec = codec_for(options.model)
    data = codec.encode(picture, refine=options.refine, quality=options.quality)
    return Encoded(data, options.model, codec.default_quality if options.quality is None else options.quality)


def encode_to_target(picture, target_bpp, codec_for, refine=0):
    """The largest file within ``target_bpp`` on the ``-q`` scale users type, as ``Encoded``: the q it records
    reproduces the file with ``-q``.

    Like ``cwebp -size``, but by search on q (``l3ic.quality``): each q is
    encoded as ``-q`` encodes it, with the model ``model_for`` gives it.  File
    size grows with q, so a bracketed search (log size interpolated linearly
    in q, alternating with bisection steps) finds the largest q whose file
    fits, stopping within TARGET_TOLERANCE.  A model's encoder network runs
    once: only the entropy coding depends on q.  A target below the smallest
    file (q 0) or above the largest (q 100) gives that file and a note.  With
    ``refine``, the chosen q is then refined, which keeps the size.
    """
    options = EncodeOptions.validated(target_bpp=target_bpp, refine=refine)
    pixels = picture.width * picture.height
    budget = options.target_bpp * pixels / 8.0
    file_at = _files_by_quality(picture, codec_for)
    lo, hi = 0, 100 * QUALITY_SCALE
    units, data, note = lo, file_at(lo), None
    if len(data) > budget:
        note = "no quality reaches %.3f bpp: the smallest file (q 0) is %.3f bpp" % (options.target_bpp, 8.0 * len(data) / pixels)
    else:
        units, data = _largest_within(file_at, lo, hi, data, budget)
        if units == hi and len(data) < (1.0 - TARGET_TOLERANCE) * budget:
            note = "no quality needs %.3f bpp: the largest file (q 100) is %.3f bpp" % (options.target_bpp, 8.0 * len(data) / pixels)
    name = model_for(units)
    if options.refine:  # never larger than the plain file: within the budget
        data = codec_for(name).encode(picture, refine=options.refine, quality=units / QUALITY_SCALE)
    else:
        data = codec_for(name).lossless_or(picture, data)
    if len(data) > budget >= len(file_at(units)):  # a lossless tiny image over the budget: the lossy file fits
        data = file_at(units)
    return Encoded(data, name, units / QUALITY_SCALE, note)


def _files_by_quality(picture, codec_for):
    """A function q (hundredths) -> the file of ``picture`` at q, with the model ``-q`` takes for it; each model's
    encoder network runs on its first call only."""
    analysed = {}

    def file_at(units):
        name = model_for(units)
        codec = codec_for(name)
        header = codec.header_for(picture, units / QUALITY_SCALE)
        if name not in analysed:
            analysed[name] = codec.analyse(picture.rgb(), header)
        tiles, z_chunks = codec.code(analysed[name], header)
        return container.write(header, tiles, picture.side_data, z_chunks)

    return file_at


def _largest_within(file_at, lo, hi, bottom, budget):
    """(q, file) of the largest q in lo..hi whose file is at most ``budget`` bytes, given ``bottom`` = file_at(lo)
    fits: stops early at a file within TARGET_TOLERANCE of the budget."""
    top = file_at(hi)
    if len(top) <= budget:
        return hi, top
    best, sizes, bisect = (lo, bottom), {lo: len(bottom), hi: len(top)}, False
    while hi - lo > 1 and sizes[lo] < (1.0 - TARGET_TOLERANCE) * budget:
        if bisect:
            q = (lo + hi) // 2
        else:
            t = (np.log(budget) - np.log(sizes[lo])) / (np.log(sizes[hi]) - np.log(sizes[lo]))
            q = int(round(lo + t * (hi - lo)))
        q, bisect = min(max(q, lo + 1), hi - 1), not bisect
        data = file_at(q)
        sizes[q] = len(data)
        if len(data) <= budget:
            lo, best = q, (q, data)
        else:
            hi = q
    return best
