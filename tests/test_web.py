"""The browser decoder (web/, docs/web.md) in real headless Chromium, against the Python runtime.

Every golden file must decode in the browser with its latents, ẑ, index maps, bases and chunk modes
bit-identical to the Python runtime's (the SHA-256 that tests/golden/make_golden.py records) and its
pixels within one rounding step of ``Codec.decode``; files the command-line tools encode with every
shipped model, at odd sizes, gray and with alpha, must decode within one step of ``l3ic decode``;
and every damaged, truncated or foreign file must fail with the Python runtime's own one-line message,
in the decoder, in the viewer page and in ``python -m benchmarks.web_decode``, never hang.

The browser, clang (which builds web/dist/l3ic_fse.wasm) and onnxruntime-web (``npm ci`` in web/) are
needed: where it can (as root, with apt-get: CI's fresh machine) the ``web_tools`` fixture installs whichever
is missing from Debian's packages and the npm registry, so that the README's one test command sets everything
up; elsewhere it fails and says what to install.
"""
import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from conftest import REPO, photo_like
from l3ic import Codec, container, read_info
from l3ic.errors import L3icError
from l3ic.quality import served

pytestmark = pytest.mark.slow  # a browser, and seconds per test

WEB = os.path.join(REPO, "web")
APT_PACKAGES = ("chromium", "clang", "lld", "wasi-libc", "libclang-rt-14-dev-wasm32")
GOLDEN = os.path.join(REPO, "tests", "golden")
SUBPROCESS_TIMEOUT = 600  # a hang fails the test instead of CI


def _missing_tools():
    from l3ic.web import ORT_DIST, ORT_FILES
    missing = [] if shutil.which("chromium") or os.environ.get("CHROMIUM") else ["chromium"]
    if not shutil.which("clang") or not os.path.isdir("/usr/include/wasm32-wasi"):
        missing.append("clang")
    if not all(os.path.isfile(os.path.join(WEB, ORT_DIST, name)) for name in ORT_FILES):
        missing.append("onnxruntime-web")
    return missing


