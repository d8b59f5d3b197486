"""The l3ic codec: the stages of encoding and decoding, put together for one model.

Encoding: ``analysis`` (header, encoder network, quantisation to ŷ, with
``refine`` searching better ŷ) -> ``entropy`` (ŷ and ẑ to chunks) ->
``container`` (the file).  Decoding: ``container`` -> ``entropy`` (chunks to
ŷ) -> ``synthesis`` (decoder network to pixels).  ``target`` searches the
quality for a file size.  ``Codec`` is the one code path behind the Python
API, the command-line tools, the Ray job and the Pillow plugin: it owns one
``Model`` (ONNX Runtime sessions created once and reused), its entropy coder
and a ``Tiling``, and on decode checks that a file was made by the model
before trusting it (decoding earlier releases' files with their legacy
decoders).
"""
import dataclasses
import os

import numpy as np
from PIL import Image

from l3ic import analysis, container, lossless, synthesis
from l3ic import image as images
from l3ic.entropy import coder_for
from l3ic.errors import ImageError, L3icError, ModelError
from l3ic.model import DEFAULT_MODEL, Model, find_decoder, is_model_name
from l3ic.options import CodecOptions, refine_steps
from l3ic.reader import file_bytes
from l3ic.target import Encoded, encode_to_target
from l3ic.tiling import Tiling, checked_region


