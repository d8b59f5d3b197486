"""Batch mode of runtime.encode / runtime.decode: folders and globs, per-file errors, summary, --jobs, -o."""
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from conftest import photo_like

SUMMARY = re.compile(r"^(\d+) (images|files) done, (\d+) failed; (\d+) bytes in, (\d+) bytes out, "
                     r"mean ([0-9.]+) bpp, [0-9.]+ s$")
GOOD = ("a.png", "b.png", "c.jpg")


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m"] + list(args), cwd=str(cwd), capture_output=True, text=True, timeout=300)


def make_folder(folder, bad=True):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(GOOD):
        Image.fromarray(photo_like(40 + 8 * i, 48, seed=i)).save(folder / name)
    if bad:
        (folder / "broken.png").write_text("not an image")
    (folder / "notes.txt").write_text("not an input: wrong suffix")
    return folder


def summary(result):
    lines = result.stdout.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, result.stdout
    done, _, failed, bytes_in, bytes_out, bpp = match.groups()
    return int(done), int(failed), int(bytes_in), int(bytes_out), float(bpp)


def error_lines(result):
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("l3ic: error: ") for line in lines), result.stderr  # no progress bar off a terminal
    assert "Traceback" not in result.stderr
    return lines


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_encode_folder_with_a_bad_file(tmp_path, jobs):
    src, out = make_folder(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    result = run("runtime.encode", str(src), "-o", str(out), "--jobs", jobs, cwd=tmp_path)
    assert result.returncode == 1
    errors = error_lines(result)
    assert len(errors) == 1 and "broken.png" in errors[0] and "not an image" in errors[0]
    assert errors[0].count("broken.png") == 1  # the path is not repeated
    assert sorted(os.listdir(out)) == ["a.l3ic", "b.l3ic", "c.l3ic"]  # no temporary or partial file
    done, failed, bytes_in, bytes_out, bpp = summary(result)
    assert (done, failed) == (3, 1)
    assert bytes_in == sum(os.path.getsize(src / n) for n in GOOD)
    assert bytes_out == sum(os.path.getsize(out / n) for n in os.listdir(out))
    pixels = [48 * (40 + 8 * i) for i in range(3)]
    sizes = [os.path.getsize(out / n) for n in ("a.l3ic", "b.l3ic", "c.l3ic")]
    assert bpp == pytest.approx(sum(8.0 * s / p for s, p in zip(sizes, pixels)) / 3, abs=1e-3)


def test_decode_folder_with_a_corrupt_file(tmp_path):
    src = make_folder(tmp_path / "in", bad=False)
    assert run("runtime.encode", str(src), cwd=tmp_path).returncode == 0  # next to the inputs
    data = (src / "a.l3ic").read_bytes()
    (src / "corrupt.l3ic").write_bytes(data[: len(data) // 2])
    out = tmp_path / "decoded"
    out.mkdir()
    result = run("runtime.decode", str(src), "-o", str(out), "-j", "2", cwd=tmp_path)
    assert result.returncode == 1
    errors = error_lines(result)
    assert len(errors) == 1 and "corrupt.l3ic" in errors[0] and "truncated" in errors[0]
    assert sorted(os.listdir(out)) == ["a.decoded.png", "b.decoded.png", "c.decoded.png"]
    assert Image.open(out / "b.decoded.png").size == (48, 48)
    done, failed, bytes_in, bytes_out, _ = summary(result)
    assert (done, failed) == (3, 1)
    assert bytes_out == sum(os.path.getsize(out / n) for n in os.listdir(out))


def test_outputs_next_to_inputs_globs_and_formats(tmp_path):
    one, two = make_folder(tmp_path / "one", bad=False), make_folder(tmp_path / "two", bad=False)
    result = run("runtime.encode", str(one / "*.png"), str(two), cwd=tmp_path)  # a glob and a folder, no -o
    assert result.returncode == 0, result.stderr
    assert summary(result)[:2] == (5, 0)
    assert sorted(n for n in os.listdir(one) if n.endswith(".l3ic")) == ["a.l3ic", "b.l3ic"]  # the glob took only .png
    assert sorted(n for n in os.listdir(two) if n.endswith(".l3ic")) == ["a.l3ic", "b.l3ic", "c.l3ic"]
    result = run("runtime.decode", str(one), str(two / "a.l3ic"), "--format", "jpg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(result)[:2] == (3, 0)
    assert Image.open(one / "a.decoded.jpg").format == "JPEG" and (two / "a.decoded.jpg").exists()
    assert Image.open(one / "a.png").format == "PNG"  # the originals next to the inputs are left alone


def test_existing_outputs_are_per_file_errors(tmp_path):
    src = make_folder(tmp_path / "in", bad=False)
    assert run("runtime.encode", str(src), cwd=tmp_path).returncode == 0
    before = (src / "a.l3ic").read_bytes()
    (src / "d.png").write_bytes((src / "a.png").read_bytes())
    result = run("runtime.encode", str(src), cwd=tmp_path)
    assert result.returncode == 1
    errors = error_lines(result)
    assert len(errors) == 3 and all("exists (use -f to overwrite)" in e for e in errors)
    assert summary(result)[:2] == (1, 3) and (src / "d.l3ic").exists()
    assert (src / "a.l3ic").read_bytes() == before
    assert run("runtime.encode", str(src), "-f", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("args, message", [
    (["{empty}"], "no input files found"),
    (["{src}", "-o", "{src}/a.png"], "-o must be a folder"),
    (["{src}/*.webp"], "no input files found"),
])
def test_batch_usage_errors(tmp_path, args, message):
    src, empty = make_folder(tmp_path / "in"), tmp_path / "empty"
    empty.mkdir()
    result = run("runtime.encode", *[a.format(src=src, empty=empty) for a in args], cwd=tmp_path)
    assert result.returncode == 1
    errors = error_lines(result)
    assert len(errors) == 1 and message in errors[0]
    assert not [n for n in os.listdir(src) if n.endswith(".l3ic")]


def test_single_file_into_a_folder(tmp_path):
    src, out = make_folder(tmp_path / "in", bad=False), tmp_path / "out"
    out.mkdir()
    result = run("runtime.encode", str(src / "a.png"), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0 and "bpp" in result.stdout and "done" not in result.stdout  # one line, no summary
    assert os.listdir(out) == ["a.l3ic"]


@pytest.mark.parametrize("tool", ["runtime.encode", "runtime.decode"])
def test_batch_creates_the_output_folder(tmp_path, tool):
    src = make_folder(tmp_path / "in", bad=False)
    if tool == "runtime.decode":
        assert run("runtime.encode", str(src), cwd=tmp_path).returncode == 0
    result = run(tool, str(src), "-o", "new/deeper", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = ["a.l3ic", "b.l3ic", "c.l3ic"] if tool == "runtime.encode" else ["a.decoded.png", "b.decoded.png", "c.decoded.png"]
    assert sorted(os.listdir(tmp_path / "new" / "deeper")) == names
