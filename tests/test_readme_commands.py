"""Every command of the README and of docs/ works from a fresh clone of what is committed (HEAD), installed as the
README says: the README's first command, every ``l3ic`` example (each in a folder holding the files it names), the
``python`` examples, and ``--help`` of every tool the documents name, which must list every flag they give it.

Slow (a clone, a non-editable install with the FSE C build: about a minute).  No downloads: the new venv reuses the
packages of the one running the tests (a .pth line, since ``--system-site-packages`` would only reach the base
interpreter's), builds with ``--no-build-isolation``, and the FSE build takes zstd from ``~/.cache/l3ic`` (or
``L3IC_FSE_SOURCE``).  Uncommitted changes are not in the clone: that is the point.
"""
import glob
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


def documents(root):
    """The README, the changelog and every document under docs/ of a checkout."""
    return [os.path.join(root, "README.md"), os.path.join(root, "CHANGELOG.md")] + \
        sorted(glob.glob(os.path.join(root, "docs", "*.md")))


def all_text(root):
    return "\n".join(open(p, encoding="utf-8").read() for p in documents(root))


def readme_blocks(text, language="sh"):
    return re.findall(r"```%s\n(.*?)\n```" % language, text, re.S)


def readme_modules(text):
    """Every ``python -m X`` the documents name, in their sh blocks or in their prose."""
    return sorted(set(re.findall(r"python[\d.]*\s+-m\s+([A-Za-z_][\w.]*)", text)) - NOT_TOOLS)


def commands(text):
    """Every command line of the documents: each line of their sh blocks, and each inline code span that starts
    with ``python -m`` or ``l3ic`` (prose may wrap one over lines); chains (&&, |, ;) split into their commands."""
    lines = [line for block in readme_blocks(text) for line in block.splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)
              if re.match(r"(python[\d.]*\s+-m\s|l3ic\s)", span)]
    out = []
    for line in lines:
        line = re.sub(r"(^|\s)#.*$", "", line)  # comments
        out += [part.strip() for part in re.split(r"&&|\|\|?|;|>", line) if part.strip()]
    return out


def tool_flags(text):
    """{tool: the --flags the documents give it}, tool = ``python -m MODULE`` or ``l3ic SUBCOMMAND``."""
    flags = {}
    for command in commands(text):
        words = command.split()
        m = re.match(r"python[\d.]*\s+-m\s+([A-Za-z_][\w.]*)", command)
        if m and m.group(1) not in NOT_TOOLS:
            tool = "python -m " + m.group(1)
        elif len(words) > 1 and words[0] == "l3ic" and not words[1].startswith("-"):
            tool = "l3ic " + words[1]
        else:
            continue
        flags.setdefault(tool, set()).update(w.split("=")[0] for w in words if re.match(r"--[a-z]", w))
    return flags


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


def test_the_documents_name_their_tools():
    modules = readme_modules(all_text(REPO))
    assert {"runtime.encode", "runtime.decode", "runtime.info", "export.train", "export.to_onnx", "export.fit_gains",
            "export.fit_tables", "benchmarks.rd", "benchmarks.codecs", "benchmarks.speed", "l3ic.batch_ray"} <= set(modules), modules
    with open(README) as f:
        assert "l3ic encode" in readme_blocks(f.read())[0]


def test_commands_and_flags_are_found_in_the_documents():
    """The parsing the fresh-clone tests rely on: chains split, comments dropped, prose spans read."""
    text = ("```sh\nl3ic encode a.png -q 80   # --not-a-flag\npip install . && python -m benchmarks.rd --images K "
            "--out=r | tee x\n```\nthen `python -m export.train --data D\n--steps 3` and `l3ic --version`.\n")
    assert commands(text) == ["l3ic encode a.png -q 80", "pip install .", "python -m benchmarks.rd --images K --out=r",
                              "tee x", "python -m export.train --data D --steps 3", "l3ic --version"]
    assert tool_flags(text) == {"l3ic encode": set(), "python -m benchmarks.rd": {"--images", "--out"},
                                "python -m export.train": {"--data", "--steps"}}


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


