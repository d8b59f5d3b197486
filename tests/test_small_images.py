"""Small images: a margin of edge-replicated image around those up to 16 px on an axis (FLAG_MARGIN), and tiny
ones stored losslessly where the network cannot win (FLAG_LOSSLESS, l3ic.lossless), so that every image from 1x1 to
16x16 decodes at >= 30 dB and never takes much more than an optimised PNG; exact latents at every size."""
import dataclasses
import io

import numpy as np
import pytest

from conftest import photo_like
from PIL import Image

from l3ic import FormatError, L3icError, container, read_info, read_latents
from l3ic import image as images
from l3ic.tiling import MARGIN, SMALL_SIDE
from l3ic.container import FLAG_LOSSLESS, FLAG_MARGIN, MAX_MARGIN, Header, L3icFile
from l3ic.image import psnr

FLATS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "magenta": (255, 0, 255),
         "yellow": (255, 255, 0), "black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}


def contents(h, w, photo):
    for name, colour in FLATS.items():
        yield name, np.full((h, w, 3), colour, np.uint8)
    y, x = (7 * h * w) % (photo.shape[0] - h), (13 * h + 5 * w) % (photo.shape[1] - w)
    yield "photo crop", np.ascontiguousarray(photo[y:y + h, x:x + w])
    yield "gradient", np.dstack([np.add.outer(np.linspace(30, 220, h), np.linspace(0, 20, w))] * 3).astype(np.uint8)
    yield "gray L", np.full((h, w), 77, np.uint8)


def worst(codec, sizes, photo):
    """(PSNR, size, content) of the worst round trip over the sizes and contents (``photo``: crops of it)."""
    results = []
    for h, w in sizes:
        for name, image in contents(h, w, photo):
            decoded = codec.decode(codec.encode(image))
            assert decoded.shape == image.shape
            results.append((psnr(image, decoded), (h, w), name))
    return min(results)


def test_tiny_images_round_trip_at_30_db(codec, sample):
    sizes = [(1, 1), (2, 2), (5, 5), (8, 8), (9, 9), (16, 16), (1, 16), (16, 3), (7, 12)]
    value, size, name = worst(codec, sizes, sample)
    assert value >= 30, "%s %s: %.1f dB" % (name, size, value)


def test_every_tiny_image_round_trips(codec, sample):
    value, size, name = worst(codec, [(n, n) for n in range(1, 17)] + [(1, n) for n in range(2, 17)] +
                              [(n, 5) for n in range(1, 17)], sample)
    assert value >= 30, "%s %s: %.1f dB" % (name, size, value)


def lossy(codec, image):
    """The network's file of ``image``, never the lossless one (the encode stages ``Codec.encode`` runs first)."""
    picture = images.from_array(image)
    header = codec.header_for(picture)
    tiles, z_chunks = codec.code(codec.quantise(codec.analyse(picture.rgb(), header), header), header)
    return container.write(header, tiles, picture.side_data, z_chunks)


def png_bytes(image):
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG", optimize=True)
    return len(out.getvalue())


def test_tiny_photos_are_never_much_bigger_than_lossless(codec, sample):
    """Downscaled photos (all detail, where the network decoded at 20-24 dB in 400-600 bytes) at most 1.2 x their
    optimised PNG, plus the 20 bytes more that l3ic's header takes, and decoded at 30 dB or better."""
    for h, w in [(3, 5), (8, 8), (12, 16), (16, 16), (1, 9), (16, 5)]:
        image = np.asarray(Image.fromarray(sample).resize((w, h), Image.LANCZOS))
        data = codec.encode(image)
        assert len(data) <= 1.2 * png_bytes(image) + 20, (h, w, len(data), png_bytes(image))
        assert psnr(image, codec.decode(data)) >= 30
        if len(lossy(codec, image)) > len(data):
            assert read_info(data)["lossless"] is True


