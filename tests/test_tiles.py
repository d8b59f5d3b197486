"""Tiled coding: large images are split into latent tiles, each run through the networks with a halo of context."""
import numpy as np
import pytest

from l3ic import Codec, L3icError, read_info
from l3ic.tiling import Tiling
from l3ic.image import psnr

from conftest import photo_like


@pytest.fixture(scope="module")
def small_tiles():
    """A codec whose tiling kicks in for small test images: tiles of 16 x 16 latent cells (128 px)."""
    return Codec("medium", "cpu", tiling=Tiling(whole_image=16, tile=16))


def test_tiled_matches_whole_image(codec, sample, small_tiles):
    image = sample[:500, :370]  # ragged edge tiles on both axes
    tiled = small_tiles.encode(image)
    info = read_info(tiled)
    assert info["tiles"] == 4 * 3 and info["tile"] == [16, 16]
    tiled_symbols = small_tiles.encode_latents(image)
    decoded_tiled = small_tiles.decode(tiled)

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
    data = small_tiles.encode(image)
    assert read_info(data)["tiles"] == 2 * 3
    assert codec.decode(data).shape == image.shape  # the tile grid is in the file: any codec of the model decodes it
    assert codec.decode(data, channels=[0, 1]).shape == image.shape


@pytest.mark.parametrize("tiled", [False, True])
def test_region_decode_matches_the_full_decode(codec, sample, small_tiles, tiled):
    codec = small_tiles if tiled else codec
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


def test_tiling_is_a_value_of_the_codec(codec, small_tiles):
    assert codec.tiling == Tiling() and small_tiles.tiling.tile == 16
    assert Tiling().tile_shape(300, 20) == (128, 20) and Tiling().tile_shape(256, 256) == (256, 256)
    assert small_tiles.tiling.tile_shape(17, 16) == (16, 16)


@pytest.mark.parametrize("values, message", [
    (dict(tile=0), "tile must be a positive number of latent cells, got 0"),
    (dict(halo=-1), "halo must be a number of latent cells >= 0, got -1"),
    (dict(refine_block=2.5), "refine_block must be a positive number of latent cells"),
])
def test_bad_tilings_are_one_line_errors(values, message):
    with pytest.raises(L3icError, match="^" + message):
        Tiling(**values)


def test_a_tiling_must_fit_the_hyper_stride():
    """Format 3 codes ẑ on one grid: tiles and the encoder's halo are whole ẑ cells (4 latent cells)."""
    with pytest.raises(L3icError, match="multiple of the model's hyper stride 4"):
        Codec("medium", "cpu", tiling=Tiling(whole_image=8, tile=6)).encode(photo_like(80, 80))
    with pytest.raises(L3icError, match="multiple of the model's hyper stride 4"):
        Codec("medium", "cpu", tiling=Tiling(encode_halo=10)).encode(photo_like(80, 80), refine=1)
