"""The command-line tools as a user runs them: happy paths and the bad-input matrix."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from conftest import SAMPLE, photo_like
from l3ic.image import DEFAULT_MAX_PIXELS


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m"] + list(args), cwd=str(cwd), capture_output=True, text=True, timeout=300)


def assert_clean_failure(result):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l3ic: error:"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    source = folder / "photo.png"
    Image.fromarray(photo_like(50, 70)).save(source)
    result = run("runtime.encode", str(source), "--verify", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, source, folder / "photo.l3ic", result.stdout


def test_encode_decode_info(encoded):
    folder, source, l3ic, stdout = encoded
    assert "bpp" in stdout and "PSNR" in stdout
    out = folder / "decoded.png"
    result = run("runtime.decode", str(l3ic), "-o", str(out), cwd=folder)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (70, 50)
    info = json.loads(run("runtime.info", str(l3ic), "--json", cwd=folder).stdout)
    assert info["width"] == 70 and info["model"] == "medium"


def test_decode_channel_subset(encoded):
    folder, _, l3ic, _ = encoded
    out = folder / "preview.png"
    result = run("runtime.decode", str(l3ic), "-o", str(out), "--channels", "0-7", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (70, 50)


def test_refuses_to_overwrite_without_force(encoded):
    folder, source, l3ic, _ = encoded
    before = l3ic.read_bytes()
    assert_clean_failure(run("runtime.encode", str(source), cwd=folder))
    assert l3ic.read_bytes() == before
    assert run("runtime.encode", str(source), "-f", cwd=folder).returncode == 0


def make_bad_inputs(folder):
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image at all")
    png = (folder / "good.png")
    Image.fromarray(photo_like(40, 40)).save(png)
    (folder / "truncated.png").write_bytes(png.read_bytes()[:200])
    (folder / "adir").mkdir()


@pytest.mark.parametrize("name", ["missing.png", "empty.png", "text.png", "truncated.png", "adir"])
def test_encode_bad_inputs(tmp_path, name):
    make_bad_inputs(tmp_path)
    before = sorted(os.listdir(tmp_path))
    assert_clean_failure(run("runtime.encode", name, cwd=tmp_path))
    assert sorted(os.listdir(tmp_path)) == before  # no partial output


def test_decode_bad_streams(encoded, tmp_path):
    _, _, l3ic, _ = encoded
    data = l3ic.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    cases = {"truncated.l3ic": data[: len(data) // 2], "flipped.l3ic": bytes(flipped), "empty.l3ic": b"",
             "random.l3ic": os.urandom(300)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert_clean_failure(run("runtime.decode", name, cwd=tmp_path))
        assert not (tmp_path / name.replace(".l3ic", ".decoded.png")).exists()
        assert (tmp_path / name).read_bytes() == content


def test_bad_output_paths(encoded, tmp_path):
    _, source, l3ic, _ = encoded
    assert_clean_failure(run("runtime.encode", str(source), "-o", str(tmp_path / "nope" / "x.l3ic"), cwd=tmp_path))
    assert_clean_failure(run("runtime.decode", str(l3ic), "-o", str(l3ic), "-f", cwd=tmp_path))
    assert_clean_failure(run("runtime.encode", str(source), "-o", str(source), "-f", cwd=tmp_path))
    assert_clean_failure(run("runtime.decode", str(l3ic), "-o", str(tmp_path / "x.unknownext"), cwd=tmp_path))
    assert not (tmp_path / "x.unknownext").exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder in which creating a file fails, also for root (CI runs as root, and chmod does not stop root).

    Not root: chmod 555.  Root: the immutable attribute (chattr +i), else a read-only tmpfs mounted on it;
    skipped only where neither is permitted.
    """
    folder = tmp_path / "ro"
    folder.mkdir()
    undo = None
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = ["chattr", "-i", str(folder)]
    elif shutil.which("mount") and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                                                  capture_output=True).returncode == 0:
        undo = ["umount", str(folder)]
    else:
        pytest.skip("cannot make a folder read-only for root here (no chattr +i, no mount)")
    try:
        with pytest.raises(OSError):
            (folder / "probe").write_bytes(b"")
        yield folder
    finally:
        subprocess.run(undo, capture_output=True)


def snapshot(*folders):
    """Names and contents of every file under the folders: to check that a failed run wrote and changed nothing."""
    files = {}
    for folder in folders:
        for root, _, names in os.walk(str(folder)):
            for name in names:
                with open(os.path.join(root, name), "rb") as f:
                    files[os.path.join(root, name)] = f.read()
    return files


