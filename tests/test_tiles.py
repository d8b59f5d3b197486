"""Tiled coding: large images are split into latent tiles, each run through the networks with a halo of context."""
import numpy as np
import pytest

from l3ic import codec as codec_module
from l3ic import read_info
from l3ic.image import psnr

from conftest import photo_like


@pytest.fixture
def small_tiles(monkeypatch):
    """Make tiling kick in for small test images: tiles of 16 x 16 latent cells (128 px)."""
    monkeypatch.setattr(codec_module, "WHOLE_IMAGE_LATENT", 16)
    monkeypatch.setattr(codec_module, "TILE_LATENT", 16)


def test_tiled_matches_whole_image(codec, sample, small_tiles):
    image = sample[:500, :370]  # ragged edge tiles on both axes
    tiled = codec.encode(image)
    info = read_info(tiled)
    assert info["tiles"] == 4 * 3 and info["tile"] == [16, 16]
    tiled_symbols = codec.encode_latents(image)
    decoded_tiled = codec.decode(tiled)

    codec_module.WHOLE_IMAGE_LATENT = 1 << 20  # back to one tile (monkeypatch restores it afterwards)
    whole = codec.encode(image)
    assert read_info(whole)["tiles"] == 1
    whole_symbols = codec.encode_latents(image)
    decoded_whole = codec.decode(whole)

    # Tiles sample ẑ on a grid padded to whole ẑ cells, a whole-image encode on its own grid: the side
    # information differs, the latents (and so the pixels) barely.
    assert np.mean(tiled_symbols != whole_symbols) < 0.02
    assert psnr(decoded_whole, decoded_tiled) > 40.0  # no seams
    # the edge windows' wider replicated border costs a little here (0.3 dB: 16-cell tiles on a small image);
    # real tiles are 128 cells, on images over 2048 px
    assert psnr(image, decoded_tiled) > psnr(image, decoded_whole) - 0.4


def test_tiled_file_round_trips_channel_subsets(codec, small_tiles):
    image = photo_like(200, 260)
    data = codec.encode(image)
    assert read_info(data)["tiles"] == 2 * 3
    assert codec.decode(data).shape == image.shape
    assert codec.decode(data, channels=[0, 1]).shape == image.shape


@pytest.mark.parametrize("tiled", [False, True])
def test_region_decode_matches_the_full_decode(codec, sample, monkeypatch, tiled):
    if tiled:
        monkeypatch.setattr(codec_module, "WHOLE_IMAGE_LATENT", 16)
        monkeypatch.setattr(codec_module, "TILE_LATENT", 16)
    rgba = np.dstack([sample, np.tile(np.arange(384, dtype=np.uint8), (512, 1))])
    data = codec.encode(rgba)
    full = codec.decode(data)
    x, y, w, h = 101, 133, 150, 77
    part = codec.decode(data, region=(x, y, w, h))
    assert part.shape == (h, w, 4)
    np.testing.assert_array_equal(part[:, :, 3], rgba[y:y + h, x:x + w, 3])
    assert psnr(full[y:y + h, x:x + w, :3], part[:, :, :3]) > 45.0


def test_region_outside_the_image_is_an_error(codec, sample):
    from l3ic import L3icError
    data = codec.encode(sample[:64, :64])
    for region in [(0, 0, 65, 10), (-1, 0, 5, 5), (10, 10, 0, 5)]:
        with pytest.raises(L3icError, match="region"):
            codec.decode(data, region=region)
