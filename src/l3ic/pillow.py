"""Pillow plugin: ``import l3ic.pillow`` and Pillow reads and writes .l3ic.

    import l3ic.pillow
    from PIL import Image
    Image.open("photo.l3ic").save("photo.png")
    Image.open("photo.png").save("photo.l3ic", quality=80)      # 0..100, "high", model="path/to/model", target_bpp=0.5

Follows Pillow's plugin conventions (see ``WebPImagePlugin``): an
``ImageFile`` subclass whose ``_open`` reads only the header (size, mode,
``info``: ICC profile, EXIF and the l3ic header as ``info["l3ic"]``) and which
decodes in ``load()``, handing Pillow raw pixels; and a save handler,
registered with ``register_open``/``register_save``/``register_extension``/
``register_mime``.  One ``Codec`` per model is created on first use and
shared.  A file whose header is not valid l3ic is "not identified" (Pillow's
``UnidentifiedImageError``); a decoding or encoding failure is an ``OSError``
carrying the l3ic message; a bad save option is a ``ValueError``.

Save options: ``quality`` (a number 0..100, or a preset ``"low"``,
``"medium"``, ``"high"``; ``l3ic.quality``) and/or ``model`` (a model name or
folder), or ``target_bpp`` (the largest file within it, searched over the
quality); ``refine`` (steps of encoder-side refinement, default 0);
``strip=True`` drops ICC and EXIF; ``icc_profile=`` and
``exif=`` replace the image's own (an empty value drops it).  As with the
command-line tools, EXIF orientation is applied before encoding.

Works with Pillow 8 and later.
"""
import io

from PIL import Image, ImageFile

from l3ic import container
from l3ic import image as images
from l3ic.codec import CodecCache, encode_picture
from l3ic.errors import FormatError, L3icError
from l3ic.options import EncodeOptions
from l3ic.reader import describe

FORMAT = "L3IC"
_codec = CodecCache(max_pixels=container.MAX_PIXELS)  # the shared Codec of each model; Pillow's own
# decompression-bomb check (in Image.open) bounds the size


def _accept(prefix):
    return prefix[:4] == container.MAGIC


def _raw_tile(size, rawmode):
    """One tile of raw pixels; ``ImageFile._Tile`` exists only in Pillow >= 11, older ones take a tuple."""
    tile = getattr(ImageFile, "_Tile", None)
    args = ("raw", (0, 0) + tuple(size), 0, rawmode)
    return tile(*args) if tile is not None else args


class L3icImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "l3ic learned lossy image"
    _l3ic = None  # the file's bytes until load() has decoded them

    def _open(self):
        data = self.fp.read()
        try:
            parsed = container.L3icFile.parse(data)  # MAX_PIXELS: Pillow's own bomb check follows _open
            side = parsed.side_data  # CRC-checked here, so a damaged ICC/EXIF record is not identified either
            header = describe(parsed, len(data))
        except FormatError as e:  # Pillow's convention: SyntaxError means "not this format"
            raise SyntaxError(str(e))
        self._l3ic = data
        mode = header["mode"] + ("A" if images.ALPHA in side else "")
        if isinstance(getattr(Image.Image, "mode", None), property):  # Pillow >= 10.1
            self._mode = mode
        else:
            self.mode = mode
        self._size = (header["width"], header["height"])
        self.info["l3ic"] = header
        for key, tag in (("icc_profile", images.ICC), ("exif", images.EXIF)):
            if side.get(tag):
                self.info[key] = side[tag]

    def load(self):
        if self._l3ic is not None:
            try:
                picture = _codec.for_file(self.info["l3ic"]["model"]).decode_to_pil(self._l3ic)
            except L3icError as e:
                raise OSError("cannot decode l3ic image: %s" % e) from e
            if self.fp is not None and getattr(self, "_exclusive_fp", False):
                self.fp.close()
            self.fp = io.BytesIO(picture.tobytes())
            self.tile = [_raw_tile(self.size, picture.mode)]
            self._l3ic = None
        return super().load()

    def load_seek(self, pos):
        # Defining load_seek keeps ImageFile.load from memory-mapping self.filename (the .l3ic file itself) as
        # raw pixels, which it would otherwise do for L/RGBA images whenever the file is large enough.
        self.fp.seek(pos)


def _save(im, fp, filename):
    params = im.encoderinfo
    try:
        chosen = EncodeOptions.validated(params.get("model"), params.get("quality"), params.get("target_bpp"),
                                         params.get("refine", 0))
    except L3icError as e:  # Pillow's convention for a bad save option
        raise ValueError("l3ic %s" % e) from e
    strip = params.get("strip", False)
    try:
        picture = images.from_pil(im, strip=strip)
        if not strip:
            _override_metadata(picture, params)
        data = encode_picture(picture, chosen, _codec).data
    except L3icError as e:
        raise OSError("cannot write l3ic image: %s" % e) from e
    fp.write(data)


def _override_metadata(picture, params):
    """``icc_profile=`` / ``exif=`` save options replace the image's own, as with Pillow's other formats."""
    for key, tag in (("icc_profile", images.ICC), ("exif", images.EXIF)):
        if key not in params:
            continue
        value = params[key]
        if isinstance(value, Image.Exif):
            value = value.tobytes()
        if value:
            picture.side_data[tag] = bytes(value)
        else:
            picture.side_data.pop(tag, None)


Image.register_open(FORMAT, L3icImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, ".l3ic")
Image.register_mime(FORMAT, "image/x-l3ic")