def test_lossless_files_decode_exactly_with_alpha_gray_and_regions(codec):
    rng = np.random.default_rng(3)
    for image in (rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), rng.integers(0, 256, (6, 4), dtype=np.uint8),
                  rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)):
        data = codec.encode(image)  # noise: nothing codes it better than its pixels
        assert L3icFile.parse(data).header.flags == FLAG_LOSSLESS
        assert np.array_equal(codec.decode(data), image)
        assert np.array_equal(codec.decode(data, region=(1, 2, 3, 3)), image[2:5, 1:4])
    with pytest.raises(L3icError, match="no latents"):
        read_latents(data)


def test_a_lossless_file_is_checked_like_any_other(codec):
    data = codec.encode(np.random.default_rng(4).integers(0, 256, (6, 6, 3), dtype=np.uint8))
    header = L3icFile.parse(data).header
    with pytest.raises(ValueError):  # the flag goes alone, and with the record
        dataclasses.replace(header, flags=FLAG_LOSSLESS | FLAG_MARGIN)
    with pytest.raises(ValueError):
        container.write(header, [], {})
    for cut in range(1, len(data)):
        with pytest.raises(FormatError):
            codec.decode(data[:cut])
    record = bytearray(L3icFile.parse(data).side_record(container.LOSSLESS))
    for bad in (record[:-1], bytes([7]) + record[1:]):
        with pytest.raises(FormatError, match="lossless"):
            codec.decode(container.write(header, [], {container.LOSSLESS: bytes(bad)}))


def test_the_margin_is_in_the_header_and_only_for_small_axes(codec):
    small = read_info(lossy(codec, np.full((5, 40, 3), 90, np.uint8)))
    assert small["latent"] == [1 + 2 * MARGIN, 5]  # only the 5-px axis gets the margin
    data = lossy(codec, photo_like(SMALL_SIDE + 1, 40))
    header = L3icFile.parse(data).header
    assert not header.flags & FLAG_MARGIN and header.margin == (0, 0) and header.latent_h == 3


def test_latents_decode_exactly_at_every_small_size(codec):
    """The decoded latents are what the encoder chose, also where the hyperprior cannot reach them (a chunk coded
    with the adaptive coder's CONSTANT or RAW mode used to be read relative to the base)."""
    for n in (1, 3, 8, 12, 17, 24, 33, 40):
        for colour in ((255, 0, 255), (0, 255, 0), (0, 0, 0)):
            image = np.full((n, n + 5, 3), colour, np.uint8)
            data = lossy(codec, image)
            assert np.array_equal(read_latents(data), codec.encode_latents(image)), (n, colour)


def test_region_decode_of_a_small_image_matches_the_full_decode(codec):
    image = photo_like(12, 14)
    data = lossy(codec, image)
    full = codec.decode(data)
    assert np.array_equal(codec.decode(data, region=(3, 2, 7, 9)), full[2:11, 3:10])


def test_margin_rules_of_the_header():
    base = Header(width=12, height=5, mode="RGB", model_name="m", decoder_hash=bytes(16), codebook_size=32,
                  codebook_min=-15, channels=4, stride=8, latent_h=1 + 2 * MARGIN, latent_w=2 + 2 * MARGIN,
                  tile_h=7, tile_w=8, z_channels=4, hyper_stride=4, flags=FLAG_MARGIN)
    assert base.margin == (MARGIN, MARGIN)
    bad = {"odd": dict(latent_h=2 + 2 * MARGIN, tile_h=8), "too wide": dict(latent_w=2 + 2 * (MAX_MARGIN + 1)),
           "no margin": dict(latent_h=1, latent_w=2, tile_h=1, tile_w=2), "no flag": dict(flags=0),
           "format 2": dict(z_channels=0, hyper_stride=0), "unknown flag": dict(flags=FLAG_MARGIN | 0x20)}
    for case, change in bad.items():
        with pytest.raises(ValueError):
            dataclasses.replace(base, **change)


def test_unknown_flags_are_refused(codec):
    data = bytearray(lossy(codec, np.full((4, 4, 3), 10, np.uint8)))
    assert data[5] & FLAG_MARGIN and data[6] == 0
    data[5] |= 0x20
    with pytest.raises(FormatError, match="flags 0x%04x" % data[5]):
        L3icFile.parse(bytes(data))
