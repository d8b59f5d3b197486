"""From user images to pixel arrays and back.

The codec itself only sees 8-bit RGB (grayscale is coded as RGB and turned back
into one channel on decode).  Everything else a photo carries is normalised or
kept here:

* grayscale (L, 1-bit, 16-bit gray, gray palettes) is coded as mode L and
  decodes to a grayscale image; everything else becomes RGB;
* alpha (RGBA, LA, palettes with transparency) travels losslessly as the
  ``ALPH`` side-data record;
* the ICC profile and EXIF travel as ``ICCP`` / ``EXIF`` records and are
  written back into the decoded image (``--strip`` drops them); EXIF
  orientation is applied to the pixels and removed from the EXIF;
* lossy conversions of the source (16-bit or float samples reduced to 8 bits,
  CMYK/LAB/HSV/YCbCr converted to RGB, frames dropped) are noted for the user
  and recorded in the ``SRCF`` record, which ``python -m runtime.info`` shows.

Every failure to read an image is an ``ImageError`` with a one-line message.
"""
import hashlib
import io
import json
import os
import re
import warnings

import numpy as np
from PIL import Image

from l3ic.files import STDIO, read_input, write_atomic
from l3ic.errors import FormatError, ImageError, first_line

DEFAULT_MAX_PIXELS = 1 << 27  # 134 Mpx: larger inputs need an explicit --max-pixels
# What counts as an image in a folder, for every tool (l3ic encode, l3ic.batch_ray, export.train, the benchmarks).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")
ICC, EXIF, ALPHA, SOURCE = "ICCP", "EXIF", "ALPH", "SRCF"
EXIF_PREFIX = b"Exif\x00\x00"  # how JPEG APP1 (and Pillow's info["exif"]) wraps the TIFF structure
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
_ORIENTATION = 0x0112
DAMAGED = "unreadable or damaged file"  # what an error from Pillow without a message says
_BAND_BYTES = 16 << 20  # Pillow image -> numpy array in bands of about this size (no whole-image temporaries)


