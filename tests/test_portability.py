"""What a Jetson (JetPack: Python 3.6-3.8, ONNX Runtime 1.11, older numpy) needs from the runtime and the models."""
import glob
import os
import shutil
import subprocess

import pytest

from conftest import REPO

MODELS = sorted(glob.glob(os.path.join(REPO, "models", "*", "manifest.json")))


@pytest.mark.skipif(shutil.which("vermin") is None, reason="vermin not installed (test extra)")
def test_runtime_runs_on_python_3_8():
    result = subprocess.run(["vermin", "-t=3.8-", "--violations", "--no-tips", os.path.join(REPO, "src")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("manifest", MODELS, ids=[os.path.basename(os.path.dirname(m)) for m in MODELS])
def test_models_load_on_onnxruntime_1_11(manifest):
    onnx = pytest.importorskip("onnx")
    import json
    folder = os.path.dirname(manifest)
    with open(manifest) as f:
        names = sorted(n for n in json.load(f)["files"] if n.endswith(".onnx"))
    assert "decoder_gradient.onnx" in names  # refinement runs on the same old runtimes
    for name in names:
        model = onnx.load(os.path.join(folder, name))
        assert model.ir_version <= 8, name
        assert all(o.version <= 15 for o in model.opset_import if o.domain in ("", "ai.onnx")), name


def test_shipped_models_are_pinned_by_hash():
    from l3ic.model import file_sha256
    assert MODELS, "no model shipped in models/"
    for manifest in MODELS:
        import json
        with open(manifest) as f:
            m = json.load(f)
        for name, entry in m["files"].items():
            assert file_sha256(os.path.join(os.path.dirname(manifest), name)) == entry["sha256"]