def test_read_only_output_folder(encoded, read_only_folder, tmp_path):
    folder, source, l3ic, _ = encoded
    before = snapshot(folder, read_only_folder)
    assert_clean_failure(run("runtime.encode", str(source), "-o", str(read_only_folder / "x.l3ic"), cwd=tmp_path))
    assert_clean_failure(run("runtime.decode", str(l3ic), "-o", str(read_only_folder / "x.png"), cwd=tmp_path))
    assert snapshot(folder, read_only_folder) == before


@pytest.mark.parametrize("where", ["under a regular file", "in a missing folder"])
def test_output_folder_that_cannot_exist(encoded, tmp_path, where):
    folder, source, l3ic, _ = encoded
    before = snapshot(folder)
    for tool, src, out in (("runtime.encode", source, "x.l3ic"), ("runtime.decode", l3ic, "x.png")):
        parent = src if where == "under a regular file" else tmp_path / "missing"
        assert_clean_failure(run(tool, str(src), "-o", str(parent / out), cwd=tmp_path))
    assert snapshot(folder) == before and not os.listdir(str(tmp_path))


def test_output_is_the_input(encoded, tmp_path):
    folder, source, l3ic, _ = encoded
    before = snapshot(folder)
    for force in ([], ["-f"]):
        assert_clean_failure(run("runtime.encode", str(source), "-o", str(source), *force, cwd=tmp_path))
        assert_clean_failure(run("runtime.decode", str(l3ic), "-o", str(l3ic), *force, cwd=tmp_path))
    assert snapshot(folder) == before


@pytest.mark.parametrize("name", ["missing.l3ic", "adir", "empty.png", "text.png", "good.png", "truncated.png"])
def test_decode_bad_inputs(tmp_path, name):
    make_bad_inputs(tmp_path)
    before = snapshot(tmp_path)
    assert_clean_failure(run("runtime.decode", name, "-o", "out.png", cwd=tmp_path))
    assert snapshot(tmp_path) == before


def test_decode_with_the_wrong_model(encoded, tmp_path):
    """A model folder whose decoder differs (here only in its manifest's hash) is refused before any decoding."""
    from l3ic.model import find_model
    folder, _, l3ic, _ = encoded
    other = tmp_path / "other-model"
    other.mkdir()
    with open(os.path.join(find_model("medium"), "manifest.json")) as f:
        manifest = json.load(f)
    manifest["files"]["decoder.onnx"]["sha256"] = "1" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(folder, tmp_path)
    result = run("runtime.decode", str(l3ic), "-o", str(tmp_path / "x.png"), "-m", str(other), cwd=tmp_path)
    assert_clean_failure(result)
    assert "made with model 'medium'" in result.stderr
    assert snapshot(folder, tmp_path) == before


