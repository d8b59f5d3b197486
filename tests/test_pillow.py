"""The Pillow plugin through real Pillow calls: Image.open / load / save / thumbnail / convert on .l3ic files."""
import io

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import l3ic.pillow as plugin
from conftest import photo_like
from l3ic.image import psnr

ORIENTATION, ARTIST = 0x0112, 0x013B


@pytest.fixture(scope="module")
def rgb():
    return photo_like(48, 64, seed=3)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, rgb):
    path = tmp_path_factory.mktemp("pillow") / "photo.l3ic"
    Image.fromarray(rgb).save(path)  # the format comes from the registered extension
    return path


def test_registered():
    assert Image.registered_extensions()[".l3ic"] == "L3IC"
    assert Image.MIME["L3IC"] == "image/x-l3ic"
    assert "L3IC" in Image.OPEN and "L3IC" in Image.SAVE


def test_the_tools_still_take_l3ic_outputs_once_pillow_knows_the_format(tmp_path):
    """Registered with Pillow, .l3ic is still l3ic's own output, not an image extension -o must not name."""
    from l3ic import image as images
    from l3ic.cli import main as l3ic
    assert not images.is_image_name("photo.l3ic")
    Image.fromarray(photo_like(16, 24)).save(tmp_path / "a.png")
    assert l3ic(["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.l3ic"), "--quiet"]) == 0


def test_open_reads_only_the_header(saved, monkeypatch):
    def no_decoding(model):
        raise AssertionError("decoded before load()")
    monkeypatch.setattr(plugin, "_codec", no_decoding)
    with Image.open(saved) as im:
        assert (im.format, im.mode, im.size, im.width, im.height) == ("L3IC", "RGB", (64, 48), 64, 48)
        assert im.get_format_mimetype() == "image/x-l3ic"
        assert im.info["l3ic"]["model"] == "medium" and im.info["l3ic"]["channels"] > 0
        assert "icc_profile" not in im.info and "exif" not in im.info


def test_load_decodes_like_the_codec(saved, rgb, codec):
    expected = codec.decode(saved.read_bytes())
    with Image.open(saved) as im:
        pixels = np.asarray(im)
        assert im.fp is None  # Pillow closed the file after loading
    assert pixels.shape == rgb.shape and pixels.dtype == np.uint8
    assert np.array_equal(pixels, expected)
    assert psnr(rgb, pixels) > 22


def test_thumbnail_convert_copy_after_open(saved):
    with Image.open(saved) as im:
        gray = im.convert("L")
        assert gray.size == (64, 48) and gray.mode == "L"
        copy = im.copy()
        im.thumbnail((32, 32))
        assert im.size == (32, 24)
        assert copy.size == (64, 48) and copy.mode == "RGB"


def test_file_objects_and_format_argument(saved, rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="L3IC", quality="medium")
    assert buf.getvalue()[:4] == b"L3IC"
    with Image.open(io.BytesIO(buf.getvalue()), formats=["L3IC"]) as im:
        assert im.size == (64, 48)
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(saved)))


@pytest.mark.parametrize("shape, mode", [((8, 8), "L"), ((5, 3), "L"), ((4, 4, 4), "RGBA"), ((9, 7, 2), "LA")])
def test_tiny_gray_and_alpha_images(tmp_path, codec, shape, mode):
    """Pillow must not memory-map the .l3ic file itself as raw pixels (it would for L/RGBA files larger than
    the pixels, i.e. tiny images, unless the plugin opts out)."""
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    source = Image.fromarray(array, mode)
    path = tmp_path / "tiny.l3ic"
    source.save(path)
    with Image.open(path) as im:
        assert im.mode == mode and im.size == source.size
        pixels = np.asarray(im)
    expected = np.asarray(codec.decode_to_pil(path.read_bytes()))
    assert np.array_equal(pixels, expected)
    if mode in ("RGBA", "LA"):
        assert np.array_equal(pixels[..., -1], array[..., -1])  # alpha is lossless


def test_alpha_round_trip(tmp_path, rgb):
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    path = tmp_path / "alpha.l3ic"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        out = np.asarray(im)
    assert np.array_equal(out[..., 3], alpha)
    assert psnr(rgb, out[..., :3]) > 22
    opaque = tmp_path / "opaque.l3ic"
    Image.fromarray(np.dstack([rgb, np.full((48, 64), 255, np.uint8)]), "RGBA").save(opaque)
    assert Image.open(opaque).mode == "RGBA"  # the user's mode, even when the alpha channel is all opaque
    for mode in ("LA", "L", "RGB"):
        Image.fromarray(rgb).convert(mode).save(opaque)
        assert Image.open(opaque).mode == mode and Image.open(opaque).convert("RGBA").getextrema()[3] == (255, 255)