class Codec:
    """Encode images to l3ic bytes and decode them, with one model.

    Args:
        model: ``"low"``, ``"medium"`` (default), ``"high"`` or a model folder.
        providers: ``None``/``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or a list of ONNX
            Runtime execution providers.
        max_pixels: image files and files claiming larger images are refused before decoding.
        threads: ONNX Runtime intra-op threads (default: all cores).
        tiling: a ``l3ic.tiling.Tiling`` (default ``Tiling()``): how the latent is cut into tiles and blocks.

    ``encode`` and ``decode`` are made of public stages, for tools that time,
    inspect or replace one of them (``benchmarks/speed.py``): encode is
    ``header_for`` -> ``analyse`` -> ``quantise`` -> ``code`` -> ``container.write``
    (``write`` does the last two); decode is ``parse`` -> ``synthesis.latent_values``
    -> ``synthesis.synthesise``.
    """

    def __init__(self, model=DEFAULT_MODEL, providers=None, max_pixels=images.DEFAULT_MAX_PIXELS, threads=None,
                 tiling=None):
        options = CodecOptions.validated(providers, max_pixels, threads)
        self.model = Model(model, options.providers, options.threads)
        self.max_pixels = options.max_pixels
        self.tiling = Tiling() if tiling is None else tiling
        if not isinstance(self.tiling, Tiling):
            raise L3icError("tiling must be a l3ic.tiling.Tiling, got %r" % (tiling,))
        self.coder = coder_for(self.model)
        self._coders = {self.model.decoder_hash: self.coder}  # model identity -> coder (and model) of legacy files

    @property
    def quality_range(self):
        """(lowest, highest) q (0..100) of a model trained for continuous quality, else None."""
        return self.model.quality_range

    @property
    def default_quality(self):
        """The q (0..100) an encode without one uses (the model's preset), or None without continuous quality."""
        return self.model.default_quality

    # ---- encoding ------------------------------------------------------------
    def encode(self, image, strip=False, refine=0, quality=None):
        """Compress an image to l3ic bytes.

        Args:
            image: uint8 array (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) gray, a Pillow image in any mode, an
                ``l3ic.image.Picture``, or the path (str or os.PathLike) of an image file.  Alpha is kept
                losslessly, so the decoded image has the input's shape and mode.
            strip: drop the ICC profile and EXIF of a Pillow image or file (kept by default).
            refine: steps of encoder-side refinement (``l3ic.refine``; 0 = off): a better image in the same file
                size, for about one decoder pass and a half per step; the file is never larger than the plain
                encode's, nor decodes worse.
            quality: q (0..100, in steps of 0.001) within ``quality_range`` for a model trained for continuous
                quality; default the model's preset.
        Returns:
            bytes: the file.  A tiny image may be stored losslessly (``lossless_or``).
        Raises:
            ImageError: for an image it cannot read; L3icError for a bad option.
        """
        refine = refine_steps(refine)
        picture = self._picture(image, strip)
        header = self.header_for(picture, quality)
        if refine:
            from l3ic.refine import refined_file  # only refining encodes load it
            data = refined_file(self, picture, header, refine)
        else:
            data = self.write(picture, header, self.quantise(self.analyse(picture.rgb(), header), header))
        return self.lossless_or(picture, data)

    def lossless_or(self, picture, data):
        """The lossless file of a tiny image where that is no larger, or where the lossy one would decode below
        ``lossless.MIN_PSNR`` (``l3ic.lossless``).

        Args:
            picture: the ``l3ic.image.Picture``.
            data: a lossy file of it.
        Returns:
            bytes: ``data`` or the lossless file.
        """
        if picture.width * picture.height > lossless.MAX_PIXELS or not self.model.has_hyperprior:
            return data
        header = dataclasses.replace(self.header_for(picture, lossless=True), flags=container.FLAG_LOSSLESS, quality=0)
        files = [container.write(header, [], dict(picture.side_data, **{container.LOSSLESS: record}))
                 for record in lossless.records(picture.pixels)]
        best = min(files, key=len)
        if len(best) <= len(data):
            return best
        small = max(picture.width, picture.height) <= lossless.SMALL_SIDE
        if small and images.psnr(picture.pixels, synthesis.decoded(*self.parse(data), self.tiling)) < lossless.MIN_PSNR:
            return best
        return data

    def encode_latents(self, image, refine=0, quality=None):
        """The quantised latents of an image, as the file codes them.

        Args:
            image, refine, quality: as ``encode`` takes them.
        Returns:
            float32 ŷ (C, ceil(H/s), ceil(W/s)), plus 2 * MARGIN on an axis of at most SMALL_SIDE pixels (the
            image then starts MARGIN cells in), gained at ``quality``: integers of the codebook, or for a model
            with a hyperprior, which codes them about its mean (``container.FLAG_MEAN_SHIFT``), quarters.
            Decode them with ``decode_latents`` at the same quality.
        """
        refine = refine_steps(refine)
        picture = self._picture(image, strip=True)
        header = self.header_for(picture, quality)
        if refine:
            from l3ic.refine import refined_latents
            latents = refined_latents(self.model, self.tiling, picture.rgb(), header, refine)
        else:
            latents = self.quantise(self.analyse(picture.rgb(), header), header)
        return latents.values.astype(np.float32)

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

    def header_for(self, picture, quality=None, lossless=False):
        """The first stage of encoding: what the file says of the picture (``l3ic.analysis.header_for``).

        Args:
            picture: the ``l3ic.image.Picture``.
            quality: q (0..100; default the model's preset).
            lossless: the header of a lossless file (no margin).
        Returns:
            its ``container.Header``.
        """
        return analysis.header_for(self.model, picture, self.tiling, self.model.quality_units(quality), lossless)

    def analyse(self, rgb, header):
        """Run the encoder network on an image, block by block (``l3ic.analysis.analyse``).

        Args:
            rgb: uint8 (H, W, 3), the image of ``header`` (``Picture.rgb()``).
            header: its ``container.Header`` (``header_for``).
        Returns:
            its ``l3ic.analysis.Analysis``.
        """
        return analysis.analyse(self.model, rgb, header, self.tiling)

    def quantise(self, analysed, header):
        """Quantise an ``Analysis`` at the gain of the header's quality (``Analysis.quantised``).

        Returns:
            the ``l3ic.analysis.Latents`` a file with ``header`` codes.
        """
        return analysed.quantised(self.model, self.model.gain_of(header), header.mean_shifted)

    def code(self, latents, header):
        """Entropy-code ``l3ic.analysis.Latents`` with the model's coder (``l3ic.entropy``).

        Returns:
            (one ``container.TileChunks`` per tile, the ẑ chunk or None), what ``container.write`` takes.
        """
        return self.coder.encode(latents, header)

    def write(self, picture, header, latents):
        """The last stages of encoding: ``code``, then ``container.write`` with the picture's side data.

        Returns:
            bytes: the file of ``picture`` with ``header`` coding ``latents``.
        """
        tiles, z_chunks = self.code(latents, header)
        return container.write(header, tiles, picture.side_data, z_chunks)

    # ---- decoding ------------------------------------------------------------
    def decode(self, data, channels=None, region=None):
        """Decompress an l3ic file.

        Args:
            data: the file, as bytes or a path.
            channels: decode only these latent channels (the others are the hyperprior's guess in format 3, zero
                in format 2); channel 0 is the most important, so ``range(k)`` is the best k-channel preview.
            region: (x, y, width, height) in pixels; only the tiles it needs are entropy-decoded and run
                through the decoder.
        Returns:
            uint8 array of the encoded image's shape: (H, W, 3) RGB, (H, W) gray, (H, W, 4) RGBA or (H, W, 2)
            gray + alpha (of the region).
        Raises:
            FormatError: for a damaged file; ModelError for a file of another model; L3icError for bad channels
            or a bad region.
        """
        return np.asarray(self.decode_to_pil(data, channels, region))

    def decode_to_pil(self, data, channels=None, region=None):
        """Like ``decode``, but returns a Pillow image carrying alpha, ICC profile and EXIF."""
        parsed = container.L3icFile.parse(file_bytes(data), max_pixels=self.max_pixels)
        h = parsed.header
        region = checked_region(region, h)
        coder = None if h.flags & container.FLAG_LOSSLESS else self.file_coder(h)  # a lossless file needs no model
        pixels = synthesis.decoded(parsed, coder, self.tiling, channels, region)
        return images.to_pil(pixels, h.mode, synthesis.cropped_side_data(parsed.side_data, h, region))

    def decode_latents(self, latents, quality=None):
        """Run the decoder network on latent values.

        Args:
            latents: (C, h, w), as ``encode_latents`` gives them.  Format-2 models take integer codebook values;
                format-3 models any finite values (ŷ are integers or quarters).
            quality: a model with gains multiplies the values by the inverse gain of this q (default its preset):
                give the quality ``encode_latents`` was given.
        Returns:
            uint8 RGB (h * stride, w * stride, 3), not cropped.
        """
        values = synthesis.checked_latents(latents, self.model)
        units = self.model.quality_units(quality)
        if units is not None:
            values = self.model.entropy_model.gain(units).invert(values)
        return images.to_uint8(self.model.run_decoder(values))

    def parse(self, data):
        """The first stage of decoding: parse a file and find the model that decodes it.

        Args:
            data: the file, as bytes or a path.
        Returns:
            (the ``container.L3icFile``, the entropy coder (``l3ic.entropy``) whose ``model`` decodes it: this
            codec's, or the legacy decoder of an earlier release that the file names).
        """
        parsed = container.L3icFile.parse(file_bytes(data), max_pixels=self.max_pixels)
        return parsed, self.file_coder(parsed.header)

    def decoder_for(self, h):
        """The ``l3ic.model.Model`` that decodes a file with header ``h``: this codec's or a legacy decoder.

        Raises:
            ModelError: if there is none, or the header does not fit it.
        """
        return self.file_coder(h).model

    def file_coder(self, h):
        """The entropy coder of the model that decodes a file with header ``h`` (``decoder_for``), each made once."""
        coder = self._coders.get(h.decoder_hash)
        if coder is None:  # a file of an earlier release of this model decodes with its legacy decoder
            folder = find_decoder(h.model_name, h.decoder_hash, current=False) if h.model_name == self.model.name else None
            if folder is None:
                m = self.model
                raise ModelError("this file was made with model %r (decoder %s), not with %r (decoder %s)"
                                 % (h.model_name, h.decoder_hash.hex()[:12], m.name, m.decoder_hash.hex()[:12]))
            coder = self._coders[h.decoder_hash] = coder_for(Model(folder, self.model.providers, self.model.threads))
        coder.model.check_header(h)
        return coder