class Picture:
    """Pixels the codec can code, plus what must survive the round trip.

    ``pixels``: uint8 array, (H, W, 3) for mode 'RGB' or (H, W) for mode 'L'.
    ``side_data``: tag -> bytes (ICC profile, EXIF, alpha plane, source record).
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


# ---- listing ---------------------------------------------------------------------------------
def list_images(folder, suffixes=IMAGE_SUFFIXES, required=False):
    """Sorted paths of the files of ``folder`` (not recursive) whose names end with one of ``suffixes``, in any case.

    ``ImageError`` if ``folder`` is not a folder, or (``required``) it holds no such file.
    """
    if not os.path.isdir(folder):
        raise ImageError("image folder not found: %s" % folder)
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                   if n.lower().endswith(tuple(suffixes)) and os.path.isfile(os.path.join(folder, n)))
    if required and not paths:
        raise ImageError("no images in %s (files named *%s)" % (folder, ", *".join(suffixes)))
    return paths


def split_holdout(paths, count):
    """Split off ``count`` images for validation, chosen by a hash of the file name: ``(rest, held_out)``.

    The choice depends only on the names, so it is the same on every machine
    and for every run, and adding an image to the folder changes it by at most
    that image.  ``export.train --holdout N`` validates on these, and ``benchmarks.rd
    --holdout N`` measures on the same images.
    """
    if count <= 0:
        return paths, []
    key = lambda p: hashlib.sha256(os.path.basename(p).encode()).hexdigest()
    held = set(sorted(paths, key=key)[:count])
    return [p for p in paths if p not in held], sorted(held)


SMOOTH_BLOCK_STD = 1.5  # an 8x8 block is flat when its luma varies less than this (grey levels, standard deviation)


def flat_blocks(rgb):
    """(H // 8, W // 8) bool: which whole 8x8 blocks of an image are flat (luma std below ``SMOOTH_BLOCK_STD``)."""
    luma = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    h, w = luma.shape[0] // 8, luma.shape[1] // 8
    return luma[:h * 8, :w * 8].reshape(h, 8, w, 8).std(axis=(1, 3)) < SMOOTH_BLOCK_STD


def flat_fraction(rgb):
    """The share of an image's 8x8 blocks that are flat (``flat_blocks``): defocused backgrounds, sky and
    gradients, where a stride-8 codec's errors show first."""
    flat = flat_blocks(rgb)
    return float(flat.mean()) if flat.size else 0.0


def split_smooth(paths, count):
    """Hold out ``count`` smooth photos as an evaluation set: ``(rest, held_out)``.

    The photos are ranked by ``flat_fraction``, and every other one of the
    2 * ``count`` smoothest is held out, so training keeps half of the smoothest
    content.  The choice depends only on the pixels and names, so
    ``export.train --holdout-smooth N`` and ``benchmarks.rd --holdout-smooth N``
    agree on every machine.
    """
    if count <= 0:
        return paths, []
    ranked = sorted(paths, key=lambda p: (-flat_fraction(_rgb_of(p)), os.path.basename(p)))
    held = set(ranked[:2 * count:2])
    return [p for p in paths if p not in held], sorted(held)


def _rgb_of(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


# ---- reading ---------------------------------------------------------------------------------
def from_array(array):
    """A numpy image: (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grayscale; uint8, or uint16 (reduced to 8 bits)."""
    array = np.asarray(array)
    source = None
    if array.dtype == np.uint16:
        source = {"format": None, "mode": "L" if array.ndim == 2 else "RGB", "bits": 16}
        array = _reduce_16(array)
    elif array.dtype != np.uint8:
        raise ImageError("image array must be uint8 or uint16, got %s" % array.dtype)
    alpha = None
    if array.ndim == 3 and array.shape[2] == 4:
        array, alpha = array[:, :, :3], array[:, :, 3]
    elif not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ImageError("image array must have shape (H, W), (H, W, 3) or (H, W, 4), got %s" % (array.shape,))
    notes = ["16-bit samples reduced to 8 bits"] if source else []
    return _picture(array, "L" if array.ndim == 2 else "RGB", alpha, {}, notes, source)


def from_pil(image, strip=False, source=None):
    """A Pillow image in any mode, normalised as described in the module docstring.

    ``source``: what ``describe_file`` said about the file before Pillow loaded
    (and so unpacked) it; by default it is worked out from ``image``.
    """
    source = source or describe_file(image)
    notes = []
    frames = _frame_count(image)
    if frames > 1:
        notes.append("only the first of %d frames kept" % frames)
    if _orientation(image) in range(2, 9):
        from PIL import ImageOps  # (with ExifTags) only for an image that has an orientation to apply
        image = ImageOps.exif_transpose(image)  # also removes the orientation tag from info["exif"]
    icc = image.info.get("icc_profile") or None
    exif = exif_record(image.info.get("exif"))
    pixels, mode, alpha, icc = _planes(image, source, icc, notes)
    side = {}
    if not strip:
        if icc:
            side[ICC] = bytes(icc)
        if exif:
            side[EXIF] = exif
    return _picture(pixels, mode, alpha, side, notes, source)


def load(path, max_pixels=DEFAULT_MAX_PIXELS, strip=False):
    """Read an image file with Pillow, refusing decompression bombs before decoding pixels.

    Anything Pillow cannot open or decode (missing, empty, truncated, not an
    image, unsupported) is an ``ImageError`` with a one-line message.
    ``path`` ``-`` reads the image from standard input.
    """
    if path == STDIO:
        source, path = io.BytesIO(read_input(path)), "standard input"
    elif os.path.isdir(path):
        raise ImageError("%s is a directory, not an image" % path)
    else:
        source = path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd metadata on stderr: the CLI prints one line
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit, checked below
        try:
            image = _pillow_step(path, lambda: Image.open(source))
            with image:
                if image.width * image.height > max_pixels:
                    raise ImageError("%s is %dx%d = %d pixels, over the limit of %d (see --max-pixels)"
                                     % (path, image.width, image.height, image.width * image.height, max_pixels))
                source = describe_file(image)  # before load(), which forgets the file's sample layout
                _pillow_step(path, image.load)
                return from_pil(image, strip, source)
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _pillow_step(path, step):
    """Run a Pillow call on an untrusted file; its plugins raise many exception types on bad input."""
    try:
        return step()
    except FileNotFoundError:
        raise ImageError("no such file: %s" % path)
    except Image.UnidentifiedImageError:
        raise ImageError("%s is not an image Pillow can read" % path)
    except (MemoryError, KeyboardInterrupt):
        raise
    except OSError as e:
        raise ImageError("cannot read image %s: %s" % (path, first_line(e.strerror or e, DAMAGED)))
    except Exception as e:  # struct.error, SyntaxError, ValueError, IndexError, ... from a damaged file
        raise ImageError("cannot read image %s: %s" % (path, first_line(e, DAMAGED)))


def describe_file(image):
    """What the source is: {"format", "mode", "bits"}, as stored in the file.

    Called before ``load()``, it sees the raw layout Pillow is about to unpack:
    Pillow opens 16-bit RGB(A) and LA PNGs as 8-bit RGB(A), and this is the
    only place where the 16 bits are still visible.
    """
    tiles = getattr(image, "tile", None)  # only an ImageFile read from a file has tiles
    rawmode = _rawmode(tiles[0]) if tiles else ""
    mode = image.mode
    bits = 8
    if mode in ("I;16", "I;16B", "I;16L", "I;16N") or re.search(r";16", rawmode):
        bits = 16
        layout = rawmode.split(";")[0]
        mode = "L" if mode.startswith("I") else (layout if layout in ("L", "LA", "RGB", "RGBA") else mode)
    elif mode in ("I", "F"):
        bits = 32
    elif mode == "1":
        bits = 1
    return {"format": image.format, "mode": mode, "bits": bits}


def _rawmode(tile):
    """The raw sample layout of a Pillow tile ('RGB;16B', 'I;16', ...): its args, or their first item."""
    args = tile[3] if len(tile) > 3 else None
    if isinstance(args, tuple) and args:
        args = args[0]
    return args if isinstance(args, str) else ""


def _frame_count(image):
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception:  # counting frames reads the whole file, which may be damaged after the first frame
        return 1


def _orientation(image):
    try:
        return int(image.getexif().get(_ORIENTATION, 1))
    except Exception:  # an unparsable EXIF block: leave the pixels as they are
        return 1


def _planes(image, source, icc, notes):
    """(pixels, "L" or "RGB", alpha plane or None, ICC profile to keep) of a loaded Pillow image."""
    mode = image.mode
    if source["bits"] > 8:
        notes.append("%s samples reduced to 8 bits" % ("floating-point" if mode == "F" else "%d-bit" % source["bits"]))
    if mode == "F":
        return to_uint8(np.asarray(image, np.float64)), "L", None, icc
    if mode.startswith("I"):  # I;16*, or I as older Pillows open 16-bit PNGs
        return _reduce_16(np.clip(np.asarray(image), 0, 65535)), "L", None, icc
    if mode in ("P", "PA"):
        return _palette(image) + (icc,)
    if mode == "1":
        return _array(image.convert("L")), "L", None, icc
    if mode == "L":
        return _array(image), "L", None, icc
    if mode in ("LA", "La", "RGBA", "RGBa"):
        planes = _array(image.convert(mode[:-1] + "A") if mode.endswith("a") else image)  # premultiplied: undo
        if mode[0] == "L" or source["mode"] == "LA":  # Pillow opens 16-bit gray + alpha as RGBA
            return planes[:, :, 0], "L", planes[:, :, -1], icc
        return planes[:, :, :3], "RGB", planes[:, :, 3], icc
    if mode in ("RGB", "RGBX"):
        return _array(image if mode == "RGB" else image.convert("RGB")), "RGB", None, icc
    if mode == "CMYK":
        rgb, converted = _cmyk_to_rgb(image, icc)
        notes.append("CMYK converted to RGB" + ("" if converted else " without a colour profile (approximate colours)"))
        return _array(rgb), "RGB", None, None  # a CMYK profile does not describe the RGB pixels
    try:
        rgb = image.convert("RGB")
    except (ValueError, OSError):
        raise ImageError("unsupported image mode %s" % mode)
    notes.append("%s converted to RGB" % mode)
    return _array(rgb), "RGB", None, icc


def _palette(image):
    """(pixels, mode, alpha) of a palette image: gray palettes become L, others RGB; transparency, alpha."""
    transparent = image.mode == "PA" or "transparency" in image.info
    palette = image.getpalette() or []
    indices = np.asarray(image.getchannel(0) if image.mode == "PA" else image)
    used = np.flatnonzero(np.bincount(indices.ravel(), minlength=256))
    colours = np.zeros((256, 3), np.uint8)
    table = np.asarray(palette[:768], np.uint8)
    colours.reshape(-1)[:len(table)] = table
    gray = bool(np.all(colours[used, 0] == colours[used, 1]) and np.all(colours[used, 1] == colours[used, 2]))
    planes = _array(image.convert("RGBA" if transparent else "RGB"))
    alpha = planes[:, :, 3] if transparent else None
    pixels = planes[:, :, 0] if gray else planes[:, :, :3]
    return pixels, "L" if gray else "RGB", alpha


def _cmyk_to_rgb(image, icc):
    """(RGB image, whether the embedded ICC profile was used); Pillow's plain conversion when it cannot be."""
    if icc and icc[16:20] == b"CMYK":
        try:
            from PIL import ImageCms
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"), True
        except Exception:  # Pillow without littlecms, or a damaged profile
            pass
    return image.convert("RGB"), False


def _array(image):
    """np.asarray(image), copied in bands so that a large image is never held twice more (tobytes + join)."""
    width, height = image.size
    channels = len(image.getbands())
    rows = max(1, _BAND_BYTES // max(1, width * channels))
    if rows >= height:
        return np.asarray(image)
    out = np.empty((height, width, channels) if channels > 1 else (height, width), np.uint8)
    for y in range(0, height, rows):
        out[y:y + rows] = np.asarray(image.crop((0, y, width, min(height, y + rows))))
    return out


def _reduce_16(values):
    """16-bit samples to 8 bits, rounding (v * 255 / 65535)."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _picture(pixels, mode, alpha, side, notes, source):
    picture = Picture(pixels, mode, side, notes)
    if picture.width < 1 or picture.height < 1:
        raise ImageError("image has no pixels (%dx%d)" % (picture.width, picture.height))
    if alpha is not None:  # even when opaque: decoding gives back the user's mode (zstd makes that a few bytes)
        picture.side_data[ALPHA] = np.ascontiguousarray(alpha, np.uint8).tobytes()
    if notes:
        picture.side_data[SOURCE] = source_record(source, notes)
    return picture


# ---- side data ---------------------------------------------------------------------------------
def exif_record(exif):
    """Pillow's EXIF bytes (``info["exif"]``, an ``Image.Exif``) -> the ``EXIF`` record: the TIFF structure
    without the ``Exif\\0\\0`` prefix (docs/FORMAT.md); None when empty or not EXIF."""
    if isinstance(exif, Image.Exif):
        exif = exif.tobytes()
    if not exif:
        return None
    exif = bytes(exif)
    if exif.startswith(EXIF_PREFIX):
        exif = exif[len(EXIF_PREFIX):]
    return exif if exif[:4] in _TIFF_HEADERS else None


def pillow_exif(record):
    """An ``EXIF`` record -> EXIF bytes as Pillow keeps them in ``info["exif"]`` (what its JPEG writer needs)."""
    return record if record.startswith(EXIF_PREFIX) else EXIF_PREFIX + record


def source_record(source, conversions):
    """The ``SRCF`` record: UTF-8 JSON {"format", "mode", "bits", "conversions"} (docs/FORMAT.md)."""
    record = dict(source or {"format": None})
    record["conversions"] = list(conversions)
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def read_source_record(data):
    """A ``SRCF`` record -> dict; a record that is not a JSON object becomes {"text": ...}."""
    text = bytes(data).decode("utf-8", "replace")
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"text": text}


def describe_source(record):
    """One line for humans, e.g. 'PNG L 16-bit; 16-bit samples reduced to 8 bits'."""
    if "text" in record and "conversions" not in record:
        return record["text"]
    what = " ".join(str(record[k]) for k in ("format", "mode") if record.get(k))
    if record.get("bits"):
        what += " %s-bit" % record["bits"]
    conversions = record.get("conversions")
    changes = "; ".join(str(c) for c in conversions) if isinstance(conversions, list) else ""
    return "; ".join(part for part in (what.strip(), changes) if part)


# ---- writing ---------------------------------------------------------------------------------
def to_uint8(unit_float):
    """Samples in [0, 1] (a float array) as uint8 0..255, rounded to nearest and clipped."""
    return np.clip(np.rint(unit_float * 255.0), 0, 255).astype(np.uint8)


def psnr(a, b):
    """PSNR in dB (peak 255) over all pixels and channels of two same-shape images."""
    return psnr_of_mse(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def psnr_of_mse(mse):
    """PSNR in dB (peak 255) of a mean squared error on the 0..255 scale (inf for 0)."""
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


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
        image.info["exif"] = pillow_exif(side_data[EXIF])
    return image


PNG_LEVEL = 1  # zlib level of written PNGs: at 768x512, 0.07 s against 0.29 s for Pillow's 6, for 15 % more bytes
# Pillow writers without alpha: they drop it silently (BMP, PPM) or refuse the mode (JPEG, PCX, ...)
NO_ALPHA = frozenset(("JPEG", "MPO", "BMP", "DIB", "PPM", "PCX", "EPS", "MSP", "PALM", "XBM"))


# Extensions of image formats, Pillow's or not, that l3ic data must never be written under (encode -o x.jxl)
OTHER_IMAGE_SUFFIXES = (".jxl", ".heic", ".heif", ".avif", ".jp2", ".j2k", ".jpx", ".bpg", ".qoi", ".exr", ".hdr",
                        ".dng", ".tga", ".ico", ".pnm", ".pbm", ".pam", ".svg", ".jfif", ".wbmp")


def sniff_format(data):
    """The name of the image format of ``data`` (bytes) if Pillow recognises it, else None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(bytes(data[:1 << 20]))) as image:
                return image.format
        except Exception:  # anything Pillow does not recognise, however it fails
            return None


def is_image_name(path):
    """Whether ``path``'s extension names an image format (any that Pillow knows, and common others) other than
    l3ic's own, which ``l3ic.pillow`` registers with Pillow."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".l3ic":
        return False
    return ext in IMAGE_SUFFIXES or ext in OTHER_IMAGE_SUFFIXES or format_for(path) is not None


def format_for(path):
    """The Pillow format that ``path``'s extension names, or None.

    Pillow's common formats (PNG, JPEG, BMP, GIF, PPM) are looked up first:
    importing all its plugins (``Image.init``) costs a CLI run tens of ms, so
    that happens only for a rarer extension.
    """
    ext = os.path.splitext(path)[1].lower()
    Image.preinit()
    if ext not in Image.EXTENSION:
        Image.init()
    return Image.EXTENSION.get(ext)


def writable_format(path, stream_format="png"):
    """The Pillow format ``path`` will be written in (``-``, standard output: ``stream_format``, an extension);
    ``ImageError`` when Pillow cannot write it (check before work)."""
    if path == STDIO:
        path = "standard output." + stream_format.lstrip(".")
    fmt = format_for(path)
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError("cannot write %r images; use an extension such as .png" % (os.path.splitext(path)[1].lower() or path))
    return fmt


def has_transparency(alpha):
    """Whether an alpha record (bytes, or None for none) has a pixel that is not fully opaque."""
    return alpha is not None and len(alpha) > 0 and int(np.frombuffer(alpha, np.uint8).min()) < 255


def alpha_note(path, has_alpha, drop=False, stream_format="png"):
    """None, or the note to print when ``path``'s format cannot hold the alpha a decoded image has.

    Dropping alpha loses what the file kept losslessly: refused (``ImageError``) unless ``drop``.
    """
    fmt = writable_format(path, stream_format)
    if not has_alpha or fmt not in NO_ALPHA:
        return None
    if not drop:
        raise ImageError("cannot keep the alpha channel in %s: %s has none (write .png to keep it, or use -f to drop it)"
                         % (path, fmt))
    return "alpha dropped (%s has no alpha channel)" % fmt


def save(image, path, overwrite=False, drop_alpha=False, png_level=PNG_LEVEL, stream_format="png"):
    """Save a Pillow image atomically in the format its file extension names, with its ICC profile and EXIF.

    Alpha is dropped only with ``drop_alpha`` for a format that has none (see ``alpha_note``); PNGs are written
    at zlib level ``png_level`` (0-9; the fast 1 by default: writing at Pillow's 6 was most of a CLI decode).
    ``path`` ``-`` writes to standard output in ``stream_format`` (an extension).
    """
    fmt = writable_format(path, stream_format)
    if image.mode in ("RGBA", "LA") and fmt in NO_ALPHA:
        transparent = has_transparency(image.getchannel("A").tobytes())
        if not transparent or alpha_note(path, True, drop_alpha, stream_format):
            image = image.convert(image.mode[:-1])
    params = {k: image.info[k] for k in ("icc_profile", "exif") if image.info.get(k)}
    if fmt == "PNG":
        params["compress_level"] = png_level

    def write(f):  # straight into the temporary file: no second copy of a large encoded image in memory
        try:
            image.save(f, format=fmt, **params)
        except (OSError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as e:  # Pillow's writers refuse some modes/sizes with ValueError, KeyError, ...
            raise ImageError("cannot write %s as %s: %s" % (path, fmt, first_line(e, DAMAGED)))

    write_atomic(path, write, overwrite)
