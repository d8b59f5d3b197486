"""The command-line tools as a user runs them: happy paths and the bad-input matrix."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import SAMPLE, photo_like


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
        assert not (tmp_path / name.replace(".l3ic", ".png")).exists()
        assert (tmp_path / name).read_bytes() == content


def test_bad_output_paths(encoded, tmp_path):
    _, source, l3ic, _ = encoded
    assert_clean_failure(run("runtime.encode", str(source), "-o", str(tmp_path / "nope" / "x.l3ic"), cwd=tmp_path))
    assert_clean_failure(run("runtime.decode", str(l3ic), "-o", str(l3ic), "-f", cwd=tmp_path))
    assert_clean_failure(run("runtime.encode", str(source), "-o", str(source), "-f", cwd=tmp_path))
    assert_clean_failure(run("runtime.decode", str(l3ic), "-o", str(tmp_path / "x.unknownext"), cwd=tmp_path))
    assert not (tmp_path / "x.unknownext").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_folder(encoded, tmp_path):
    _, source, _, _ = encoded
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    assert_clean_failure(run("runtime.encode", str(source), "-o", str(ro / "x.l3ic"), cwd=tmp_path))


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
        "from runtime import Codec\n"
        "c = Codec('medium', 'cpu')\n"
        "img = np.asarray(Image.open(%r).convert('RGB'))[:64, :64]\n"
        "out = c.decode(c.encode(img))\n"
        "assert out.shape == img.shape\n"
        "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'keras'))]\n"
        "print('ok')\n" % SAMPLE)
    result = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
