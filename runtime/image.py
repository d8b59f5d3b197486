"""From user images to pixel arrays and back.

The codec itself only sees 8-bit RGB (grayscale is coded as RGB and turned back
into one channel on decode).  Everything else a photo carries is normalised or
kept here: EXIF orientation is applied, 16-bit samples are reduced to 8 bits,
palette/CMYK/other modes become RGB, and alpha, the ICC profile and EXIF travel
losslessly as side data of the l3ic file (``--strip`` drops ICC and EXIF).
"""
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from runtime.atomic import write_atomic
from runtime.errors import FormatError, ImageError

DEFAULT_MAX_PIXELS = 1 << 27  # 134 Mpx: larger inputs need an explicit --max-pixels
ICC, EXIF, ALPHA = "ICCP", "EXIF", "ALPH"


class Picture:
    """Pixels the codec can code, plus what must survive the round trip.

    ``pixels``: uint8 array, (H, W, 3) for mode 'RGB' or (H, W) for mode 'L'.
    ``side_data``: tag -> bytes (ICC profile, EXIF, alpha plane).
    ``notes``: lossy conversions applied on input, to tell the user.
    """

    def __init__(self, pixels, mode, side_data=None, notes=()):
        self.pixels, self.mode = pixels, mode
        self.side_data = dict(side_data or {})
        self.notes = list(notes)

    @property
    def height(self):
        return self.pixels.shape[0]

    @property
    def width(self):
        return self.pixels.shape[1]

    def rgb(self):
        """(H, W, 3) uint8 view for the encoder."""
        if self.mode == "L":
            return np.repeat(self.pixels[:, :, None], 3, axis=2)
        return self.pixels


def from_array(array):
    """A numpy image: (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grayscale, uint8."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ImageError("image array must be uint8, got %s" % array.dtype)
    if array.ndim == 2:
        return _checked(Picture(array, "L"))
    if array.ndim == 3 and array.shape[2] == 3:
        return _checked(Picture(array, "RGB"))
    if array.ndim == 3 and array.shape[2] == 4:
        return _checked(Picture(array[:, :, :3], "RGB", {ALPHA: np.ascontiguousarray(array[:, :, 3]).tobytes()}))
    raise ImageError("image array must have shape (H, W), (H, W, 3) or (H, W, 4), got %s" % (array.shape,))


def from_pil(image, strip=False):
    """A Pillow image in any mode, normalised as described in the module docstring."""
    side, notes = {}, []
    if not strip:
        if image.info.get("icc_profile"):
            side[ICC] = image.info["icc_profile"]
    image = ImageOps.exif_transpose(image)  # also removes the orientation tag
    if not strip:
        exif = image.getexif()
        if len(exif):
            side[EXIF] = exif.tobytes()
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        wide = np.asarray(image).astype(np.float64)
        scale = 255.0 / 65535.0 if mode != "F" else 255.0
        pixels = np.clip(np.rint(wide * scale), 0, 255).astype(np.uint8)
        notes.append("%s samples reduced to 8 bits" % ("16-bit" if mode != "F" else "float"))
        return _checked(Picture(pixels, "L", side, notes))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "1":
        image = image.convert("L")
    elif mode == "CMYK":
        notes.append("CMYK converted to RGB")
    if image.mode in ("LA", "La", "RGBA", "RGBa"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            side[ALPHA] = np.ascontiguousarray(alpha).tobytes()
    if image.mode in ("L", "LA", "La"):
        return _checked(Picture(np.asarray(image.convert("L")), "L", side, notes))
    return _checked(Picture(np.asarray(image.convert("RGB")), "RGB", side, notes))


def load(path, max_pixels=DEFAULT_MAX_PIXELS, strip=False):
    """Read an image file with Pillow, refusing decompression bombs before decoding pixels."""
    if os.path.isdir(path):
        raise ImageError("%s is a directory, not an image" % path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as image:
                    if image.width * image.height > max_pixels:
                        raise ImageError("%s is %dx%d = %d pixels, over the limit of %d (see --max-pixels)"
                                         % (path, image.width, image.height, image.width * image.height, max_pixels))
                    image.load()
                    return from_pil(image, strip)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except FileNotFoundError:
        raise ImageError("no such file: %s" % path)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError("%s is not an image Pillow can read" % path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError("cannot read image %s: %s" % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))


def psnr(a, b):
    """PSNR in dB (peak 255) over all pixels and channels of two same-shape images."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _checked(picture):
    if picture.width < 1 or picture.height < 1:
        raise ImageError("image has no pixels (%dx%d)" % (picture.width, picture.height))
    return picture


def to_pil(pixels, mode, side_data):
    """Decoded pixels and the file's side data -> a Pillow image ready to save."""
    image = Image.fromarray(pixels, mode)
    alpha = side_data.get(ALPHA)
    if alpha is not None:
        if len(alpha) != image.width * image.height:
            raise FormatError("corrupt l3ic file: alpha plane has %d bytes for %dx%d pixels" % (len(alpha), image.width, image.height))
        image.putalpha(Image.frombuffer("L", image.size, alpha, "raw", "L", 0, 1))
    if side_data.get(ICC):
        image.info["icc_profile"] = side_data[ICC]
    if side_data.get(EXIF):
        image.info["exif"] = side_data[EXIF]
    return image


def save(image, path, overwrite=False):
    """Save a Pillow image atomically in the format its file extension names."""
    ext = os.path.splitext(path)[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError("cannot write %r images; use an extension such as .png" % (ext or path))
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        image = image.convert(image.mode[:-1])  # JPEG has no alpha
    params = {k: image.info[k] for k in ("icc_profile", "exif") if image.info.get(k)}

    def write(f):
        buf = io.BytesIO()
        image.save(buf, format=fmt, **params)
        f.write(buf.getvalue())

    write_atomic(path, write, overwrite)
