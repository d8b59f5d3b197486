"""Any input image: sizes, modes, bit depths, alpha, palettes, CMYK, EXIF orientation, ICC/EXIF, unreadable files.

Every test file is generated here with Pillow (or, for what Pillow cannot
write, assembled chunk by chunk), so the tests need nothing outside the repo.
"""
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from l3ic import read_info
from l3ic import container
from l3ic import image as images
from l3ic.errors import ImageError

from conftest import photo_like

ORIENTATION, MAKE = 0x0112, 0x010F


def png_bytes(width, height, bit_depth, colour_type, samples=None, rows=None):
    """A PNG assembled by hand (Pillow writes no 16-bit RGB/RGBA/LA PNGs): samples (H, W, C), or filtered rows."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    dtype = ">u2" if bit_depth == 16 else "u1"
    if rows is None:
        rows = b"".join(b"\x00" + np.asarray(samples[y], dtype).tobytes() for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def saved(tmp_path, image, name, **params):
    path = tmp_path / name
    image.save(path, **params)
    return str(path)


def round_trip(codec, path, strip=False):
    """load -> encode -> decode_to_pil, as the command-line tools do; returns (picture, data, decoded image)."""
    picture = images.load(path, strip=strip)
    data = codec.encode(picture)
    return picture, data, codec.decode_to_pil(data)


def source_record(data):
    record = container.L3icFile.parse(data).side_record(images.SOURCE)
    return None if record is None else json.loads(record)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (7, 1), (2, 3), (17, 9), (31, 33)])
def test_tiny_and_odd_sizes(codec, tmp_path, size):
    w, h = size
    path = saved(tmp_path, Image.fromarray(photo_like(h, w, seed=w * h)), "odd.png")
    picture, data, decoded = round_trip(codec, path)
    assert (picture.width, picture.height) == (w, h)
    assert decoded.size == (w, h) and decoded.mode == "RGB"
    assert source_record(data) is None  # nothing lossy happened on input


def test_grayscale_is_stored_and_decoded_as_grayscale(codec, tmp_path):
    gray = photo_like(21, 35)[:, :, 0]
    picture, data, decoded = round_trip(codec, saved(tmp_path, Image.fromarray(gray), "gray.png"))
    assert picture.mode == "L" and picture.pixels.shape == gray.shape
    assert read_info(data)["mode"] == "L"
    assert decoded.mode == "L" and images.psnr(gray, np.asarray(decoded)) > 20
    out = tmp_path / "out.png"
    images.save(decoded, str(out))
    assert Image.open(out).mode == "L"


def test_one_bit_images_become_grayscale(codec, tmp_path):
    bits = Image.fromarray(photo_like(16, 24)[:, :, 0] > 128)
    picture = images.load(saved(tmp_path, bits, "bits.png"))
    assert picture.mode == "L" and set(np.unique(picture.pixels)) <= {0, 255}


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_kept_losslessly(codec, tmp_path, mode):
    colour = photo_like(19, 26, seed=5)
    alpha = (np.arange(19 * 26) * 7 % 256).astype(np.uint8).reshape(19, 26)
    image = Image.fromarray(np.dstack([colour, alpha]), "RGBA")
    if mode == "LA":
        image = Image.merge("LA", [Image.fromarray(colour[:, :, 1]), Image.fromarray(alpha)])
    picture, data, decoded = round_trip(codec, saved(tmp_path, image, "alpha.png"))
    assert picture.mode == mode[:-1] and images.ALPHA in read_info(data)["side_data"]
    assert decoded.mode == mode
    np.testing.assert_array_equal(np.asarray(decoded.getchannel("A")), alpha)


def test_opaque_alpha_is_kept_cheaply(codec, tmp_path):
    """An opaque RGBA image decodes as RGBA (the user's mode); its all-255 plane is stored in a few bytes."""
    rgba = np.dstack([photo_like(12, 12), np.full((12, 12), 255, np.uint8)])
    _, data, decoded = round_trip(codec, saved(tmp_path, Image.fromarray(rgba, "RGBA"), "opaque.png"))
    assert read_info(data)["side_data"][images.ALPHA] == 12 * 12 and decoded.mode == "RGBA"
    assert len(data) - len(codec.encode(rgba[:, :, :3])) < 40


def palette_image(gray, transparent):
    rng = np.random.default_rng(2)
    colours = np.repeat(np.arange(0, 256, 16, dtype=np.uint8)[:, None], 3, axis=1) if gray else rng.integers(0, 256, (16, 3), np.uint8)
    image = Image.fromarray((np.arange(20 * 30).reshape(20, 30) // 37 % 16).astype(np.uint8), "P")
    image.putpalette(colours.ravel().tolist())
    if transparent:
        image.info["transparency"] = 3
    return image, colours


@pytest.mark.parametrize("gray", [False, True], ids=["colour", "gray"])
@pytest.mark.parametrize("transparent", [False, True], ids=["opaque", "transparency"])
@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_palette_images(codec, tmp_path, gray, transparent, fmt):
    image, colours = palette_image(gray, transparent)
    params = {"transparency": 3} if transparent else {}
    path = saved(tmp_path, image, "palette." + fmt, **params)
    picture, data, decoded = round_trip(codec, path)
    indices = np.asarray(image)
    assert picture.mode == ("L" if gray else "RGB")
    expected = colours[indices][:, :, 0] if gray else colours[indices]
    np.testing.assert_array_equal(picture.pixels, expected)
    if transparent:
        np.testing.assert_array_equal(np.asarray(decoded.getchannel("A")), np.where(indices == 3, 0, 255))
    assert decoded.mode == ("L" if gray else "RGB") + ("A" if transparent else "")
    assert source_record(data) is None


def test_16_bit_gray_png(codec, tmp_path):
    wide = (np.arange(24 * 18, dtype=np.uint32).reshape(18, 24) * 151 % 65536).astype(np.uint16)
    path = saved(tmp_path, Image.fromarray(wide), "gray16.png")
    picture, data, decoded = round_trip(codec, path)
    assert picture.mode == "L" and decoded.mode == "L"
    np.testing.assert_array_equal(picture.pixels, np.rint(wide / 257.0).astype(np.uint8))
    assert picture.notes == ["16-bit samples reduced to 8 bits"]
    assert source_record(data) == {"format": "PNG", "mode": "L", "bits": 16, "conversions": ["16-bit samples reduced to 8 bits"]}


@pytest.mark.parametrize("colour_type,channels,mode", [(2, 3, "RGB"), (6, 4, "RGBA"), (4, 2, "LA")])
def test_16_bit_colour_and_alpha_pngs(codec, tmp_path, colour_type, channels, mode):
    """Pillow unpacks these to 8 bits on its own; the reduction is still recorded, and LA stays gray."""
    rng = np.random.default_rng(colour_type)
    samples = rng.integers(0, 65536, (10, 14, channels)).astype(np.uint16)
    path = tmp_path / "wide.png"
    path.write_bytes(png_bytes(14, 10, 16, colour_type, samples))
    picture, data, decoded = round_trip(codec, str(path))
    coded = "L" if mode == "LA" else "RGB"
    assert picture.mode == coded and decoded.mode == mode
    top = (samples >> 8).astype(np.uint8)  # Pillow keeps the high byte
    np.testing.assert_array_equal(picture.pixels, top[:, :, 0] if coded == "L" else top[:, :, :3])
    if mode != "RGB":
        np.testing.assert_array_equal(np.asarray(decoded.getchannel("A")), top[:, :, -1])
    assert source_record(data)["bits"] == 16 and source_record(data)["mode"] == mode


def test_16_bit_arrays(codec):
    wide = (photo_like(9, 11).astype(np.uint16) * 257)
    picture = images.from_array(wide)
    np.testing.assert_array_equal(picture.pixels, photo_like(9, 11))
    assert json.loads(picture.side_data[images.SOURCE])["format"] is None


def test_cmyk_jpeg_becomes_rgb(codec, tmp_path):
    cmyk = Image.fromarray(photo_like(16, 20), "RGB").convert("CMYK")
    fake_profile = b"\x00" * 16 + b"CMYK" + b"\x00" * 108  # a CMYK profile must never label RGB pixels
    path = saved(tmp_path, cmyk, "cmyk.jpg", icc_profile=fake_profile, quality=95)
    assert Image.open(path).mode == "CMYK"
    picture, data, decoded = round_trip(codec, path)
    assert picture.mode == "RGB" and decoded.mode == "RGB"
    assert images.ICC not in read_info(data)["side_data"]
    assert images.psnr(picture.pixels, np.asarray(Image.open(path).convert("RGB"))) == float("inf")
    assert source_record(data)["mode"] == "CMYK" and "CMYK converted to RGB" in source_record(data)["conversions"][0]


def oriented(tmp_path, orientation, name="oriented.png"):
    pixels = photo_like(10, 16, seed=orientation)
    exif = Image.Exif()
    exif[ORIENTATION], exif[MAKE] = orientation, "l3ic test camera"
    return pixels, saved(tmp_path, Image.fromarray(pixels), name, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    pixels, path = oriented(tmp_path, orientation)
    picture = images.load(path)
    with Image.open(path) as original:
        expected = np.asarray(ImageOps.exif_transpose(original))
    np.testing.assert_array_equal(picture.pixels, expected)
    if orientation in (5, 6, 7, 8):
        assert picture.pixels.shape[:2] == pixels.shape[1::-1]
    record = picture.side_data[images.EXIF]
    assert record[:4] in (b"II*\x00", b"MM\x00*")  # the TIFF structure, no "Exif\0\0" prefix (FORMAT.md)
    exif = Image.Exif()
    exif.load(record)
    assert ORIENTATION not in exif or orientation == 1
    assert exif[MAKE] == "l3ic test camera"


def test_icc_and_exif_reach_the_decoded_file(codec, tmp_path):
    icc = b"\x00\x00\x01\x00fake" + b"\x00" * 8 + b"RGB " + bytes(range(100))
    exif = Image.Exif()
    exif[MAKE] = "l3ic"
    path = saved(tmp_path, Image.fromarray(photo_like(12, 14)), "meta.png", icc_profile=icc, exif=exif)
    _, data, decoded = round_trip(codec, path)
    assert container.L3icFile.parse(data).side_data[images.ICC] == icc
    for ext in (".png", ".jpg", ".webp"):
        out = tmp_path / ("decoded" + ext)
        images.save(decoded, str(out))
        with Image.open(out) as back:
            assert back.info.get("icc_profile") == icc, ext
            assert back.getexif()[MAKE] == "l3ic", ext

    _, stripped, decoded = round_trip(codec, path, strip=True)
    assert set(read_info(stripped)["side_data"]) <= {container.LOSSLESS}  # a tiny image may be stored as pixels
    assert "icc_profile" not in decoded.info and "exif" not in decoded.info


def test_only_the_first_frame_of_an_animation(tmp_path):
    frames = [Image.fromarray(photo_like(8, 8, seed=i)) for i in range(3)]
    path = str(tmp_path / "anim.gif")
    frames[0].save(path, save_all=True, append_images=frames[1:])
    picture = images.load(path)
    assert picture.notes == ["only the first of 3 frames kept"]


def test_input_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(100000, 100000, 8, 0, rows=bytes(1 << 24)))  # 10 Gpx of zeros in 16 kB
    with pytest.raises(ImageError, match="over the limit of .* --max-pixels"):
        images.load(str(path))
    small = saved(tmp_path, Image.fromarray(photo_like(20, 20)), "small.png")
    with pytest.raises(ImageError, match="400 pixels, over the limit of 399"):
        images.load(small, max_pixels=399)
    assert images.load(small, max_pixels=400).width == 20


def test_unreadable_files_are_one_line_image_errors(tmp_path):
    """Truncations and byte flips of real files in several formats: Pillow raises all sorts; we raise ImageError."""
    rng = np.random.default_rng(7)
    sources = []
    for fmt, params in [("png", {}), ("gif", {}), ("bmp", {}), ("tiff", {}), ("jpeg", {"quality": 90}), ("webp", {})]:
        buf = io.BytesIO()
        Image.fromarray(photo_like(12, 10, seed=len(fmt))).save(buf, format=fmt, **params)
        sources.append(buf.getvalue())
    failures = 0
    path = str(tmp_path / "damaged")
    for i in range(240):
        data = bytearray(sources[i % len(sources)])
        if i % 2:
            data = data[:rng.integers(0, len(data))]
        else:
            for _ in range(rng.integers(1, 6)):
                data[rng.integers(len(data))] = rng.integers(256)
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            images.load(path)
        except ImageError as e:
            failures += 1
            assert "\n" not in str(e) and str(e)
    assert failures > 100