def test_icc_and_exif_round_trip(tmp_path, rgb):
    icc = b"\x00\x00\x01\x00not-a-real-profile" * 20  # kept as opaque bytes; ImageCms needs littlecms
    exif = Image.Exif()
    exif[ARTIST] = "l3ic test"
    source = Image.fromarray(rgb)
    path = tmp_path / "meta.l3ic"
    source.save(path, icc_profile=icc, exif=exif)
    with Image.open(path) as im:
        assert im.info["icc_profile"] == icc  # available before load()
        assert im.getexif()[ARTIST] == "l3ic test"
        png = io.BytesIO()
        im.save(png, format="PNG", icc_profile=im.info["icc_profile"], exif=im.info["exif"])
    with Image.open(png) as back:
        assert back.info["icc_profile"] == icc and back.getexif()[ARTIST] == "l3ic test"

    source.info["icc_profile"] = icc  # an opened image's own profile is kept without being asked
    source.save(tmp_path / "own.l3ic")
    assert Image.open(tmp_path / "own.l3ic").info["icc_profile"] == icc
    source.save(tmp_path / "stripped.l3ic", strip=True)
    assert "icc_profile" not in Image.open(tmp_path / "stripped.l3ic").info
    source.save(tmp_path / "dropped.l3ic", icc_profile=b"")
    assert "icc_profile" not in Image.open(tmp_path / "dropped.l3ic").info


def test_exif_orientation_is_applied(tmp_path, rgb):
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # rotate 90° clockwise to display
    source = Image.fromarray(rgb)
    source.info["exif"] = exif.tobytes()
    path = tmp_path / "rotated.l3ic"
    source.save(path)
    with Image.open(path) as im:
        assert im.size == (48, 64)
        assert ORIENTATION not in im.getexif()


def test_resave_an_opened_l3ic(saved, tmp_path):
    with Image.open(saved) as im:
        im.save(tmp_path / "again.l3ic")
        im.save(tmp_path / "again.png")
    assert Image.open(tmp_path / "again.l3ic").size == (64, 48)
    assert Image.open(tmp_path / "again.png").size == (64, 48)


def test_save_options(tmp_path, rgb):
    from conftest import REPO
    image = Image.fromarray(rgb)
    image.save(tmp_path / "q.l3ic", quality="medium")
    image.save(tmp_path / "m.l3ic", model=REPO + "/models/medium")
    for name in ("q.l3ic", "m.l3ic"):
        assert Image.open(tmp_path / name).info["l3ic"]["model"] == "medium"
    assert (tmp_path / "q.l3ic").read_bytes() == (tmp_path / "m.l3ic").read_bytes()


@pytest.mark.parametrize("options, message", [
    ({"quality": 101}, "quality must be a number 0..100"),
    ({"quality": "ultra"}, "quality must be a number 0..100 or one of low, medium, high"),
    ({"quality": "medium", "model": "medium"}, "give model or the preset quality medium, not both"),
    ({"target_bpp": 1.0, "quality": "medium"}, "chooses the model and quality itself"),
    ({"target_bpp": 0}, "must be a positive number of bits per pixel"),
    ({"target_bpp": "0.5"}, "must be a positive number of bits per pixel"),
    ({"refine": 1.5}, "refine must be a number of steps"),
])
def test_bad_save_options(tmp_path, rgb, options, message):
    path = tmp_path / "bad.l3ic"
    with pytest.raises(ValueError, match=message):
        Image.fromarray(rgb).save(path, **options)
    assert not path.exists() or path.stat().st_size == 0  # nothing written (Pillow >= 9 removes the file)


def test_unknown_model_is_an_oserror(tmp_path, rgb):
    with pytest.raises(OSError, match="unknown model 'nosuchmodel'"):
        Image.fromarray(rgb).save(tmp_path / "x.l3ic", model="nosuchmodel")


def test_target_bpp(tmp_path, rgb, codec):
    medium_bpp = 8.0 * len(codec.encode(rgb)) / rgb[..., 0].size
    path = tmp_path / "target.l3ic"
    Image.fromarray(rgb).save(path, target_bpp=medium_bpp * 1.01)
    info = Image.open(path).info["l3ic"]
    assert 0.97 * medium_bpp * 1.01 <= info["bpp"] <= medium_bpp * 1.01
    Image.fromarray(rgb).save(tmp_path / "tiny.l3ic", target_bpp=0.001)  # not reachable: the smallest file
    assert Image.open(tmp_path / "tiny.l3ic").info["l3ic"]["quality"] == 0


def test_corrupt_files(saved, tmp_path):
    data = saved.read_bytes()
    (tmp_path / "truncated.l3ic").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.l3ic").write_bytes(b"L3IC" + bytes(100))
    for name in ("truncated.l3ic", "garbage.l3ic"):
        with pytest.raises(UnidentifiedImageError):
            Image.open(tmp_path / name)
    flipped = bytearray(data)
    flipped[-20] ^= 0x55  # in the payload: the header is fine, a channel's CRC is not
    (tmp_path / "flipped.l3ic").write_bytes(bytes(flipped))
    with Image.open(tmp_path / "flipped.l3ic") as im:
        assert im.size == (64, 48)
        with pytest.raises(OSError, match="checksum mismatch"):
            im.load()


def test_other_formats_are_not_claimed(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").format == "PNG"
