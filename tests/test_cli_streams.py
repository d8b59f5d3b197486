"""The tools in pipelines and terminals: ``-`` for standard input and output, broken pipes, refusing to write
binary data to a terminal, progress on a terminal, ``--quiet``, ``-V``, and the small things a cwebp user expects."""
import io
import os
import pty
import select
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import photo_like
from test_cli import assert_clean_failure, snapshot

L3IC = [sys.executable, "-m", "l3ic"]


def l3ic(*args, cwd, stdin=None, **kwargs):
    """Run ``l3ic ARGS`` with bytes on stdin; stdout as bytes, stderr as text."""
    result = subprocess.run(L3IC + list(args), cwd=str(cwd), input=stdin, capture_output=True, timeout=300, **kwargs)
    result.stderr = result.stderr.decode()
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streams")
    Image.fromarray(photo_like(40, 56)).save(folder / "photo.png")
    result = l3ic("encode", "photo.png", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def workdir(files, tmp_path):
    for name in ("photo.png", "photo.l3ic"):
        shutil.copy(str(files / name), str(tmp_path / name))
    return tmp_path


def test_encode_to_standard_output_writes_the_file_and_reports_on_stderr(workdir):
    result = l3ic("encode", "photo.png", "-o", "-", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (workdir / "photo.l3ic").read_bytes()  # the same bytes as the file
    assert "photo.png -> standard output:" in result.stderr and "bpp" in result.stderr
    assert not (workdir / "-").exists()


def test_encode_and_decode_from_standard_input(workdir):
    png, coded = (workdir / "photo.png").read_bytes(), (workdir / "photo.l3ic").read_bytes()
    result = l3ic("encode", "-", "-o", "again.l3ic", cwd=workdir, stdin=png)
    assert result.returncode == 0, result.stderr
    assert (workdir / "again.l3ic").read_bytes() == coded
    assert result.stdout.decode().startswith("standard input -> again.l3ic:")

    piped = l3ic("decode", "-", cwd=workdir, stdin=coded)  # a filter: standard input to standard output, as PNG
    assert piped.returncode == 0, piped.stderr
    assert l3ic("decode", "photo.l3ic", "-o", "file.png", cwd=workdir).returncode == 0
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(piped.stdout))), np.asarray(Image.open(workdir / "file.png")))
    assert "standard input -> standard output:" in piped.stderr