def test_every_tool_of_the_documents_has_help_listing_their_flags_from_a_fresh_clone(clone):
    """``--help`` of every ``python -m`` tool and ``l3ic`` subcommand the README and docs/ name works, and lists every
    flag they give it: a renamed or removed flag breaks the documents."""
    root, env = clone
    wanted = tool_flags(all_text(root))
    for module in readme_modules(all_text(root)):  # named in prose without a flag: --help must still work
        wanted.setdefault("python -m " + module, set())
    commands = {tool: tool + " --help" for tool in wanted}
    commands["make_golden"] = "python tests/golden/make_golden.py --help"  # must print usage, not rewrite the golden files
    procs = [(tool, c, subprocess.Popen(c, shell=True, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)) for tool, c in commands.items()]
    failed = []
    for tool, command, proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        if proc.returncode != 0 or "Traceback" in stderr or "usage" not in stdout.lower():
            failed.append("%s: exit %d\n%s%s" % (command, proc.returncode, stdout[-500:], stderr[-1500:]))
            continue
        unknown = sorted(f for f in wanted.get(tool, ()) if not re.search(re.escape(f) + r"\b(?!-)", stdout))
        if unknown:
            failed.append("%s: the documents give it %s, which its --help does not list" % (tool, ", ".join(unknown)))
    assert not failed, "\n\n".join(failed)


def fixture_folder(folder, root, env):
    """A folder holding every file the documents' examples name: photo.png / .jpg / .l3ic, a.l3ic and b.l3ic,
    photos/ (two images) and out/ (two .l3ic files, of other names than photos/ gives)."""
    from PIL import Image
    os.makedirs(os.path.join(folder, "photos"))
    os.makedirs(os.path.join(folder, "out"))
    rose = Image.open(os.path.join(root, "samples", "rose.png")).convert("RGB").resize((144, 192))
    rose.save(os.path.join(folder, "photo.png"))
    rose.save(os.path.join(folder, "photo.jpg"), quality=95)
    rose.crop((0, 0, 96, 64)).save(os.path.join(folder, "photos", "leaf.png"))
    rose.crop((16, 64, 144, 160)).save(os.path.join(folder, "photos", "petal.jpg"), quality=95)
    run("l3ic encode photo.png -o photo.l3ic && l3ic encode photos/leaf.png -o a.l3ic -q 30 && "
        "l3ic encode photos/petal.jpg -o b.l3ic && cp a.l3ic out/c.l3ic && cp b.l3ic out/d.l3ic", folder, env)


def runnable_examples(root):
    """(document, line) for every line of every sh block that holds only ``l3ic`` commands: the examples a user
    copies one at a time.  Blocks that mix in other commands (set-up, training) are checked by --help above."""
    out = []
    for path in documents(root):
        for block in readme_blocks(open(path, encoding="utf-8").read()):
            lines = [line for line in block.splitlines() if line.strip()]
            if all(line.startswith("l3ic ") for line in lines):
                out += [(os.path.relpath(path, root), line) for line in lines]
    return out


def test_every_l3ic_example_of_the_documents_runs_from_a_fresh_clone(clone, tmp_path):
    root, env = clone
    examples = runnable_examples(root)
    assert len(examples) >= 10 and any("--crop" in line for _, line in examples)
    template = str(tmp_path / "template")
    os.makedirs(template)
    fixture_folder(template, root, env)
    for i, (doc, line) in enumerate(examples):  # each in a fresh copy: examples are alternatives, not a sequence
        folder = str(tmp_path / ("ex%d" % i))
        shutil.copytree(template, folder)
        if line.startswith("l3ic encode"):  # its inputs are images: no .l3ic in the way of its default output
            for name in glob.glob(os.path.join(folder, "*.l3ic")):
                os.remove(name)
        result = subprocess.run(line.replace("/tmp/", folder + "/"), shell=True, cwd=folder, env=env,
                                capture_output=True, text=True, timeout=300, executable="/bin/bash")
        assert result.returncode == 0 and "Traceback" not in result.stderr, \
            "%s: %s\nexit %d\n%s%s" % (doc, line, result.returncode, result.stdout[-1000:], result.stderr[-2000:])


def test_the_python_examples_of_the_documents_run_from_a_fresh_clone(clone, tmp_path):
    """The python blocks of each document, in order, as one script (later blocks use earlier names)."""
    root, env = clone
    template = str(tmp_path / "template")
    os.makedirs(template)
    fixture_folder(template, root, env)
    python = os.path.join(env["VIRTUAL_ENV"], "bin", "python")
    ran = []
    for path in documents(root):
        blocks = readme_blocks(open(path, encoding="utf-8").read(), "python")
        if not blocks:
            continue
        folder = str(tmp_path / os.path.basename(path))
        shutil.copytree(template, folder)
        done = subprocess.run([python, "-c", "\n".join(blocks)], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, "%s\n%s" % (os.path.relpath(path, root), done.stderr[-3000:])
        ran.append(os.path.basename(path))
    assert "README.md" in ran and "usage.md" in ran


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
