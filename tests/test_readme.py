"""The README is a short front door whose set-up commands are the ones CI runs, and the documents it links hold
together: every document is linked, every link and anchor resolves, every measurement names its command and version,
and what they say about the code (the model ranges, the codecs' settings) is what the code does.

The commands themselves are run from a fresh clone by ``test_readme_commands.py`` (slow)."""
import glob
import os
import re
import unicodedata

import pytest

from conftest import REPO

README = os.path.join(REPO, "README.md")
DOCS = sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
DOCUMENTS = [README, os.path.join(REPO, "CHANGELOG.md")] + DOCS
MAX_README_LINES = 250


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def fenced_commands(path):
    return re.findall(r"```sh\n(.*?)\n```", read(path), re.S)


def outside_code(text):
    """The text with fenced blocks and inline code removed (links are not looked for in code)."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def links(text):
    """Markdown link and image targets, as written."""
    return re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", outside_code(text))


def slug(heading):
    """GitHub's anchor for a heading: lower case, inline-code marks and punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path):
    """Every anchor of a Markdown file, with GitHub's -1, -2 ... for repeated headings."""
    seen, out = {}, set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", read(path), flags=re.S), re.M):
        base = slug(heading)
        out.add(base if base not in seen else "%s-%d" % (base, seen[base]))
        seen[base] = seen.get(base, 0) + 1
    return out


def test_ci_runs_the_readme_test_command():
    readme = fenced_commands(README)
    with open(os.path.join(REPO, ".ci", "run")) as f:
        ci_command = [line for line in f.read().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_command == [readme[1]]  # the second block of the README is the test command
    assert "pytest" in readme[1] and "pip install" in readme[0] and "l3ic encode" in readme[0]


def test_the_set_up_commands_open_the_readme():
    text = read(README)
    assert text.index("```sh") < text.index("\n## ")  # before the first section


def test_the_readme_is_short():
    lines = read(README).splitlines()
    assert len(lines) <= MAX_README_LINES, "README.md has %d lines (at most %d): move details to docs/" % (
        len(lines), MAX_README_LINES)


def test_the_readme_links_every_document():
    linked = {os.path.normpath(os.path.join(REPO, t.split("#")[0])) for t in links(read(README)) if "://" not in t}
    missing = [os.path.relpath(p, REPO) for p in DOCUMENTS[1:] if os.path.normpath(p) not in linked]
    assert not missing, "README.md does not link %s" % ", ".join(missing)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_link_and_anchor_resolves(path):
    broken = []
    for target in links(read(path)):
        if "://" in target or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(linked):
            broken.append(target + " (no such file)")
        elif anchor and linked.endswith(".md") and anchor not in anchors(linked):
            broken.append(target + " (no such heading)")
    assert not broken, "%s: %s" % (os.path.relpath(path, REPO), "; ".join(broken))


def test_slugs_are_githubs():
    assert slug("Continuous quality: `-q 0..100`") == "continuous-quality--q-0100"
    assert slug("Kodak, the three presets") == "kodak-the-three-presets"
    assert slug("The x265 baseline") == "the-x265-baseline"


def sections(text):
    """(heading, body) of every section at any level."""
    parts = re.split(r"^(#{1,6} .+)$", re.sub(r"```.*?```", lambda m: m.group(0).replace("#", "\\#"), text,
                                             flags=re.S), flags=re.M)
    return list(zip(parts[1::2], parts[2::2]))


VERSION = re.compile(r"l3ic \d+\.\d+|format-2 release|format-3 models|commit [0-9a-f]{7}")


@pytest.mark.parametrize("name", ["docs/benchmarks.md", "README.md"])
def test_every_table_of_figures_names_its_command_and_version(name):
    """A section holding a table of measurements names the command that made it and the version it measured."""
    unsourced = []
    for heading, body in sections(read(os.path.join(REPO, name))):
        if not re.search(r"^\|.*\d.*\|$", body, re.M) or heading.startswith("## Documentation"):
            continue
        if "python -m " not in body or not VERSION.search(body):
            unsourced.append(heading)
    assert not unsourced, "%s: tables without a command or a version: %s" % (name, unsourced)


def stated_ranges():
    from l3ic.quality import SCALE
    return {s.model: ("%g ≤ q ≤ %g" if s is SCALE[-1] else "%g ≤ q < %g") % (s.start, s.end) for s in SCALE}


def test_the_model_ranges_are_stated_as_model_for_picks_them():
    """``model_for`` gives a boundary q to the larger model: the documents must not write the ranges as inclusive."""
    from l3ic.quality import Q_UNITS, model_for
    ranges = stated_ranges()
    for name, text in ranges.items():  # the statement itself, checked against model_for at its edges
        lo, op, hi = re.match(r"(\S+) ≤ q (<|≤) (\S+)", text).groups()
        assert model_for(round(float(lo) * Q_UNITS)) == name
        assert (model_for(round(float(hi) * Q_UNITS)) == name) == (op == "≤")
    for doc in ("README.md", "docs/models.md"):
        text = read(os.path.join(REPO, doc))
        missing = [r for r in ranges.values() if r not in text]
        assert not missing, "%s does not state %s" % (doc, missing)


def encode_command(codec, tmp_path, monkeypatch):
    """The command line a standard codec of benchmarks.codecs runs to encode (the tools are not needed)."""
    from benchmarks import codecs
    calls = []
    monkeypatch.setattr(codecs, "_run", calls.append)
    monkeypatch.setattr(codecs, "_ppm", lambda src, folder: src)
    codec.encode("photo.png", codec.qualities[0], str(tmp_path))
    return " ".join(calls[0])


def test_the_baselines_are_set_up_as_the_documents_say(tmp_path, monkeypatch):
    from benchmarks.codecs import BY_NAME
    avif, x265 = encode_command(BY_NAME["avif"], tmp_path, monkeypatch), encode_command(BY_NAME["x265"], tmp_path, monkeypatch)
    readme, benchmarks = read(README), read(os.path.join(REPO, "docs", "benchmarks.md"))
    assert "-s 4 -j 1" in avif and "avifenc -y 444 -s 4 -j 1" in readme  # the speed and threads the timings used
    # x265 as BPG: full-range YCbCr (and signalled so), no info SEI; the old setup stays measurable
    assert "out_range=full" in x265 and "range=full" in x265.split("-x265-params")[1] and "info=0" in x265
    old = encode_command(BY_NAME["x265-0.5"], tmp_path, monkeypatch)
    assert "out_range=limited" in old and "info=1" in old
    for text in (readme, benchmarks):
        assert "full range" in text and "info SEI" in text