@pytest.mark.parametrize("fmt, kind", [("png", "PNG"), ("webp", "WEBP"), ("ppm", "PPM")])
def test_decode_to_standard_output_in_the_format_asked(workdir, fmt, kind):
    result = l3ic("decode", "photo.l3ic", "-o", "-", "--format", fmt, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert Image.open(io.BytesIO(result.stdout)).format == kind


def test_bad_data_through_a_pipe_is_one_line_and_writes_nothing(workdir):
    coded = (workdir / "photo.l3ic").read_bytes()
    before = snapshot(workdir)
    for data in (coded[:100], b"", b"L3IC" + bytes(60), coded[:40] + bytes([coded[40] ^ 0xFF]) + coded[41:]):
        for output in (["-o", "out.png"], ["-o", "-"], []):
            result = l3ic("decode", "-", *output, cwd=workdir, stdin=data)
            assert_clean_failure(result)
            assert result.stdout == b""
            assert "standard input" in result.stderr
    assert_clean_failure(l3ic("encode", "-", "-o", "x.l3ic", cwd=workdir, stdin=b"\x89PNG\r\n\x1a\n" + bytes(30)))
    assert_clean_failure(l3ic("encode", "-", "-o", "-", cwd=workdir, stdin=b""))
    assert snapshot(workdir) == before


def test_standard_streams_take_one_file(workdir):
    for args in (["encode", "-", "photo.png", "-o", "out/"], ["encode", "photo.png", "photo.png", "-o", "-"],
                 ["decode", "photo.l3ic", "photo.l3ic", "-o", "-"]):
        assert_clean_failure(l3ic(*args, cwd=workdir, stdin=b""))


def run_on_terminal(args, cwd, stdout_is_terminal):
    """Run ``l3ic ARGS`` with stderr (and stdout if asked) on a pseudo-terminal: (exit status, stdout bytes,
    everything the terminal showed)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(L3IC + list(args), cwd=str(cwd), stdin=subprocess.DEVNULL, stderr=slave,
                               stdout=slave if stdout_is_terminal else subprocess.PIPE)
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 300)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            break
        shown += chunk
    out = process.stdout.read() if process.stdout else b""
    status = process.wait(timeout=300)
    os.close(master)
    return status, out, shown.decode(errors="replace")


def test_binary_data_is_never_written_to_a_terminal(workdir):
    before = snapshot(workdir)
    for args in (["encode", "photo.png", "-o", "-"], ["decode", "photo.l3ic", "-o", "-"]):
        status, _, shown = run_on_terminal(args, workdir, stdout_is_terminal=True)
        assert status == 1
        assert "l3ic: error:" in shown and "terminal" in shown and "\x00" not in shown
    assert snapshot(workdir) == before


def test_long_work_shows_progress_on_a_terminal_only(workdir):
    """Work that lasts (here refinement of a 320 x 320 image: seconds, on a fast machine too) shows a bar; a bar
    only appears after half a second, so quick runs print nothing."""
    Image.fromarray(photo_like(320, 320, seed=3)).save(workdir / "big.png")
    args = ["encode", "big.png", "-o", "r.l3ic", "--refine", "16"]
    status, out, shown = run_on_terminal(args + ["-f"], workdir, stdout_is_terminal=False)
    assert status == 0 and b"r.l3ic" in out
    assert "refining [" in shown and "] 15/16" in shown
    piped = l3ic(*args, "-f", cwd=workdir)
    assert piped.returncode == 0 and piped.stderr == ""  # a log gets no progress
    status, out, shown = run_on_terminal(args + ["-f", "--quiet"], workdir, stdout_is_terminal=False)
    assert status == 0 and out == b"" and shown == ""


def test_quiet_prints_only_errors(workdir):
    shutil.copy(str(workdir / "photo.png"), str(workdir / "other.png"))
    for args in (["encode", "photo.png", "-o", "q.l3ic"], ["decode", "photo.l3ic", "-o", "q.png"],
                 ["encode", "photo.png", "other.png", "-o", "qs/"]):
        result = l3ic(*args, "--quiet", cwd=workdir)
        assert (result.stdout, result.stderr) == (b"", "")
    assert_clean_failure(l3ic("decode", "missing.l3ic", "--quiet", cwd=workdir))


def test_batch_progress_is_a_bar(workdir):
    for i in range(3):
        shutil.copy(str(workdir / "photo.png"), str(workdir / ("p%d.png" % i)))
    status, out, shown = run_on_terminal(["encode", "p0.png", "p1.png", "p2.png", "-o", "bar/", "-j", "1"], workdir,
                                         stdout_is_terminal=False)
    assert status == 0 and out.startswith(b"3 images done")
    assert "3 files: done [" in shown and "] 3/3" in shown and "#" * 30 in shown


def test_result_line_times_the_whole_run(workdir):
    """The reported time covers reading, model loading and writing, so it is at least what the codec alone takes."""
    result = l3ic("encode", "photo.png", "-o", "t.l3ic", cwd=workdir)
    assert result.stdout.decode().rstrip().endswith(" s in all")


def test_broken_pipes_end_quietly(workdir):
    shutil.copy(str(workdir / "photo.l3ic"), str(workdir / "second.l3ic"))
    for command in ("%s --help | head -1", "%s info photo.l3ic second.l3ic | head -2"):
        shell = subprocess.run(["bash", "-c", "set -o pipefail; " + command % " ".join(L3IC) + " >/dev/null"],
                               cwd=str(workdir), capture_output=True, text=True, timeout=300)
        assert shell.stderr == "", command
        assert shell.returncode in (0, 141), command  # 141: ended by the closed pipe, as `yes | head` is


def test_version_flags():
    for flag in ("-V", "--version"):
        result = subprocess.run(L3IC + [flag], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stdout.startswith("l3ic ") and result.stdout.split()[1][0].isdigit()


def test_decoding_an_image_says_what_it_is(workdir):
    result = l3ic("decode", "photo.png", cwd=workdir)
    assert_clean_failure(result)
    assert "not an l3ic file" in result.stderr and "PNG" in result.stderr and "l3ic encode photo.png" in result.stderr
    (workdir / "junk.l3ic").write_bytes(b"hello world")
    junk = l3ic("decode", "junk.l3ic", cwd=workdir)
    assert_clean_failure(junk)
    assert "junk.l3ic is not an l3ic file" in junk.stderr and "encode" not in junk.stderr


def test_info_text_shows_values_not_python_objects(workdir):
    result = l3ic("info", "photo.l3ic", cwd=workdir)
    text = result.stdout.decode()
    assert result.returncode == 0
    assert "{" not in text and "[" not in text and "'" not in text
    assert "-15..16 (32 values)" in text


def test_a_folder_does_not_pick_up_decoded_outputs(workdir):
    assert l3ic("decode", "photo.l3ic", cwd=workdir).returncode == 0  # photo.decoded.png
    result = l3ic("encode", str(workdir), "-o", "out/", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(workdir / "out")) == ["photo.l3ic"]


def test_threads_for_one_file(workdir):
    one = l3ic("encode", "photo.png", "-o", "one.l3ic", "--threads", "1", cwd=workdir)
    assert one.returncode == 0, one.stderr
    assert_clean_failure(l3ic("encode", "photo.png", "-o", "x.l3ic", "--threads", "0", cwd=workdir))
    assert l3ic("decode", "photo.l3ic", "-o", "one.png", "--threads", "1", cwd=workdir).returncode == 0


def test_view_is_a_tool_of_the_l3ic_command(workdir):
    """``l3ic view`` is ``python -m l3ic.web`` (the browser viewer, docs/web.md): it refuses a missing file at once."""
    usage = l3ic("--help", cwd=workdir)
    assert "view" in usage.stdout.decode()
    assert_clean_failure(l3ic("view", "missing.l3ic", cwd=workdir))
