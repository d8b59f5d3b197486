"""--target-bpp / -q: the best installed quality model whose file fits, with only the models that exist."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, photo_like
from l3ic.codec import encode_to_target
from l3ic.errors import L3icError, ModelError
from l3ic.image import from_array
from l3ic.model import installed_qualities

LINE = re.compile(r"^(\S+) -> (\S+): \d+x\d+ RGB, (\d+) bytes, ([0-9.]+) bpp, model (\w+), [0-9.]+ s$")


def run(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m"] + list(args), cwd=str(cwd), capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("target")
    Image.fromarray(photo_like(64, 96, seed=5)).save(folder / "photo.png")
    return folder, folder / "photo.png"


@pytest.fixture(scope="module")
def medium_bpp(photo, codec):
    _, path = photo
    return 8.0 * len(codec.encode(Image.open(path))) / (64 * 96)


@pytest.fixture(scope="module")
def smallest_bpp(photo):
    """bpp of the photo with the lowest installed quality model."""
    from l3ic import Codec
    _, path = photo
    return 8.0 * len(Codec(installed_qualities()[-1], "cpu").encode(Image.open(path))) / (64 * 96)


def test_installed_qualities_are_the_shipped_ones_best_first():
    shipped = [q for q in ("high", "medium", "low") if os.path.isfile(os.path.join(REPO, "models", q, "manifest.json"))]
    assert installed_qualities() == shipped and "medium" in shipped


def test_no_quality_model_installed(monkeypatch):
    monkeypatch.setattr("l3ic.model.model_roots", lambda: [])
    with pytest.raises(ModelError, match="no quality model"):
        installed_qualities()


class FakeCodec:
    def __init__(self, size):
        self.size = size

    def encode(self, picture, refine=0):
        return bytes(self.size)


@pytest.mark.parametrize("target, chosen", [(2.0, "high"), (1.0, "high"), (0.6, "medium"), (0.2, "low")])
def test_encode_to_target_takes_the_best_that_fits(target, chosen):
    picture = from_array(np.zeros((80, 100, 3), np.uint8))  # 8000 pixels: 1000 bytes = 1 bpp
    codecs = {"high": FakeCodec(1000), "medium": FakeCodec(500), "low": FakeCodec(200)}
    order = ["high", "medium", "low"]
    data, name = encode_to_target(picture, target, codecs.__getitem__, order)
    assert name == chosen and len(data) == codecs[chosen].size
    with pytest.raises(L3icError, match=r"no model reaches 0\.100 bpp for this image \(smallest: low at 0\.200 bpp\)"):
        encode_to_target(picture, 0.1, codecs.__getitem__, order)
    asked = []
    encode_to_target(picture, 0.6, lambda n: asked.append(n) or codecs[n], ["medium", "low"])
    assert asked == ["medium"]  # only the models it is given, best first, stopping at the first that fits


def test_reachable_target(photo, medium_bpp):
    folder, path = photo
    target = medium_bpp * 1.02
    out = folder / "reachable.l3ic"
    result = run("runtime.encode", str(path), "-o", str(out), "--target-bpp", "%.4f" % target, cwd=folder)
    assert result.returncode == 0, result.stderr
    match = LINE.match(result.stdout.strip())
    assert match and match.group(5) == "medium", result.stdout
    assert 8.0 * os.path.getsize(out) / (64 * 96) <= target
    assert float(match.group(4)) <= target


def test_unreachable_target_names_the_smallest(photo, smallest_bpp):
    folder, path = photo
    out = folder / "unreachable.l3ic"
    result = run("runtime.encode", str(path), "-o", str(out), "--target-bpp", "0.01", cwd=folder)
    assert result.returncode == 1 and not out.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    match = re.match(r"^l3ic: error: \S+photo\.png: no model reaches 0\.010 bpp for this image "
                     r"\(smallest: (\w+) at ([0-9.]+) bpp\)$", lines[0])
    assert match, lines[0]
    assert match.group(1) == installed_qualities()[-1]
    assert float(match.group(2)) == pytest.approx(smallest_bpp, abs=1e-3)


def test_quality_option(photo):
    folder, path = photo
    a, b = folder / "q.l3ic", folder / "m.l3ic"
    assert run("runtime.encode", str(path), "-o", str(a), "-q", "medium", cwd=folder).returncode == 0
    assert run("runtime.encode", str(path), "-o", str(b), "--model", "medium", cwd=folder).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    bad = run("runtime.encode", str(path), "-o", str(folder / "x.l3ic"), "-q", "ultra", cwd=folder)
    assert bad.returncode == 2 and bad.stderr.startswith("l3ic: error: argument -q/--quality: invalid choice")


@pytest.mark.parametrize("args, message", [
    (["--target-bpp", "1", "-q", "medium"], "--target-bpp chooses the model itself: drop --model/--quality"),
    (["--target-bpp", "1", "-m", "medium"], "--target-bpp chooses the model itself: drop --model/--quality"),
    (["--target-bpp", "0"], "--target-bpp must be a positive number of bits per pixel, got 0.0"),
    (["-q", "medium", "-m", "medium"], "give --model or --quality, not both"),
    (["--max-pixels", "0"], "--max-pixels must be a positive number of pixels, got 0"),
])
def test_target_usage_errors(photo, args, message):
    folder, path = photo
    result = run("runtime.encode", str(path), "-o", str(folder / "u.l3ic"), *args, cwd=folder)
    assert result.returncode == 1
    assert result.stderr.strip() == "l3ic: error: " + message


def test_batch_with_target(photo, tmp_path, medium_bpp):
    _, path = photo
    for name in ("one.png", "two.png"):
        (tmp_path / name).write_bytes(path.read_bytes())
    result = run("runtime.encode", str(tmp_path), "--target-bpp", "%.4f" % (medium_bpp * 1.02), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 images done, 0 failed")
    result = run("runtime.encode", str(tmp_path / "*.png"), "-f", "--target-bpp", "0.01", cwd=tmp_path)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 2
    assert result.stdout.startswith("0 images done, 2 failed")


def test_prefers_a_better_installed_model(photo, tmp_path, medium_bpp):
    """With a 'high' model installed (here: the medium network under another name, via $L3IC_MODELS), the
    target picks it first, and the decoder finds it by the name in the file."""
    folder, path = photo
    high = tmp_path / "models" / "high"
    high.mkdir(parents=True)
    with open(os.path.join(REPO, "models", "medium", "manifest.json")) as f:
        manifest = json.load(f)
    manifest["name"] = "high"
    (high / "manifest.json").write_text(json.dumps(manifest))
    for name in manifest["files"]:
        os.symlink(os.path.join(REPO, "models", "medium", name), str(high / name))
    env = {"L3IC_MODELS": str(tmp_path / "models")}
    out = tmp_path / "high.l3ic"
    result = run("runtime.encode", str(path), "-o", str(out), "--target-bpp", "%.4f" % (medium_bpp * 1.02), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert LINE.match(result.stdout.strip()).group(5) == "high"
    result = run("runtime.decode", str(out), "-o", str(tmp_path / "high.png"), cwd=tmp_path, env=env)
    assert result.returncode == 0 and "model high" in result.stdout, result.stderr
