"""The fast tier, ``pytest -m "not slow" tests``: no test in it needs TensorFlow, collecting it imports none, and
the slow list in conftest.py names tests that exist."""
import ast
import glob
import os
import subprocess
import sys

import conftest
from conftest import REPO

TENSORFLOW = ("tensorflow", "keras", "tf2onnx", "export.model", "export.quantizer", "export.adjoint", "export.hyperprior",
              "export.train", "export.to_onnx")


def _needs_tensorflow(node):
    """Whether the code under ``node`` imports TensorFlow (or an export module built on it), or importorskips it."""
    for n in ast.walk(node):
        names = []
        if isinstance(n, ast.Import):
            names = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module:
            names = [n.module] + ["%s.%s" % (n.module, a.name) for a in n.names]
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "importorskip"
              and n.args and isinstance(n.args[0], ast.Constant)):
            names = [n.args[0].value]
        if any(name == t or name.startswith(t + ".") for name in names for t in TENSORFLOW):
            return True
    return False


def _tensorflow_tests():
    """module::test of every test that needs TensorFlow, found in the sources."""
    found = set()
    for path in sorted(glob.glob(os.path.join(REPO, "tests", "test_*.py"))):
        with open(path) as f:
            module = ast.parse(f.read(), path)
        name = os.path.basename(path)
        top_level = [n for n in module.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        whole = any(_needs_tensorflow(n) for n in top_level)
        for n in module.body:
            if isinstance(n, ast.FunctionDef) and n.name.startswith("test") and (whole or _needs_tensorflow(n)):
                found.add("%s::%s" % (name, n.name))
    return found


def _fast_tier():
    """module::test of every test ``-m "not slow"`` selects, and whether collecting them imported TensorFlow."""
    script = ("import sys, pytest\n"
              "rc = pytest.main(['-q', '--collect-only', '-p', 'no:cacheprovider', '-m', 'not slow', 'tests'])\n"
              "print('TENSORFLOW-IMPORTED' if 'tensorflow' in sys.modules else 'TENSORFLOW-NOT-IMPORTED')\n"
              "sys.exit(rc)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    selected = {line.split("[")[0].replace("tests/", "", 1) for line in result.stdout.splitlines() if "::" in line}
    return selected, "TENSORFLOW-NOT-IMPORTED" in result.stdout


def test_the_fast_tier_needs_no_tensorflow():
    tensorflow_tests = _tensorflow_tests()
    assert "test_export.py::test_export_parity_ops_and_runtime_round_trip" in tensorflow_tests  # the scan sees them
    selected, tensorflow_not_imported = _fast_tier()
    assert len(selected) > 100  # the runtime's tests are in it
    assert not selected & tensorflow_tests
    assert tensorflow_not_imported


def test_the_slow_list_names_existing_tests():
    existing = set()
    for path in glob.glob(os.path.join(REPO, "tests", "test_*.py")):
        with open(path) as f:
            existing |= {"%s::%s" % (os.path.basename(path), n.name) for n in ast.parse(f.read()).body
                         if isinstance(n, ast.FunctionDef)}
    assert conftest.SLOW_TESTS - existing == set()
    assert all(os.path.exists(os.path.join(REPO, "tests", m)) for m in conftest.SLOW_MODULES)
