"""The ``l3ic`` command, the package names and the one-line messages of a broken set-up (issue 16, items 1-3)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

import l3ic
from conftest import REPO, SAMPLE
from test_cli import assert_clean_failure, run


def test_version_is_the_packages(tmp_path):
    import runtime
    assert runtime.__version__ == l3ic.__version__
    result = run("l3ic", "--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "l3ic " + l3ic.__version__


def test_the_command_runs_the_same_tools_as_python_m_runtime(tmp_path):
    for tool in ("encode", "decode", "info"):
        ours = run("l3ic", tool, "--help", cwd=tmp_path)
        old = run("runtime." + tool, "--help", cwd=tmp_path)
        assert ours.returncode == old.returncode == 0
        flags = lambda text, prog: sorted(set(re.findall(r"(?<![\w-])--?[a-z][-a-z]*", text.replace(prog, ""))))
        assert flags(ours.stdout, "l3ic " + tool) == flags(old.stdout, "python -m runtime." + tool)
        assert "--output" in flags(ours.stdout, "l3ic " + tool) or tool == "info"


def test_the_console_script_round_trips_from_the_clone_root(tmp_path):
    """The README's own words: l3ic encode samples/rose.png -o /tmp/r.l3ic && l3ic decode /tmp/r.l3ic, from the root."""
    script = shutil.which("l3ic", path=os.path.dirname(sys.executable))
    assert script, "the l3ic console script is not installed next to %s" % sys.executable
    coded = tmp_path / "r.l3ic"
    done = subprocess.run([script, "encode", os.path.relpath(SAMPLE, REPO), "-o", str(coded)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([script, "decode", str(coded)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "r.decoded.png").is_file(), done.stderr


def test_unknown_tools_and_no_tool_are_usage_errors(tmp_path):
    result = run("l3ic", "compress", "x.png", cwd=tmp_path)
    assert result.returncode == 2 and "unknown tool 'compress'" in result.stderr and "Traceback" not in result.stderr
    result = run("l3ic", cwd=tmp_path)
    assert result.returncode == 2 and "usage: l3ic" in result.stderr


def test_a_missing_extension_is_one_line(tmp_path):
    """l3ic imported without its compiled FSE extension (a source folder ahead of the installed package on
    sys.path, a failed build): the tools say in one line what to do."""
    script = ("import sys; sys.modules['l3ic._fse'] = None  # makes 'import l3ic._fse' fail\n"
              "from l3ic import cli; sys.exit(cli.main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", script, "encode", SAMPLE, "-o", "x.l3ic"], cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert_clean_failure(result)
    assert "compiled FSE extension is missing" in result.stderr and "pip install -e ." in result.stderr
    assert not (tmp_path / "x.l3ic").exists()


def test_export_tools_without_tensorflow_say_what_to_install(monkeypatch, capsys):
    import importlib.util
    from export import to_onnx, train
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("tensorflow", "keras") else real(name, *a))
    for tool, argv in ((train, ["--data", "x", "--out", "y"]), (to_onnx, ["x", "--out", "y"])):
        with pytest.raises(SystemExit) as e:
            tool.main(argv)
        message = str(e.value)
        assert "\n" not in message and "pip install" in message and "[export]" in message and "tensorflow" in message