class CodecCache:
    """One ``Codec`` per model name, created on first use and kept: what the tools, the Ray actors, the Pillow
    plugin and the benchmarks call ``codec_for`` (a batch worker may meet several models when decoding)."""

    def __init__(self, providers=None, threads=None, max_pixels=images.DEFAULT_MAX_PIXELS, tiling=None):
        self.providers, self.threads, self.max_pixels, self.tiling = providers, threads, max_pixels, tiling
        self.codecs = {}

    def __call__(self, model):
        """The Codec of ``model`` (a name or folder), with the cache's settings (as ``Codec`` takes them)."""
        if model not in self.codecs:
            self.codecs[model] = Codec(model, self.providers, self.max_pixels, self.threads, self.tiling)
        return self.codecs[model]

    def for_file(self, model_name):
        """The Codec of the model a file names (its header's ``model_name``): an installed model's name only,
        never a folder, since the name comes from the file.

        Raises:
            ModelError: if the name is not a model name, or no such model is installed.
        """
        if not is_model_name(model_name):
            raise ModelError("this file names model %r, which is not the name of an installed model" % model_name)
        return self(model_name)


def encode_picture(picture, options, codec_for):
    """Encode an ``l3ic.image.Picture``: the one code path of the command-line tools, the Ray job and the Pillow
    plugin.

    Args:
        options: validated ``l3ic.options.EncodeOptions``; with ``target_bpp`` the quality is searched
            (``l3ic.target.encode_to_target``).
        codec_for: a function model name -> Codec (a ``CodecCache``).
    Returns:
        an ``l3ic.target.Encoded``: the file, the model and quality it was made with, and a note for the user.
    """
    if options.target_bpp is not None:
        return encode_to_target(picture, options.target_bpp, codec_for, options.refine)
    codec = codec_for(options.model)
    data = codec.encode(picture, refine=options.refine, quality=options.quality)
    return Encoded(data, options.model, codec.default_quality if options.quality is None else options.quality)
