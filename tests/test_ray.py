"""l3ic.batch_ray on a local Ray cluster started by the test (skipped when Ray is not installed)."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import photo_like
from l3ic import batch_ray
from l3ic.errors import L3icError

try:
    import ray
    import ray.data  # noqa: F401
except ImportError:
    ray = None
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install 'l3ic[ray]')")
NAMES = ["a.png", "b.png", "c.jpg", "d.png", "e.png"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, object_store_memory=200 << 20, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def make_folder(folder):
    folder.mkdir()
    for i, name in enumerate(NAMES):
        Image.fromarray(photo_like(40 + 8 * i, 56, seed=i)).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    return folder


def read_manifest(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@needs_ray
def test_encode_folder_with_a_bad_file(cluster, tmp_path, capsys, codec):
    src, out = make_folder(tmp_path / "in"), tmp_path / "out"  # the output folder is created
    assert batch_ray.main(["--input", str(src), "--output", str(out), "--workers", "2", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if line.startswith("l3ic: error:")] == [
        "l3ic: error: %s is not an image Pillow can read" % (src / "broken.png")]
    assert captured.out.startswith("5 images done, 1 failed;") and str(out / "manifest.jsonl") in captured.out

    assert sorted(os.listdir(out)) == sorted([n.rsplit(".", 1)[0] + ".l3ic" for n in NAMES] + ["manifest.jsonl"])
    rows = read_manifest(out / "manifest.jsonl")
    assert [r["input"] for r in rows] == sorted(str(src / n) for n in NAMES + ["broken.png"])
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["input"].endswith("broken.png") and bad[0]["bytes"] is None and bad[0]["bpp"] is None
    for row in rows:
        if row["error"]:
            continue
        data = open(row["output"], "rb").read()
        assert row["bytes"] == len(data) and row["model"] == "medium"
        w, h = Image.open(row["input"]).size
        assert row["pixels"] == w * h and row["bpp"] == pytest.approx(8.0 * len(data) / (w * h), abs=1e-4)
        assert codec.decode(data).shape == (h, w, 3)


@needs_ray
def test_existing_outputs_and_force(cluster, tmp_path, capsys):
    src, out = make_folder(tmp_path / "in"), tmp_path / "out"
    (src / "broken.png").unlink()
    args = ["--input", str(src / "*.png"), "--output", str(out), "--quiet"]
    assert batch_ray.main(args) == 0
    before = (out / "a.l3ic").read_bytes()
    assert batch_ray.main(args) == 1  # every output exists: each file is an error, nothing is rewritten
    rows = read_manifest(out / "manifest.jsonl")
    assert len(rows) == 4 and all("exists (use -f to overwrite)" in r["error"] for r in rows)
    assert (out / "a.l3ic").read_bytes() == before
    assert batch_ray.main(args + ["-f", "--manifest", str(tmp_path / "m.jsonl")]) == 0
    assert all(r["error"] is None for r in read_manifest(tmp_path / "m.jsonl"))
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


@needs_ray
def test_target_bpp(cluster, tmp_path, capsys):
    src, out = make_folder(tmp_path / "in"), tmp_path / "out"
    (src / "broken.png").unlink()
    assert batch_ray.main(["--input", str(src), "--output", str(out), "--target-bpp", "0.01", "--quiet"]) == 0
    rows = read_manifest(out / "manifest.jsonl")
    assert len(rows) == 5 and all(r["error"] is None and r["model"] == "low" for r in rows)  # the smallest files
    assert batch_ray.main(["--input", str(src), "--output", str(out), "-f", "--target-bpp", "50", "--quiet"]) == 0
    assert {r["model"] for r in read_manifest(out / "manifest.jsonl")} == {"high"}  # q 100 fits


@needs_ray
def test_command_line_starts_its_own_cluster(tmp_path):
    src, out = make_folder(tmp_path / "in"), tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "l3ic.batch_ray", "--input", str(src), "--output", str(out),
                             "--workers", "2", "--num-cpus", "2", "--quiet"],
                            capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("5 images done, 1 failed;")
    assert result.stderr.splitlines() == ["l3ic: error: %s is not an image Pillow can read" % (src / "broken.png")]
    assert len(read_manifest(out / "manifest.jsonl")) == 6


@needs_ray
def test_a_run_that_succeeds_prints_its_summary_only(tmp_path):
    """No INFO, WARNING or core_worker lines of Ray's on success, without --quiet too."""
    src, out = make_folder(tmp_path / "in"), tmp_path / "out"
    (src / "broken.png").unlink()
    result = subprocess.run([sys.executable, "-m", "l3ic.batch_ray", "--input", str(src), "--output", str(out),
                             "--num-cpus", "1"], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("5 images done, 0 failed;")


def test_usage_errors(tmp_path, monkeypatch):
    """These fail before Ray is started (or imported)."""
    src = make_folder(tmp_path / "in")
    out = str(tmp_path / "out")
    with pytest.raises(L3icError, match="no input files found"):
        batch_ray.main(["--input", str(tmp_path / "*.webp"), "--output", out])
    with pytest.raises(L3icError, match="chooses the model and quality itself"):
        batch_ray.main(["--input", str(src), "--output", out, "--target-bpp", "1", "-q", "medium"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.png").write_bytes((src / "a.png").read_bytes())
    with pytest.raises(L3icError, match="would both be written to"):
        batch_ray.main(["--input", str(src), "--input", str(tmp_path / "other"), "--output", out])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(L3icError, match=r"Ray is not installed: pip install 'l3ic\[ray\]'"):
        batch_ray.main(["--input", str(src), "--output", out])


def test_usage_errors_use_the_shared_option_checks(tmp_path):
    """The Ray job validates its options with l3ic.options, as the CLI does, before Ray starts."""
    src = make_folder(tmp_path / "in")
    out = str(tmp_path / "out")
    for args, message in ((["--refine", "-1"], "^--refine must be a number of steps >= 0, got -1$"),
                          (["-m", "low", "-q", "low"], "^give --model or the preset --quality low, not both$"),
                          (["-q", "101"], "^--quality must be a number 0..100"),
                          (["--max-pixels", "-5"], "^--max-pixels must be a positive number of pixels, got -5$")):
        with pytest.raises(L3icError, match=message):
            batch_ray.main(["--input", str(src), "--output", out] + args)


def test_the_actor_encodes_its_rows(tmp_path, codec):
    """``Encoder`` (a Ray Data actor) called as Ray calls it, without Ray: results and failures per row."""
    from l3ic.image import DEFAULT_MAX_PIXELS
    from l3ic.options import EncodeOptions
    src = make_folder(tmp_path / "in")
    options = (EncodeOptions.validated(refine=1), False, False, False, DEFAULT_MAX_PIXELS)
    rows = {"input": [str(src / "a.png"), str(src / "broken.png")],
            "output": [str(tmp_path / "a.l3ic"), str(tmp_path / "broken.l3ic")]}
    out = batch_ray.Encoder(options, "cpu", 1, DEFAULT_MAX_PIXELS)(rows)
    assert out["model"] == ["medium", ""] and out["error"][0] == "" and "broken.png" in out["error"][1]
    assert codec.decode(str(tmp_path / "a.l3ic")).shape == (40, 56, 3)
