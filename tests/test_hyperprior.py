"""The format-3 entropy model: the integer hyper-synthesis is exact, tiles see the whole image's tables, bad files fail."""
import os
import shutil

import numpy as np
import pytest

from l3ic import Codec, ModelError, read_info
from l3ic.hyperprior import EntropyModel, IntegerLayer
from l3ic.model import find_model
from l3ic.quality import served

from conftest import photo_like


@pytest.fixture(scope="module")
def entropy_model(codec):
    return codec.model.entropy_model


def integer_reference(layer, x):
    """The same layer in int64 arithmetic only: what the float64 computation must equal exactly."""
    k, pad = layer.size, layer.size // 2
    xi = np.pad(x.astype(np.int64), ((0, 0), (pad, pad), (pad, pad)))
    _, h, w = x.shape
    acc = np.zeros((layer.cout, h, w), np.int64) + layer.bias[:, None, None]
    for ky in range(k):
        for kx in range(k):
            acc += np.einsum("chw,co->ohw", xi[:, ky:ky + h, kx:kx + w], layer.kernel[ky, kx])
    shift = np.round(np.log2(layer.scale)).astype(np.int64)[:, None, None]
    # floor(acc * 2^shift + 1/2) in integers: for shift < 0 an arithmetic right shift of acc + 2^(-shift-1)
    out = np.where(shift < 0, (acc + (np.int64(1) << np.maximum(-shift - 1, 0))) >> np.maximum(-shift, 0),
                   acc << np.maximum(shift, 0))
    return np.clip(out, layer.lo, layer.hi)


def test_hyper_synthesis_layers_are_exact(entropy_model):
    """float64 over integers (BLAS, any summation order) gives exactly what int64 arithmetic gives."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, (entropy_model.z_channels, 7, 9)).astype(np.float64) + entropy_model.z_min
    for layer in entropy_model.layers:
        shift = np.round(np.log2(layer.scale))
        plain = IntegerLayer(layer.kernel, layer.bias, shift, (layer.lo, layer.hi))  # without depth-to-space
        np.testing.assert_array_equal(plain(x), integer_reference(layer, x))
        x = layer(x)
    for head in (entropy_model.mean_head, entropy_model.scale_head):
        np.testing.assert_array_equal(head(x), integer_reference(head, x))


def test_tile_parameters_equal_the_whole_map(entropy_model):
    rng = np.random.default_rng(1)
    z = rng.integers(3, 12, (entropy_model.z_channels, 11, 13)).astype(np.uint8)
    whole_base, whole_index = entropy_model.tile_parameters(z, (0, 0, 44, 50))  # a ragged latent: 50 < 13 * 4
    assert whole_base.shape == (entropy_model.mean_head.cout, 44, 50)
    for rect in [(0, 0, 16, 16), (16, 32, 16, 16), (32, 48, 12, 2), (4, 8, 20, 24)]:
        y, x, h, w = rect
        base, index = entropy_model.tile_parameters(z, rect)
        np.testing.assert_array_equal(base, whole_base[:, y:y + h, x:x + w])
        np.testing.assert_array_equal(index, whole_index[:, y:y + h, x:x + w])
    assert whole_index.max() < entropy_model.latent_tables.n_tables


def test_format_3_files_name_their_entropy_model(codec):
    data = codec.encode(photo_like(40, 56))
    info = read_info(data)
    assert info["format_version"] == 3 and info["z_channels"] == codec.model.entropy_model.z_channels
    assert info["hyper_stride"] == 4


def test_flat_images_cost_little_and_decode_well(codec):
    """Flat content: a few hundred bytes (mostly the channel index) for a 256 x 256 image, and a faithful decode."""
    from l3ic.image import psnr
    flat = np.full((256, 256, 3), (90, 140, 200), np.uint8)
    data = codec.encode(flat)
    assert len(data) < 600
    assert psnr(flat, codec.decode(data)) > 35.0


def test_a_damaged_entropy_model_is_refused(tmp_path):
    folder = tmp_path / "medium"
    shutil.copytree(find_model("medium"), folder, ignore=shutil.ignore_patterns("keras"))
    path = folder / "entropy_model.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        Codec(str(folder), "cpu").encode(photo_like(16, 16))


def test_an_inexact_entropy_model_is_refused(tmp_path, codec):
    """A hyper-synthesis whose accumulators could leave float64's exact integers is refused at load."""
    with np.load(os.path.join(codec.model.folder, "entropy_model.npz")) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["hs1_kernel"] = arrays["hs1_kernel"].astype(np.int64) * (1 << 40)
    path = tmp_path / "entropy_model.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelError, match="2\\^52"):
        EntropyModel(str(path), codec.model.channels, codec.model.codebook_size)


def smooth_photo(height, width):
    """A defocused background: slow gradients with little texture (the kind of photo whose ẑ the static tables,
    made on textured photos, coded dearly)."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [90 + 60 * np.sin(2.1 * yy + 1.3 * xx + k) + 25 * np.cos(3.0 * xx - k) for k in range(3)]
    return np.clip(np.stack(planes, axis=2), 0, 255).astype(np.uint8)


def test_z_takes_a_table_of_its_own_where_that_is_shorter(codec):
    from l3ic import container
    from l3ic.entropy import conditional
    image = smooth_photo(256, 384)
    data = codec.encode(image, quality=served("medium")[0])  # medium's lowest q (the bottom of its grid)
    parsed = container.L3icFile.parse(data)
    assert parsed.header.flags & container.FLAG_ADAPTIVE_Z
    assert int(parsed.z_chunks().modes[0]) in conditional.ADAPTIVE_MODES
    coder = conditional.ConditionalCoder(codec.model)
    z = coder.decode_z(parsed)
    static = codec.model.entropy_model.z_tables.encode(np.ascontiguousarray(z).reshape(1, -1),
                                                       np.repeat(np.arange(z.shape[0], dtype=np.uint8), z[0].size)[None])
    assert len(parsed.z_chunks().payload) < static.sizes[0]  # the chunk is the shorter coding of the same ẑ
    assert np.array_equal(read_latents_of(data), codec.encode_latents(image, quality=served("medium")[0]))
    detailed = container.L3icFile.parse(codec.encode(photo_like(128, 128)))
    assert bool(detailed.header.flags & container.FLAG_ADAPTIVE_Z) == (int(detailed.z_chunks().modes[0]) in (0, 4))


def read_latents_of(data):
    from l3ic import read_latents
    return read_latents(data)


def test_the_adaptive_z_flag_must_match_the_chunk(codec):
    from l3ic import FormatError, container
    data = bytearray(codec.encode(smooth_photo(256, 384), quality=served("medium")[0]))
    assert data[5] & container.FLAG_ADAPTIVE_Z
    data[5] &= ~container.FLAG_ADAPTIVE_Z
    from l3ic.container import L3icFile
    with pytest.raises(FormatError):  # the header CRC first; a file with a valid CRC is refused for the mismatch
        L3icFile.parse(bytes(data))
    from benchmarks.fuzz import fix_crcs
    with pytest.raises(FormatError, match="adaptive-ẑ flag"):
        L3icFile.parse(fix_crcs(bytes(data)))