def _install(missing):
    """Install what is missing: Debian's packages, then the npm dependencies pinned in web/package-lock.json."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = []
    if set(missing) - {"onnxruntime-web"}:
        steps += [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES]]
    if "onnxruntime-web" in missing:
        steps.append(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"])
    for step in steps:
        done = subprocess.run(step, cwd=WEB, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
        assert done.returncode == 0, "%s failed: %s" % (" ".join(step), (done.stderr or done.stdout).strip()[-500:])


def _can_install():
    """Whether this test run may install packages itself: as root on a Debian-like machine (CI's)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


@pytest.fixture(scope="session")
def web_tools():
    """Chromium, clang and onnxruntime-web, installed when missing where that is possible; the WebAssembly
    decoder built."""
    missing = _missing_tools()
    if missing and _can_install():
        _install(missing)
        missing = _missing_tools()
    assert not missing, ("the browser tests need %s: apt-get install %s, and npm ci in web/"
                         % (", ".join(missing), " ".join(APT_PACKAGES)))
    built = subprocess.run([sys.executable, os.path.join(WEB, "build_wasm.py")], capture_output=True, text=True,
                           timeout=SUBPROCESS_TIMEOUT)
    assert built.returncode == 0, built.stderr


@pytest.fixture(scope="module")
def browser(web_tools):
    from benchmarks.web_decode import BrowserDecoder
    with BrowserDecoder(threads=1, timeout=240) as decoder:
        yield decoder


def pixels_of(png):
    with Image.open(io.BytesIO(png)) as image:
        return image.mode, np.asarray(image), image.info.get("icc_profile")


def assert_within_one_step(ours, reference):
    assert ours.shape == reference.shape and ours.dtype == reference.dtype == np.uint8
    difference = int(np.abs(ours.astype(np.int16) - reference.astype(np.int16)).max())
    assert difference <= 1, "the browser's pixels differ by up to %d" % difference


def error_of(decode, data):
    """The one-line message ``decode(data)`` fails with (the Python runtime's or the browser's), or None."""
    try:
        decode(data)
    except L3icError as e:
        return str(e)
    return None


def python_error(codec, data):
    return error_of(codec.decode, data)


def browser_error(browser, data):
    return error_of(browser.decode, data)


# ---- the golden files: bit-identical entropy decoding, pixels within one step -------------------------------
def _golden_cases():
    cases = []
    for folder in [GOLDEN] + sorted(os.path.join(GOLDEN, d) for d in os.listdir(GOLDEN)
                                    if os.path.isfile(os.path.join(GOLDEN, d, "golden.json"))):
        with open(os.path.join(folder, "golden.json")) as f:
            golden = json.load(f)
        for case, expected in sorted(golden["cases"].items()):
            cases.append(pytest.param(folder, case, case, expected, id="%s/%s" % (os.path.basename(folder), case)))
        if "version_1" in golden:  # a format-1 file of the format-2 release, decoding to rgb's pixels
            v1 = golden["version_1"]
            cases.append(pytest.param(folder, v1["file"][:-len(".l3ic")], "rgb", v1, id=os.path.basename(folder) + "/v1"))
    return cases


@pytest.mark.parametrize("folder, name, decoded, expected", _golden_cases())
def test_golden_files_decode_bit_identically(browser, codecs, folder, name, decoded, expected):
    with open(os.path.join(folder, name + ".l3ic"), "rb") as f:
        data = f.read()
    head, png = browser.decode(data, trace=True)
    assert head["hashes"]["symbols_sha256"] == expected["symbols_sha256"]
    if "entropy_sha256" in expected:  # format 3: ẑ, index maps, bases, modes and values
        assert head["hashes"]["entropy_sha256"] == expected["entropy_sha256"]
    mode, ours, _ = pixels_of(png)
    assert mode == head["mode"]
    assert_within_one_step(ours, codecs(read_info(data)["model"]).decode(data))
    with Image.open(os.path.join(folder, decoded + ".decoded.png")) as stored:
        assert_within_one_step(ours, np.asarray(stored))


def test_a_tiled_file_decodes_bit_identically(browser, codec):
    """Several tiles: each tile's index map from ẑ with its halo, the network run block by block with context."""
    from golden.make_golden import entropy_sha256, symbols_sha256
    from l3ic.codec import Tiling
    data = Codec("medium", "cpu", threads=1, tiling=Tiling(whole_image=8, tile=8)).encode(photo_like(150, 190, seed=5))
    assert container.L3icFile.parse(data).header.n_tiles == 9  # 3 x 3, ragged at the bottom and right
    head, png = browser.decode(data, trace=True)
    assert head["hashes"] == {"symbols_sha256": symbols_sha256(data), "entropy_sha256": entropy_sha256(data)}
    assert_within_one_step(pixels_of(png)[1], codec.decode(data))


def test_a_file_whose_z_has_its_own_table_decodes_bit_identically(browser, codec):
    """A smooth photo: its ẑ chunk carries its own table (FLAG_ADAPTIVE_Z, an FSE or CONTEXT chunk)."""
    from golden.make_golden import entropy_sha256, symbols_sha256
    from test_hyperprior import smooth_photo
    data = codec.encode(smooth_photo(256, 384), quality=served("medium")[0])  # medium's lowest q
    assert container.L3icFile.parse(data).header.flags & container.FLAG_ADAPTIVE_Z
    head, png = browser.decode(data, trace=True)
    assert head["hashes"] == {"symbols_sha256": symbols_sha256(data), "entropy_sha256": entropy_sha256(data)}
    assert_within_one_step(pixels_of(png)[1], codec.decode(data))


# ---- files the command-line tools make, with every shipped model ------------------------------------------
def _sources():
    """Odd sizes; gray, alpha and an ICC profile; a tiny image (stored losslessly, as pixels)."""
    alpha = lambda h, w: ((np.arange(h * w).reshape(h, w) * 7) % 256).astype(np.uint8)
    rgb = Image.fromarray(photo_like(67, 101, seed=1))
    rgb.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return {
        "rgb-icc": rgb,
        "gray": Image.fromarray(photo_like(65, 83, seed=2)).convert("L"),
        "rgba": Image.fromarray(np.dstack([photo_like(57, 91, seed=3), alpha(57, 91)]), "RGBA"),
        "la": Image.fromarray(np.dstack([photo_like(6, 13, seed=4)[..., 0], alpha(6, 13)]), "LA"),  # stored losslessly
    }


@pytest.mark.parametrize("model", ["low", "medium", "high"])
def test_files_the_cli_encodes_decode_like_l3ic_decode(browser, tmp_path, model):
    from l3ic.cli import main as l3ic
    for name, image in _sources().items():
        source, coded, reference = (str(tmp_path / (name + ext)) for ext in (".png", ".l3ic", ".decoded.png"))
        image.save(source, icc_profile=image.info.get("icc_profile"))
        assert l3ic(["encode", source, "-o", coded, "-m", model, "--quiet"]) == 0
        assert l3ic(["decode", coded, "-o", reference, "--quiet"]) == 0
        with open(coded, "rb") as f:
            head, png = browser.decode(f.read())
        mode, ours, icc = pixels_of(png)
        with Image.open(reference) as expected:
            assert mode == expected.mode == image.mode, name
            assert_within_one_step(ours, np.asarray(expected))
            assert icc == expected.info.get("icc_profile")
        if mode.endswith("A"):  # alpha is lossless
            assert np.array_equal(ours[..., -1], np.asarray(image)[..., -1])
        assert head["info"]["model"] == model


# ---- hostile input: the Python runtime's one-line messages ------------------------------------------------
def _header_end(data):
    """Where the header CRC of a (valid) file is: 4 bytes before its payload."""
    return int(container.L3icFile.parse(data)._offsets[0]) - 4


def _rewritten(data, start, new, crc_at):
    """``data`` with ``new`` at ``start`` (same length), the CRC32 at ``crc_at`` (in the header) made that of
    ``new``, and the header CRC made right, so that only what reads ``new`` can tell."""
    head_end = _header_end(data)
    out = bytearray(data[:start] + new + data[start + len(new):])
    struct.pack_into("<I", out, crc_at, zlib.crc32(new))
    struct.pack_into("<I", out, head_end, zlib.crc32(bytes(out[:head_end])))
    return bytes(out)


def _with_chunk(data, i, chunk):
    """``data`` with chunk ``i`` replaced by ``chunk`` under valid CRCs: only the entropy decoder can tell."""
    parsed = container.L3icFile.parse(data)
    index_crcs = _header_end(data) - 4 * len(parsed._crcs)
    return _rewritten(data, int(parsed._offsets[i]), chunk, index_crcs + 4 * i)


def _with_record(data, tag, record):
    """``data`` with side-data record ``tag``'s stored bytes replaced by ``record`` under valid CRCs."""
    parsed = container.L3icFile.parse(data)
    offset = next(rec[2] for rec in parsed._side if rec[0] == tag)
    entry = data.index(tag.encode("ascii"))  # its entry in the side-data table: the CRC at byte 13 (docs/FORMAT.md)
    return _rewritten(data, offset, record, entry + 13)


def _with_header(data, offset, value):
    """``data`` with ``value`` written at ``offset`` of the header, and the header CRC made right again."""
    head_end = _header_end(data)
    out = bytearray(data)
    out[offset:offset + len(value)] = value
    struct.pack_into("<I", out, head_end, zlib.crc32(bytes(out[:head_end])))
    return bytes(out)


def _flipped(rng, data):
    out = bytearray(data)
    out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _damaged(files, seed=7):
    """name -> bytes: truncations, bit flips, foreign bytes, and chunks or records changed under valid CRCs."""
    rng = random.Random(seed)
    cases = {"empty": b"", "text": b"hello, world\n", "png": files["png"]}
    for name, data in files.items():
        if name == "png":
            continue
        for cut in sorted({1, 4, 5, 40, 57, 61, 90, len(data) // 2, len(data) - 1}):
            cases["%s cut at %d" % (name, cut)] = data[:cut]
        cases[name + " with trailing bytes"] = data + b"\x00"
        for k in range(12):
            cases["%s bit flip %d" % (name, k)] = _flipped(rng, data)
        parsed = container.L3icFile.parse(data)
        for k in range(20 if len(parsed._crcs) else 0):
            i = rng.randrange(len(parsed._crcs))
            chunk = data[int(parsed._offsets[i]):int(parsed._offsets[i + 1])]
            if chunk:
                cases["%s chunk %d (mode %d) damaged" % (name, i, parsed._modes[i])] = _with_chunk(data, i, _flipped(rng, chunk))
        for tag, _, offset, stored, _, _ in parsed._side:
            for k in range(4):
                cases["%s record %s damaged %d" % (name, tag, k)] = _with_record(data, tag, _flipped(rng, data[offset:offset + stored]))
    return cases


@pytest.fixture(scope="module")
def files(codec):
    """A format-3 and a format-2 file, a lossy RGBA file (zstd alpha record), a tiny one stored losslessly, a PNG."""
    opaque = lambda h, w: np.full((h, w), 200, np.uint8)
    files = {"rgba": codec.encode(np.dstack([photo_like(60, 80, seed=8), opaque(60, 80)])),
             "lossless": codec.encode(np.dstack([photo_like(9, 11, seed=9), opaque(9, 11)]))}
    assert container.L3icFile.parse(files["lossless"]).header.flags == container.FLAG_LOSSLESS
    for name, path in (("format3", "large.l3ic"), ("format2", os.path.join("format2", "context.l3ic"))):
        with open(os.path.join(GOLDEN, path), "rb") as f:
            files[name] = f.read()
    with open(os.path.join(REPO, "samples", "rose.png"), "rb") as f:
        files["png"] = f.read()[:4000]
    return files


def test_damaged_files_fail_with_the_python_runtimes_message(browser, codec, files):
    cases = _damaged(files)
    different = {}
    for name, data in cases.items():
        expected, got = python_error(codec, data), browser_error(browser, data)
        if got != expected:
            different[name] = (expected, got)
    assert not different, "%d of %d differ, e.g. %s" % (len(different), len(cases), list(different.items())[:3])
    assert sum(python_error(codec, d) is None for d in cases.values()) < len(cases) // 4  # mostly damage, not noise


def test_the_lossless_file_of_a_tiny_image_decodes_exactly(browser, codec, files):
    head, png = browser.decode(files["lossless"])
    assert head["info"]["lossless"] and head["timings"][0]["network"] == 0  # no model, no network
    mode, ours, _ = pixels_of(png)
    assert mode == "RGBA" and np.array_equal(ours, codec.decode(files["lossless"]))


def test_a_file_of_a_model_that_is_not_installed(browser, codec, files):
    """The messages of ``l3ic decode``, which takes the model the file names (Codec.decoder_for)."""
    data = files["format3"]
    name_at = 60 + 2  # the model name: after the fixed header, the hyperprior fields and the quality field
    assert data[name_at:name_at + 6] == b"medium"
    assert browser_error(browser, _with_header(data, name_at, b"mediux")) == \
        "unknown model 'mediux' (shipped models: high, low, medium)"
    other = _with_header(data, 39, bytes(16))
    assert browser_error(browser, other) == python_error(codec, other) == \
        "this file was made with model 'medium' (decoder 000000000000), not with 'medium' (decoder %s)" \
        % codec.model.decoder_hash.hex()[:12]


# ---- the viewer page and the commands ------------------------------------------------------------------
def test_the_viewer_shows_the_image_or_one_error_line(browser, codec, files):
    seen = browser.view(files["rgba"], "photo.l3ic")
    assert seen["status"] == "decoded photo.l3ic" and not seen["error"]
    info = dict(seen["info"])
    assert info["size"] == "80 × 60 RGBA" and info["model"] == "medium, format 3" and info["quality"] == "65"
    assert info["bpp"].startswith("%.3f" % (8 * len(files["rgba"]) / (80 * 60))) and " s (" in info["decode time"]
    assert seen["image"] == [80, 60] and seen["save"] == "photo.decoded.png"
    truncated = browser.view(files["rgba"][:100], "cut.l3ic")
    assert truncated["error"] and truncated["image"] is None and truncated["info"] == []
    assert truncated["status"] == "cut.l3ic: " + python_error(codec, files["rgba"][:100])
    assert truncated["status"].startswith("cut.l3ic: truncated l3ic file: channel index")


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)


def test_the_web_decode_command(web_tools, codec, files, tmp_path):
    good, bad, out = tmp_path / "photo.l3ic", tmp_path / "cut.l3ic", tmp_path / "photo.png"
    good.write_bytes(files["rgba"])
    bad.write_bytes(files["rgba"][:-7])
    done = _run("benchmarks.web_decode", str(good), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "80x60 RGBA, model medium, browser decode" in done.stdout
    with Image.open(out) as image:
        assert image.mode == "RGBA"
        assert_within_one_step(np.asarray(image), codec.decode(files["rgba"]))
    failed = _run("benchmarks.web_decode", str(bad), "-o", str(tmp_path / "cut.png"))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.splitlines() == ["l3ic: error: " + python_error(codec, files["rgba"][:-7])]
    assert not (tmp_path / "cut.png").exists()


def test_the_benchmark_prints_browser_and_python_decode_times(web_tools, capsys):
    from benchmarks.web_decode import benchmark
    rows = benchmark(["768x512", "1920x1080"], threads=1, runs=1, timeout=300)
    table = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + table)
    assert [r[0] for r in rows] == ["768x512", "1920x1080"]
    assert all(python > 0 and web > 0 for _, _, python, web in rows)
    assert "python (s)" in table and "browser (s)" in table


def test_the_server_serves_the_page_the_decoders_and_the_models_only(web_tools):
    from l3ic import web
    from l3ic.model import model_identity
    server = web.start(port=0)
    web.serve_in_thread(server)
    get = lambda path: urllib.request.urlopen(server.url + path, timeout=30)
    try:
        page = get("")
        assert b"l3ic viewer" in page.read() and page.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert get("dist/l3ic_fse.wasm").headers["Content-Type"] == "application/wasm"
        assert get("ort/ort.wasm.min.mjs").headers["Content-Type"] == "text/javascript"
        models = json.load(get("models/index.json"))
        named = {(m["manifest"]["name"], m["legacy"]): m for m in models}
        assert {("low", False), ("medium", False), ("high", False), ("medium", True)} <= set(named)
        medium = named["medium", False]
        assert model_identity(medium["manifest"]) == Codec("medium", "cpu").model.decoder_hash
        assert len(get("models/" + medium["url"] + "decoder.onnx").read()) == medium["manifest"]["files"]["decoder.onnx"]["bytes"]
        for path in ("../README.md", "models/%sencoder.onnx" % medium["url"], "node_modules/onnxruntime-web/package.json",
                     "src/../../README.md", "build_wasm.py", "file/x.l3ic", "harness/next"):
            with pytest.raises(urllib.error.HTTPError) as e:
                get(path)
            assert e.value.code == 404, path
    finally:
        server.shutdown()
        server.server_close()


def test_the_view_command_serves_a_file_and_refuses_a_missing_one(web_tools, files, tmp_path):
    photo = tmp_path / "my photo.l3ic"
    photo.write_bytes(files["format3"])
    process = subprocess.Popen([sys.executable, "-m", "l3ic.web", str(photo), "--port", "0"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("l3ic: serving the viewer at http://127.0.0.1:") and "?open=file/my%20photo.l3ic" in line
        url = line.split(" at ")[1].split(" ")[0]
        fetched = urllib.request.urlopen(url.split("?")[0] + "file/my%20photo.l3ic", timeout=30).read()
        assert fetched == files["format3"]
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()
        process.stderr.close()
    missing = _run("l3ic.web", str(tmp_path / "none.l3ic"), "--port", "0")
    assert missing.returncode == 1 and missing.stderr.splitlines() == ["l3ic: error: no such file: %s" % (tmp_path / "none.l3ic")]


def test_the_webassembly_build_is_checked_and_needs_a_compiler_only_when_stale(web_tools):
    build = [sys.executable, os.path.join(WEB, "build_wasm.py")]
    env = dict(os.environ, CLANG="/nonexistent/clang")
    assert subprocess.run(build, env=env, capture_output=True, timeout=SUBPROCESS_TIMEOUT).returncode == 0  # up to date
    forced = subprocess.run(build + ["--force"], env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert forced.returncode == 1
    assert forced.stderr.splitlines() == ["l3ic: error: /nonexistent/clang is not installed: apt-get install %s"
                                          % " ".join(APT_PACKAGES[1:])]
    with open(os.path.join(WEB, "dist", "l3ic_fse.wasm"), "rb") as f, open(os.path.join(WEB, "dist", "l3ic_fse.wasm.json")) as g:
        assert json.load(g)["sha256"] == hashlib.sha256(f.read()).hexdigest()