def test_a_file_naming_a_folder_is_not_decoded_with_it(encoded, tmp_path, monkeypatch):
    """A file's model name is only compared with installed models' names: a file naming the installed model's
    folder by a path (which would otherwise decode, being that very model) is refused, by the CLI and Pillow.
    The path is a short link in the working folder: a model name has at most 64 bytes."""
    import dataclasses
    from l3ic import container
    from l3ic.model import find_model
    (tmp_path / "link").symlink_to(os.path.abspath(find_model("medium")), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    parsed = container.L3icFile.parse(encoded[2].read_bytes())
    header = dataclasses.replace(parsed.header, model_name="./link")
    tiles = [parsed.tile_chunks(t) for t in range(parsed.header.n_tiles)]
    path = tmp_path / "named.l3ic"
    path.write_bytes(container.write(header, tiles, dict(parsed.side_data), parsed.z_chunks()))
    result = run("runtime.decode", str(path), "-o", str(tmp_path / "x.png"), cwd=tmp_path)
    assert_clean_failure(result)
    assert "which is not the name of an installed model" in result.stderr and not (tmp_path / "x.png").exists()
    import l3ic.pillow  # noqa: F401
    with pytest.raises(OSError, match="not the name of an installed model"):
        Image.open(path).load()


def claimed_size_file(width, height, folder):
    """A small, valid l3ic file for the medium model claiming width x height pixels: one tile, every channel CONSTANT."""
    import numpy as np
    from l3ic import container, fse
    from l3ic.model import Model
    m = Model("medium", "cpu")
    lh, lw = -(-height // m.stride), -(-width // m.stride)
    header = container.Header(width=width, height=height, mode="RGB", model_name=m.name, decoder_hash=m.decoder_hash,
                              codebook_size=m.codebook_size, codebook_min=m.codebook_min, channels=m.channels,
                              stride=m.stride, latent_h=lh, latent_w=lw, tile_h=lh, tile_w=lw)
    tile = container.TileChunks(np.full(m.channels, fse.CONSTANT, np.uint8), np.ones(m.channels, np.uint32),
                                bytes([-m.codebook_min]) * m.channels)
    path = folder / ("%dx%d.l3ic" % (width, height))
    path.write_bytes(container.write(header, [tile]))
    return path


def test_bitstream_bomb_is_refused_quickly_in_small_memory(tmp_path):
    """A 300-byte file claiming 60000 x 60000 pixels (10.8 GB of RGB) is refused before anything is allocated."""
    from benchmarks.memory import run_measured
    bomb = claimed_size_file(60000, 60000, tmp_path)
    assert bomb.stat().st_size < 1000
    result, seconds, peak_mib = run_measured("runtime.decode", [str(bomb), "-o", "out.png"], str(tmp_path))
    assert seconds < 30
    assert_clean_failure(result)
    assert "60000x60000, over the limit of %d pixels" % DEFAULT_MAX_PIXELS in result.stderr
    assert peak_mib < 300  # Python, numpy, Pillow: no pixels, no symbols
    assert not (tmp_path / "out.png").exists()


def test_max_pixels_reaches_the_bitstream_reader(encoded, tmp_path):
    folder, _, l3ic, _ = encoded
    # 40000 x 40000 is within the container's own default limit (2^31): the CLI's default must refuse it
    big = claimed_size_file(40000, 40000, tmp_path)
    result = run("runtime.info", str(big), "--json", cwd=tmp_path)
    assert_clean_failure(result)
    assert "over the limit of %d pixels" % DEFAULT_MAX_PIXELS in result.stderr
    info = json.loads(run("runtime.info", str(big), "--json", "--max-pixels", "1600000000", cwd=tmp_path).stdout)
    assert (info["width"], info["height"]) == (40000, 40000)
    result = run("runtime.decode", str(big), "-o", str(tmp_path / "big.png"), cwd=tmp_path)
    assert_clean_failure(result)
    assert "over the limit of %d pixels" % DEFAULT_MAX_PIXELS in result.stderr
    result = run("runtime.decode", str(l3ic), "-o", str(tmp_path / "x.png"), "--max-pixels", "3499", cwd=tmp_path)
    assert_clean_failure(result)
    assert "70x50, over the limit of 3499 pixels" in result.stderr
    assert run("runtime.decode", str(l3ic), "-o", str(tmp_path / "x.png"), "--max-pixels", "3500", cwd=tmp_path).returncode == 0


def test_reading_latents_of_a_bomb_is_refused_before_allocating(tmp_path):
    """read_latents would hold 3.6 GB of int16 latents for this 300-byte file: the header check refuses it first."""
    from l3ic import FormatError, read_latents
    big = claimed_size_file(60000, 60000, tmp_path).read_bytes()
    with pytest.raises(FormatError, match="over the limit of %d pixels" % DEFAULT_MAX_PIXELS):
        read_latents(big)
    assert read_latents(big, channels=[0], max_pixels=60000 * 60000).shape == (1, 7500, 7500)


def test_max_pixels_guards_input_images(encoded, tmp_path):
    _, source, _, _ = encoded
    result = run("runtime.encode", str(source), "-o", str(tmp_path / "x.l3ic"), "--max-pixels", "3499", cwd=tmp_path)
    assert_clean_failure(result)
    assert "--max-pixels" in result.stderr and not os.listdir(str(tmp_path))


def test_side_data_through_the_tools(tmp_path):
    """16-bit gray with ICC and EXIF: stays gray, info states the reduction, the decoded PNG carries ICC and EXIF
    (--strip drops them)."""
    import numpy as np
    wide = (photo_like(20, 30)[:, :, 0].astype(np.uint16) * 257 + 100)
    exif = Image.Exif()
    exif[0x010F] = "l3ic"
    Image.fromarray(wide).save(tmp_path / "wide.png", icc_profile=b"profile bytes", exif=exif)
    assert run("runtime.encode", "wide.png", cwd=tmp_path).returncode == 0
    info = run("runtime.info", "wide.l3ic", cwd=tmp_path).stdout
    assert "source                   PNG L 16-bit; 16-bit samples reduced to 8 bits" in info.splitlines()
    assert run("runtime.decode", "wide.l3ic", "-o", "back.png", cwd=tmp_path).returncode == 0
    with Image.open(tmp_path / "back.png") as back:
        assert back.mode == "L" and back.info["icc_profile"] == b"profile bytes" and back.getexif()[0x010F] == "l3ic"
    assert run("runtime.encode", "wide.png", "-o", "stripped.l3ic", "--strip", cwd=tmp_path).returncode == 0
    assert run("runtime.decode", "stripped.l3ic", "-o", "stripped.png", cwd=tmp_path).returncode == 0
    with Image.open(tmp_path / "stripped.png") as back:
        assert "icc_profile" not in back.info and "exif" not in back.info


def test_wrong_model_and_usage_errors(encoded, tmp_path):
    folder, source, l3ic, _ = encoded
    assert_clean_failure(run("runtime.encode", str(source), "-o", str(tmp_path / "a.l3ic"), "-m", "nosuchmodel", cwd=tmp_path))
    assert_clean_failure(run("runtime.decode", str(l3ic), "-o", str(tmp_path / "a.png"), "--channels", "zero", cwd=tmp_path))
    usage = run("runtime.encode", cwd=tmp_path)
    assert usage.returncode != 0 and "Traceback" not in usage.stderr


def test_runtime_works_without_tensorflow(tmp_path):
    """A subprocess in which importing TensorFlow fails still encodes and decodes."""
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tf2onnx', 'keras', 'export'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from l3ic import Codec\n"
        "c = Codec('medium', 'cpu')\n"
        "img = np.asarray(Image.open(%r).convert('RGB'))[:64, :64]\n"
        "out = c.decode(c.encode(img))\n"
        "assert out.shape == img.shape\n"
        "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'keras'))]\n"
        "print('ok')\n" % SAMPLE)
    result = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.fixture
def workdir(encoded, tmp_path):
    """A copy of the encoded fixture's photo.png and photo.l3ic in a folder of the test's own."""
    _, source, l3ic, _ = encoded
    shutil.copy(str(source), str(tmp_path / "photo.png"))
    shutil.copy(str(l3ic), str(tmp_path / "photo.l3ic"))
    return tmp_path


def test_default_decode_output_is_not_the_source(workdir):
    """``encode photo.png; decode photo.l3ic`` writes photo.decoded.png: the lossless original is never the target."""
    original = (workdir / "photo.png").read_bytes()
    for force in ([], ["-f"]):
        result = run("runtime.decode", "photo.l3ic", *force, cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert "photo.decoded.png" in result.stdout
    assert (workdir / "photo.png").read_bytes() == original
    assert Image.open(workdir / "photo.decoded.png").size == (70, 50)
    assert run("runtime.decode", "photo.l3ic", "--format", "webp", cwd=workdir).returncode == 0
    assert Image.open(workdir / "photo.decoded.webp").format == "WEBP"


@pytest.mark.parametrize("tool, src, name", [("runtime.encode", "photo.png", "photo.l3ic"),
                                             ("runtime.decode", "photo.l3ic", "photo.decoded.png")])
def test_output_folder_of_one_input(workdir, tool, src, name):
    """``-o DIR/`` (created when missing) or an existing ``-o DIR`` receives the default name, not a file named DIR."""
    result = run(tool, src, "-o", "new/deeper/", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert os.listdir(str(workdir / "new" / "deeper")) == [name]
    (workdir / "existing").mkdir()
    assert run(tool, src, "-o", "existing", cwd=workdir).returncode == 0
    assert os.listdir(str(workdir / "existing")) == [name]


def test_positional_output_is_refused(workdir):
    """``encode in.png out.l3ic`` (as cjxl takes it) fails up front with a hint, before encoding anything."""
    before = snapshot(workdir)
    for args in (["photo.png", "out.l3ic"], ["photo.png", "photo.l3ic"], ["photo.l3ic"]):
        result = run("runtime.encode", *args, "-f", cwd=workdir)
        assert_clean_failure(result)
        assert "-o" in result.stderr
    assert snapshot(workdir) == before


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "x.JPEG", "x.webp", "x.tif", "x.avif", "x.jxl", "x.heic", "x.jp2"])
def test_encode_to_an_image_extension_is_refused(workdir, name):
    before = snapshot(workdir)
    for force in ([], ["-f"]):
        result = run("runtime.encode", "photo.png", "-o", name, *force, cwd=workdir)
        assert_clean_failure(result)
        assert ".l3ic" in result.stderr
    assert snapshot(workdir) == before


@pytest.mark.parametrize("mode, channels", [("RGBA", 4), ("LA", 2)])
def test_alpha_is_reported_and_never_dropped_silently(tmp_path, mode, channels):
    import numpy as np
    pixels = photo_like(24, 32)
    pixels = pixels if channels == 4 else pixels[:, :, :1]
    alpha = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))[:, :, None]
    Image.fromarray(np.concatenate([pixels, alpha], axis=2).squeeze(), mode).save(tmp_path / "a.png")
    result = run("runtime.encode", "a.png", cwd=tmp_path)
    assert result.returncode == 0 and ("32x24 %s," % mode) in result.stdout, result.stdout
    result = run("runtime.decode", "a.l3ic", "-o", "a.jpg", cwd=tmp_path)
    assert_clean_failure(result)
    assert "alpha" in result.stderr and "-f" in result.stderr and not (tmp_path / "a.jpg").exists()
    result = run("runtime.decode", "a.l3ic", "-o", "a.jpg", "-f", cwd=tmp_path)
    assert result.returncode == 0 and "note: alpha dropped" in result.stdout, result.stderr
    assert Image.open(tmp_path / "a.jpg").mode == mode[:-1]


