"""Pillow plugin: ``import runtime.pillow`` and Pillow reads and writes .l3ic.

    import runtime.pillow
    from PIL import Image
    Image.open("photo.l3ic").save("photo.png")
    Image.open("photo.png").save("photo.l3ic", quality="high")      # or model="path/to/model", target_bpp=0.5

Follows Pillow's plugin conventions (see ``WebPImagePlugin``): an
``ImageFile`` subclass that decodes in ``load()`` and hands Pillow raw pixels,
and a save handler, registered with ``register_open``/``register_save``/
``register_extension``/``register_mime``.  One ``Codec`` per model is created
on first use and shared.
"""
import io

from PIL import Image, ImageFile

from runtime import image as images
from runtime.codec import Codec, encode_to_target, read_info
from runtime.model import DEFAULT_MODEL

FORMAT = "L3IC"
_codecs = {}


def _codec(model):
    if model not in _codecs:
        _codecs[model] = Codec(model)
    return _codecs[model]


def _accept(prefix):
    return prefix[:4] == b"L3IC"


class L3icImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "l3ic learned lossy image"

    def _open(self):
        self._l3ic = self.fp.read()
        info = read_info(self._l3ic)
        has_alpha = images.ALPHA in info["side_data"]
        self._mode = info["mode"] + ("A" if has_alpha else "")
        self._size = (info["width"], info["height"])
        self._model = info["model"]
        self.info["l3ic"] = info

    def load(self):
        if self.tile or not hasattr(self, "_decoded"):
            picture = _codec(self._model).decode_to_pil(self._l3ic)
            self._decoded = True
            for key in ("icc_profile", "exif"):
                if key in picture.info:
                    self.info[key] = picture.info[key]
            self.fp = io.BytesIO(picture.tobytes())
            self.tile = [ImageFile._Tile("raw", (0, 0) + self.size, 0, picture.mode)]
        return super().load()


def _save(im, fp, filename):
    params = im.encoderinfo
    target = params.get("target_bpp")
    picture = images.from_pil(im, strip=params.get("strip", False))
    if target is not None:
        data, _ = encode_to_target(picture, float(target), _codec)
    else:
        data = _codec(params.get("model") or params.get("quality") or DEFAULT_MODEL).encode(picture)
    fp.write(data)


Image.register_open(FORMAT, L3icImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, ".l3ic")
Image.register_mime(FORMAT, "image/x-l3ic")
