"""Every command of the README works from a fresh clone of what is committed (HEAD), installed as the README says.

Slow (a clone, a non-editable install with the FSE C build: about a minute).  No downloads: the new venv reuses the
packages of the one running the tests (a .pth line, since ``--system-site-packages`` would only reach the base
interpreter's), builds with ``--no-build-isolation``, and the FSE build takes zstd from ``~/.cache/l3ic`` (or
``L3IC_FSE_SOURCE``).  Uncommitted changes are not in the clone: that is the point.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

README = os.path.join(REPO, "README.md")
NOT_TOOLS = {"venv", "pip"}  # python -m venv / pip: set-up, not l3ic's tools


def readme_blocks(text):
    return re.findall(r"```sh\n(.*?)\n```", text, re.S)


def readme_modules(text):
    """Every ``python -m X`` the README names, in its sh blocks or in its prose."""
    return sorted(set(re.findall(r"python[\d.]*\s+-m\s+([A-Za-z_][\w.]*)", text)) - NOT_TOOLS)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """(clone root, environment whose PATH starts with a fresh venv holding the clone's non-editable install)."""
    if shutil.which("git") is None or shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("needs git and a C compiler")
    base = tmp_path_factory.mktemp("fresh")
    root, venv = str(base / "l3ic"), str(base / "venv")
    subprocess.run(["git", "clone", "-q", REPO, root], check=True, timeout=300)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = os.path.join(venv, "bin", "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "_l3ic_test_parent_env.pth"), "w") as f:  # the running env's packages, after ours
        f.write("\n".join(sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})) + "\n")
    env = dict(os.environ, VIRTUAL_ENV=venv, PATH=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"],
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    result = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--ignore-installed", "."],
                            cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    where = subprocess.run([python, "-c", "import l3ic, l3ic._fse, runtime; print(l3ic.__file__); print(runtime.__file__)"],
                           cwd=root, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():  # the clone's install, not the editable one of the env running the tests
        assert os.path.realpath(path).startswith(os.path.realpath(site) + os.sep), where.stdout
    return root, env


def run(command, cwd, env):
    result = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                            executable="/bin/bash")
    assert result.returncode == 0 and "Traceback" not in result.stderr, \
        "%s\nexit %d\n%s\n%s" % (command, result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    return result


def test_the_readme_names_its_tools():
    with open(README) as f:
        text = f.read()
    modules = readme_modules(text)
    assert {"runtime.encode", "runtime.decode", "runtime.info", "export.train", "export.to_onnx",
            "benchmarks.rd", "l3ic.batch_ray"} <= set(modules), modules
    assert "l3ic encode" in readme_blocks(text)[0]


def test_first_command_and_the_tools_from_a_fresh_clone(clone, tmp_path):
    root, env = clone
    with open(os.path.join(root, "README.md")) as f:
        text = f.read()
    # The README's first command past the set-up (venv, pip install .): the l3ic commands, writing under tmp_path.
    first = [part.strip() for part in readme_blocks(text)[0].split("&&")]
    tools = [part.replace("/tmp/", str(tmp_path) + "/") for part in first if part.startswith("l3ic ")]
    assert len(tools) >= 2 and "pip install ." in first
    run(" && ".join(tools), root, env)
    out = shlex.quote(str(tmp_path))
    version = run("l3ic --version", root, env)
    assert re.search(r"\d+\.\d+", version.stdout + version.stderr)
    run("l3ic encode samples/rose.png -o {0}/r.l3ic && l3ic decode {0}/r.l3ic".format(out), root, env)
    assert [n for n in os.listdir(str(tmp_path)) if n.startswith("r.") and n.endswith(".png")]  # its default output
    run("python -m runtime.encode samples/rose.png -o {0}/m.l3ic && python -m runtime.decode {0}/m.l3ic -o {0}/m.png "
        "&& python -m runtime.info {0}/m.l3ic".format(out), root, env)


def test_every_python_m_tool_of_the_readme_has_help_from_a_fresh_clone(clone):
    root, env = clone
    with open(os.path.join(root, "README.md")) as f:
        modules = readme_modules(f.read())
    commands = ["python -m %s --help" % m for m in modules]
    commands.append("python tests/golden/make_golden.py --help")  # must print usage, not rewrite the golden files
    procs = [(c, subprocess.Popen(c, shell=True, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)) for c in commands]
    failed = []
    for command, proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        if proc.returncode != 0 or "Traceback" in stderr or "usage" not in stdout.lower():
            failed.append("%s: exit %d\n%s%s" % (command, proc.returncode, stdout[-500:], stderr[-1500:]))
    assert not failed, "\n\n".join(failed)


def test_the_wheel_installs_only_l3ic_runtime_and_the_command(clone):
    """``benchmarks`` and ``export`` are maintainers' tools of the checkout; the package installs ``l3ic``, ``runtime``
    (the first import name) and the ``l3ic`` console script."""
    root, env = clone
    script = ("import importlib.metadata as m, json; d = m.distribution('l3ic'); "
              "print(json.dumps(sorted({str(f).split('/')[0] for f in d.files if str(f).endswith('.py') "
              "and '.dist-info' not in str(f) and not str(f).startswith('..')}))); "
              "print(json.dumps(sorted(e.name for e in d.entry_points if e.group == 'console_scripts')))")
    done = subprocess.run([os.path.join(env["VIRTUAL_ENV"], "bin", "python"), "-c", script], cwd="/", env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    packages, scripts = (json.loads(line) for line in done.stdout.splitlines())
    assert packages == ["l3ic", "runtime"] and scripts == ["l3ic"]