def test_an_opaque_alpha_goes_to_jpeg_without_force(tmp_path):
    """A file keeps an opaque alpha plane (the user's mode comes back), but writing it as JPEG loses nothing."""
    import numpy as np
    rgba = np.concatenate([photo_like(24, 32), np.full((24, 32, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert run("runtime.encode", "a.png", cwd=tmp_path).returncode == 0
    result = run("runtime.decode", "a.l3ic", "-o", "a.jpg", cwd=tmp_path)
    assert result.returncode == 0 and "note" not in result.stdout, result.stderr
    assert Image.open(tmp_path / "a.jpg").mode == "RGB" and " RGB, " in result.stdout  # the line says what was written


def test_every_tool_checks_max_pixels_up_front(encoded):
    folder = encoded[0]
    for tool in ("runtime.encode", "runtime.decode", "runtime.info"):
        source = "photo.png" if tool == "runtime.encode" else "photo.l3ic"
        output = ["-o", "x.l3ic" if tool == "runtime.encode" else "x.png"] if tool != "runtime.info" else []
        result = run(tool, source, "--max-pixels", "0", *output, cwd=folder)
        assert_clean_failure(result)
        assert "--max-pixels must be a positive number" in result.stderr, (tool, result.stderr)


def test_info_of_several_files_and_errors_that_name_the_file(workdir):
    shutil.copy(str(workdir / "photo.l3ic"), str(workdir / "copy.l3ic"))
    (workdir / "bad.l3ic").write_bytes(b"not an l3ic file")
    one = run("runtime.info", "photo.l3ic", cwd=workdir).stdout.splitlines()
    bpp = [line.split()[1] for line in one if line.startswith("bpp")]
    assert len(bpp) == 1 and len(bpp[0].split(".")[1]) == 3
    both = run("runtime.info", "photo.l3ic", "copy.l3ic", cwd=workdir)
    assert both.returncode == 0 and "==> photo.l3ic <==" in both.stdout and "==> copy.l3ic <==" in both.stdout
    listed = json.loads(run("runtime.info", "photo.l3ic", "copy.l3ic", "--json", cwd=workdir).stdout)
    assert [i["file"] for i in listed] == ["photo.l3ic", "copy.l3ic"] and listed[0]["width"] == 70
    result = run("runtime.info", "bad.l3ic", cwd=workdir)
    assert_clean_failure(result)
    assert "bad.l3ic" in result.stderr
    result = run("runtime.info", "photo.l3ic", "bad.l3ic", "--json", cwd=workdir)
    assert result.returncode == 1 and "bad.l3ic" in result.stderr
    assert [i["file"] for i in json.loads(result.stdout)] == ["photo.l3ic"]


def png_zlib_level(path):
    """FLEVEL of the zlib stream in the first IDAT chunk: 0 fastest (level 0-1) ... 3 maximum (7-9)."""
    data = open(path, "rb").read()
    at = data.index(b"IDAT") + 4
    return data[at + 1] >> 6


def test_decode_writes_fast_pngs_unless_asked_for_small_ones(workdir):
    assert run("runtime.decode", "photo.l3ic", cwd=workdir).returncode == 0
    assert png_zlib_level(workdir / "photo.decoded.png") == 0
    assert run("runtime.decode", "photo.l3ic", "-o", "small.png", "--png-level", "9", cwd=workdir).returncode == 0
    assert png_zlib_level(workdir / "small.png") == 3
    assert_clean_failure(run("runtime.decode", "photo.l3ic", "-o", "bad.png", "--png-level", "10", cwd=workdir))
