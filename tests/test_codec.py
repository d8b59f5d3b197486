"""The Python API end to end with the shipped default model."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from l3ic import Codec, FormatError, L3icError, ModelError, read_info, read_latents
from l3ic.image import psnr
from l3ic.model import find_model

from conftest import photo_like


def manifest(name="medium"):
    with open(os.path.join(find_model(name), "manifest.json")) as f:
        return json.load(f)


def test_sample_round_trip_meets_the_manifest(codec, sample):
    data = codec.encode(sample)
    decoded = codec.decode(data)
    assert decoded.shape == sample.shape and decoded.dtype == np.uint8
    expected = manifest()["sample"]
    assert psnr(sample, decoded) > expected["psnr"] - 0.1
    assert 8.0 * len(data) / (sample.shape[0] * sample.shape[1]) < expected["bpp"] * 1.01


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (13, 17), (8, 8), (33, 65)])
def test_any_size_round_trips(codec, shape):
    image = photo_like(*shape, seed=sum(shape))
    decoded = codec.decode(codec.encode(image))
    assert decoded.shape == image.shape


def test_grayscale_stays_grayscale(codec):
    gray = photo_like(40, 56)[:, :, 1]
    data = codec.encode(gray)
    assert read_info(data)["mode"] == "L"
    decoded = codec.decode(data)
    assert decoded.shape == gray.shape
    assert psnr(gray, decoded) > 20


def test_alpha_is_kept_losslessly(codec):
    rgba = np.dstack([photo_like(30, 41), np.arange(30 * 41, dtype=np.uint32).reshape(30, 41).astype(np.uint8)])
    decoded = codec.decode(codec.encode(rgba))
    assert decoded.shape == rgba.shape
    np.testing.assert_array_equal(decoded[:, :, 3], rgba[:, :, 3])


def test_pil_images_are_accepted(codec, sample):
    decoded = codec.decode_to_pil(codec.encode(Image.fromarray(sample)))
    assert decoded.size == (sample.shape[1], sample.shape[0]) and decoded.mode == "RGB"


def test_encoding_is_deterministic(codec):
    image = photo_like(64, 80)
    assert codec.encode(image) == codec.encode(image)


def test_channel_subset_matches_full_decode(codec, sample):
    data = codec.encode(sample)
    full = read_latents(data)
    subset = [5, 0, 3]
    np.testing.assert_array_equal(read_latents(data, subset), full[subset])
    assert full.shape == (codec.model.channels, 64, 48)
    np.testing.assert_array_equal(full, codec.encode_latents(sample))


def test_fewer_channels_give_a_coarser_but_valid_preview(codec, sample):
    data = codec.encode(sample)
    full = psnr(sample, codec.decode(data))
    first8 = psnr(sample, codec.decode(data, channels=range(8)))
    last8 = psnr(sample, codec.decode(data, channels=range(codec.model.channels - 8, codec.model.channels)))
    assert full > first8 > last8  # channels are ordered by importance


def test_latents_round_trip(codec, sample):
    latents = codec.encode_latents(sample)
    assert latents.dtype == np.float32  # coded about the hyperprior's mean: quarters, not all integers
    assert np.array_equal(4 * latents, np.rint(4 * latents)) and not np.array_equal(latents, np.rint(latents))
    data = codec.encode(sample)
    assert read_info(data)["mean_shifted"] is True
    np.testing.assert_array_equal(read_latents(data), latents)
    image = codec.decode_latents(latents)
    np.testing.assert_array_equal(image, codec.decode(data))


def test_info(codec, sample):
    data = codec.encode(sample)
    info = read_info(data)
    assert (info["width"], info["height"], info["mode"]) == (384, 512, "RGB")
    assert info["model"] == "medium" and info["bytes"] == len(data)
    assert info["channels"] == codec.model.channels and info["tiles"] == 1


def test_file_from_another_model_is_refused(codec, sample, tmp_path):
    import shutil
    other = tmp_path / "other"
    shutil.copytree(find_model("medium"), other)
    with open(other / "manifest.json") as f:
        m = json.load(f)
    m["files"]["decoder.onnx"]["sha256"] = "0" * 64
    with open(other / "manifest.json", "w") as f:
        json.dump(m, f)
    data = codec.encode(sample)
    with pytest.raises(ModelError, match="made with model"):
        Codec(str(other), "cpu").decode(data)


def test_damaged_model_file_is_refused(tmp_path, sample):
    import shutil
    damaged = tmp_path / "damaged"
    shutil.copytree(find_model("medium"), damaged)
    with open(damaged / "decoder.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    codec = Codec(str(damaged), "cpu")
    with pytest.raises(ModelError, match="sha256"):
        codec.decode(codec.encode(sample[:16, :16]))


def test_model_files_are_shipped_once():
    """No two files under models/ are identical: a legacy folder lists the decoder it shares with a current model,
    or with another release, in its manifest, and the lookup finds it by its sha256 (l3ic.model.model_file)."""
    import glob
    from l3ic.model import Model, file_sha256
    root = os.path.dirname(find_model("medium"))
    seen = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.onnx"), recursive=True)
                       + glob.glob(os.path.join(root, "**", "*.npz"), recursive=True)):
        digest = file_sha256(path)
        assert digest not in seen, ("%s is a copy of %s: delete the one in models/legacy (its manifest keeps the "
                                    "sha256, by which the other is found)" % (path, seen[digest]))
        seen[digest] = path
    for legacy in ("high-0.4", "low-0.4", "medium-0.4.3"):
        assert Model(os.path.join(root, "legacy", legacy), "cpu").decoder is not None


def test_a_folder_finds_a_listed_file_it_has_no_copy_of_by_its_hash(tmp_path):
    """A decode-only folder may leave out a file it shares with another installed model: its manifest lists the
    file's sha256, and the lookup finds that copy (l3ic.model.model_file)."""
    import shutil
    from l3ic.model import Model, model_file
    root = os.path.dirname(find_model("medium"))
    legacy = tmp_path / "high-0.4"
    legacy.mkdir()
    for name in ("manifest.json", "entropy_model.npz"):
        shutil.copyfile(os.path.join(root, "legacy", "high-0.4", name), legacy / name)
    assert model_file(str(legacy), "decoder.onnx") == os.path.join(root, "high", "decoder.onnx")
    assert Model(str(legacy), "cpu").decoder is not None
    with open(legacy / "manifest.json") as f:
        manifest = json.load(f)
    manifest["files"]["decoder.onnx"]["sha256"] = "0" * 64  # installed nowhere
    with open(legacy / "manifest.json", "w") as f:
        json.dump(manifest, f)
    with pytest.raises(ModelError, match="model file missing: .*decoder.onnx"):
        Model(str(legacy), "cpu").decoder


def test_unknown_model_and_provider():
    with pytest.raises(ModelError, match="unknown model"):
        Codec("ultra")
    with pytest.raises(L3icError, match="provider must be auto, cpu, cuda"):
        Codec("medium", "tpu")


def test_bad_arrays_are_clear_errors(codec):
    for bad in (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(L3icError):
            codec.encode(bad)


def test_hostile_streams_fail_cleanly(codec):
    """Thousands of truncated, bit-flipped and random streams: each one a clean L3icError."""
    data = codec.encode(photo_like(24, 40))
    rng = np.random.default_rng(1234)
    cases = [data[:n] for n in range(0, len(data))]
    for _ in range(1500):
        flipped = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            flipped[rng.integers(len(data))] ^= 1 << rng.integers(8)
        cases.append(bytes(flipped))
    cases += [rng.bytes(rng.integers(0, 400)) for _ in range(500)]
    cases += [b"L3IC" + rng.bytes(rng.integers(0, 200)) for _ in range(500)]
    for case in cases:
        if case == data:
            continue
        with pytest.raises(L3icError):
            codec.decode(case)
    assert len(cases) > 2500


def test_format_error_is_an_l3ic_error():
    assert issubclass(FormatError, L3icError)


# ---- shapes and inputs (issue 16, item 9) ---------------------------------------------------------------
def test_opaque_alpha_keeps_the_users_shape(codec):
    """An alpha channel that is all 255 is still the user's alpha: decode gives back (H, W, 4)."""
    rgba = np.dstack([photo_like(20, 28), np.full((20, 28), 255, np.uint8)])
    decoded = codec.decode(codec.encode(rgba))
    assert decoded.shape == rgba.shape
    assert (decoded[:, :, 3] == 255).all()


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_opaque_alpha_keeps_the_pillow_mode(codec, mode):
    image = Image.fromarray(photo_like(20, 28)).convert(mode)  # alpha all 255
    assert codec.decode_to_pil(codec.encode(image)).mode == mode
    assert codec.decode(codec.encode(image)).shape == (20, 28, len(mode))


def test_an_opaque_alpha_plane_costs_few_bytes(codec):
    rgb = photo_like(64, 96)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert len(codec.encode(rgba)) - len(codec.encode(rgb)) < 64


def test_paths_are_accepted(codec, tmp_path):
    import pathlib
    rgb = photo_like(24, 32)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    data = codec.encode(str(tmp_path / "photo.png"))
    assert data == codec.encode(rgb) == codec.encode(tmp_path / "photo.png")
    (tmp_path / "photo.l3ic").write_bytes(data)
    for path in (str(tmp_path / "photo.l3ic"), pathlib.Path(tmp_path / "photo.l3ic")):
        np.testing.assert_array_equal(codec.decode(path), codec.decode(data))
        assert read_info(path) == read_info(data)
        np.testing.assert_array_equal(read_latents(path), read_latents(data))


def test_other_inputs_are_clear_errors(codec, tmp_path):
    for bad in (42, None, b"not an array", [1, 2, 3]):
        with pytest.raises(L3icError, match="an array, a Pillow image or a path"):
            codec.encode(bad)
    for bad in (42, None, np.zeros(10, np.uint8)):
        with pytest.raises(L3icError, match="bytes or a path"):
            codec.decode(bad)
    with pytest.raises(L3icError, match="no such file"):
        codec.encode(str(tmp_path / "missing.png"))
    with pytest.raises(L3icError, match="no such file"):
        codec.decode(tmp_path / "missing.l3ic")


def test_dir_lists_the_public_names():
    import l3ic
    names = dir(l3ic)
    for name in ("Codec", "read_info", "read_latents", "L3icError", "FormatError", "FSEError", "ImageError", "ModelError"):
        assert name in names and getattr(l3ic, name) is not None
    assert set(l3ic.__all__) <= set(names)
    import runtime  # the first import name: the same public names
    assert set(l3ic.__all__) <= set(dir(runtime))


@pytest.mark.parametrize("latents, message", [
    (np.zeros((32, 4)), "shape"),
    (np.zeros((32, 0, 3)), "shape"),
    (np.zeros((16, 4, 4)), "channels"),
    (np.full((32, 2, 2), "a"), "dtype"),
    (np.zeros((32, 2, 2), complex), "dtype"),
    (np.zeros((32, 2, 2), object), "dtype"),
    (np.full((32, 2, 2), np.nan), "finite"),
    (np.full((32, 2, 2), 1e300), "finite"),
    (None, "integer or float array"),
    (np.zeros((32, 2, 2), bool), "integer or float array"),
])
def test_bad_latents_are_l3ic_errors(codec, latents, message):
    with pytest.raises(L3icError, match=message):
        codec.decode_latents(latents)


@pytest.mark.parametrize("latents, message", [
    (np.full((16, 2, 2), 17), "codebook"),
    (np.full((16, 2, 2), -16), "codebook"),
    (np.full((16, 2, 2), 0.5), "codebook"),
    (np.zeros((32, 2, 2), np.int16), "channels"),
])
def test_bad_latents_for_a_format2_model_are_l3ic_errors(latents, message):
    legacy = Codec(os.path.join(os.path.dirname(find_model("low")), "legacy", "low-format2"), "cpu")
    with pytest.raises(L3icError, match=message):
        legacy.decode_latents(latents)
    assert legacy.decode_latents(np.full((16, 2, 2), 16, np.int16)).shape == (16, 16, 3)


# ---- public stages (issue 16, item 11) -------------------------------------------------------------------
def test_the_public_stages_make_up_encode_and_decode(codec):
    from l3ic import container
    from l3ic.image import from_array
    from l3ic.synthesis import latent_values, synthesise
    picture = from_array(photo_like(40, 72))
    header = codec.header_for(picture)
    tiles, z_chunks = codec.code(codec.quantise(codec.analyse(picture.rgb(), header), header), header)
    data = container.write(header, tiles, picture.side_data, z_chunks)
    assert data == codec.encode(picture)
    parsed, coder = codec.parse(data)
    assert coder.model is codec.decoder_for(parsed.header) is codec.model
    pixels = synthesise(coder.model, latent_values(parsed, coder), parsed.header, tiling=codec.tiling)
    np.testing.assert_array_equal(pixels, codec.decode(data))


def test_benchmarks_use_only_public_names_of_l3ic():
    """speed.py and fuzz.py time and fuzz the codec through its public stages, and set tiling as a value."""
    import re
    from conftest import REPO
    for name in ("speed.py", "fuzz.py"):
        with open(os.path.join(REPO, "benchmarks", name), encoding="utf-8") as f:
            text = f.read()
        private = re.findall(r"\b(?:codec|codec_module|model|container|parsed|hyperprior|images?)\._[a-z]\w*", text)
        assert not private, (name, private)
        assert not re.search(r"codec_module\.[A-Z_]+\s*=", text), name


def test_bad_channels_regions_and_tilings_are_l3ic_errors(codec):
    from l3ic import L3icError
    data = codec.encode(photo_like(20, 30))
    for kwargs in (dict(channels=["x"]), dict(channels=5), dict(channels=[0.7]), dict(region=(0, 0, "a", 1)),
                   dict(region=(0, 0, 5)), dict(region=5)):
        with pytest.raises(L3icError):
            codec.decode(data, **kwargs)
    with pytest.raises(L3icError, match="tiling"):
        type(codec)("medium", "cpu", tiling=64)


@pytest.mark.parametrize("name", ["low", "medium", "high"])
@pytest.mark.parametrize("size", [(61, 77), (150, 203), (577, 96), (40, 300)])
def test_side_information_on_its_grid_and_latents_as_padded_to_the_stride(name, size):
    """An image whose sides are not multiples of 32 px: ẑ is what the image padded to whole ẑ cells gives (on the
    hyper-synthesis's grid), the latents exactly what the image padded to the stride gives."""
    from l3ic.image import from_array
    from l3ic.tiling import pad_to
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    rgb = np.clip(np.stack([yy * 0.7, xx * 0.5, (yy + xx) % 97 * 2.0], axis=2) + rng.normal(0, 6, size + (3,)), 0, 255)
    rgb = rgb.astype(np.uint8)
    codec = Codec(name, "cpu")
    header = codec.header_for(from_array(rgb))
    analysed = codec.analyse(rgb, header)
    y, z = analysed.latents, analysed.z
    y8 = codec.model.run_encoder(pad_to(rgb, 8))[0]
    z32 = codec.model.run_encoder(pad_to(rgb, 32))[1]
    np.testing.assert_array_equal(y, y8[:, :y.shape[1], :y.shape[2]])
    np.testing.assert_array_equal(z, z32[:, :z.shape[1], :z.shape[2]])


def test_blockwise_encode_keeps_the_border_latents():
    """A tiled encode's windows at the bottom and right borders give the latents of a whole-image encode padded
    to the stride (up to float rounding), not those of more replicated border."""
    from l3ic.image import from_array
    from l3ic.tiling import Tiling, pad_to
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:300, 0:236]
    rgb = np.clip(np.stack([yy * 0.6, xx * 0.8, (yy * xx) % 89 * 2.5], axis=2) + rng.normal(0, 5, (300, 236, 3)), 0, 255)
    rgb = rgb.astype(np.uint8)
    codec = Codec("medium", "cpu", tiling=Tiling(whole_image=16, tile=16))
    header = codec.header_for(from_array(rgb))
    y = codec.analyse(rgb, header).latents
    whole = codec.model.run_encoder(pad_to(rgb, 8))[0][:, :y.shape[1], :y.shape[2]]
    assert np.max(np.abs(y - whole)) < 1e-2
