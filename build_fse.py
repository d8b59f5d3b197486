"""cffi build script for ``l3ic._fse``, l3ic's FSE entropy coder (API mode, out of line).

setup.py uses it through ``cffi_modules=["build_fse.py:ffibuilder"]``; run it directly
(``python build_fse.py``) to build the extension in place for development.

The glue in ``csrc/fse`` ``#include``s zstd's single-file amalgamation ``zstd.c``, so that
FSE's building blocks, which a shared libzstd does not export, are compiled into the same
translation unit.  No third-party C lives in this repository: ``zstd.c`` is taken at build
time from the pinned python-zstandard sdist (``zstandard-0.25.0.tar.gz``, checked against
its SHA-256), fetched with pip (which honours the configured index or mirror) and cached
in ``$XDG_CACHE_HOME/l3ic`` (default ``~/.cache/l3ic``).

Environment:
  L3IC_FSE_SOURCE  the sdist tarball (hash-checked) or an unpacked zstd source tree (a folder
                   holding ``zstd.c`` or ``zstd/zstd.c``), for offline and cross builds.
  L3IC_FSE_CFLAGS  extra compiler flags, also passed to the linker (e.g. sanitizers).
"""
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile

import cffi

ZSTANDARD_VERSION = "0.25.0"
SDIST_NAME = "zstandard-%s.tar.gz" % ZSTANDARD_VERSION
SDIST_SHA256 = "7713e1179d162cf5c7906da876ec2ccb9c3a9dcbdffef0cc7f70c3667a205f0b"
# What is taken from the sdist: the amalgamation and its licence.
SDIST_MEMBERS = ("zstd/zstd.c", "zstd/LICENSE", "zstd/COPYING")

HERE = os.path.dirname(os.path.abspath(__file__))
GLUE_DIR = os.path.join("csrc", "fse")


class FSESourceError(RuntimeError):
    """The zstd sources needed to build the FSE extension could not be obtained."""


def _fail(problem):
    raise FSESourceError(
        "l3ic: cannot build the FSE extension: %s. The build compiles zstd's amalgamated zstd.c, "
        "taken from the python-zstandard %s sdist (%s, sha256 %s), which it downloads with pip "
        "and caches in %s. Without network access, download that file elsewhere and "
        "set L3IC_FSE_SOURCE to its path, or to an unpacked zstd source tree (a folder holding "
        "zstd.c or zstd/zstd.c)." % (problem, ZSTANDARD_VERSION, SDIST_NAME, SDIST_SHA256,
                                      cache_dir()))


def cache_dir():
    """``$XDG_CACHE_HOME/l3ic``, by default ``~/.cache/l3ic``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "l3ic")


def _sha256(path):
    with open(path, "rb") as f:   # the sdist is under 1 MB
        return hashlib.sha256(f.read()).hexdigest()


def _hash_ok(path):
    return os.path.isfile(path) and _sha256(path) == SDIST_SHA256


def _amalgamation_dir(tree):
    """The folder of ``tree`` holding zstd.c (``tree`` itself or ``tree/zstd``), or None."""
    for candidate in (tree, os.path.join(tree, "zstd")):
        if os.path.isfile(os.path.join(candidate, "zstd.c")):
            return candidate
    return None


def _pip_commands():
    """pip invocations to try.  Inside pip's isolated build environment ``-m pip`` may not
    import, because the isolation hides the interpreter's own site-packages through
    PYTHONPATH / PYTHONNOUSERSITE; without those variables the interpreter sees them again."""
    base = [sys.executable, "-m", "pip"]
    env = dict(os.environ)
    yield base, env
    bare = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME")}
    if bare != env:
        yield base, bare


def _download_with_pip(dest_dir):
    """(path of the downloaded sdist or None, why not)."""
    why = "pip is not available"
    for command, env in _pip_commands():
        try:
            probe = subprocess.run(command + ["--version"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=60)
            if probe.returncode != 0:
                continue
            # --no-binary for zstandard only: with ":all:" pip would also build zstandard's build
            # requirements (cffi) from source to read its metadata, which needs libffi headers
            done = subprocess.run(command + ["download", "--no-deps", "--no-binary", "zstandard",
                                             "zstandard==" + ZSTANDARD_VERSION, "-d", dest_dir],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=900)
        except (OSError, subprocess.SubprocessError) as e:
            why = "pip failed: %s" % e
            continue
        path = os.path.join(dest_dir, SDIST_NAME)
        if os.path.isfile(path):
            return path, None
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        errors = [line for line in lines if line.startswith("ERROR:")] or lines
        why = "pip download failed: %s" % (errors[-1] if errors else "exit status %d" % done.returncode)
    return None, why


def _fetch_sdist(cache):
    """Path of the hash-checked sdist in the cache, downloading it if needed."""
    cached = os.path.join(cache, SDIST_NAME)
    if _hash_ok(cached):
        return cached
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="download-", dir=cache)
    try:
        path, why = _download_with_pip(tmp)
        if path is None:
            _fail("%s could not be obtained (%s)" % (SDIST_NAME, why))
        if _sha256(path) != SDIST_SHA256:
            _fail("pip gave a %s with the wrong SHA-256" % SDIST_NAME)
        os.replace(path, cached)
        sys.stderr.write("l3ic: fetched %s with pip into %s\n" % (SDIST_NAME, cache))
        return cached
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(sdist, dest):
    """Extracts SDIST_MEMBERS of ``sdist`` into ``dest/zstd``.  Only those regular-file
    members are read, and they are written under names chosen here, so a hostile archive
    cannot write anywhere else (no path traversal, links or devices)."""
    root = "zstandard-%s/" % ZSTANDARD_VERSION
    tmp = tempfile.mkdtemp(prefix="extract-", dir=os.path.dirname(dest))
    try:
        os.makedirs(os.path.join(tmp, "zstd"))
        with tarfile.open(sdist, "r:gz") as archive:
            for name in SDIST_MEMBERS:
                try:
                    member = archive.getmember(root + name)
                except KeyError:
                    _fail("%s has no %s" % (sdist, root + name))
                if not member.isreg():
                    _fail("%s: %s is not a regular file" % (sdist, member.name))
                with archive.extractfile(member) as src, \
                        open(os.path.join(tmp, *name.split("/")), "wb") as out:
                    shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)
        shutil.rmtree(dest, ignore_errors=True)
        try:
            os.replace(tmp, dest)
        except OSError:   # a concurrent build put it there first
            if not os.path.isfile(os.path.join(dest, "zstd", "zstd.c")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unpacked(sdist, cache):
    """The folder holding zstd.c unpacked from the (already hash-checked) ``sdist``."""
    tree = os.path.join(cache, "zstandard-%s-%s" % (ZSTANDARD_VERSION, SDIST_SHA256[:16]))
    stamp = os.path.join(tree, "zstd", "zstd.c")
    if not os.path.isfile(stamp):
        _extract(sdist, tree)   # an interrupted extraction never lands: it is renamed into place
    return os.path.join(tree, "zstd")


def zstd_source_dir():
    """The folder holding zstd.c, from L3IC_FSE_SOURCE or the (filled on demand) cache."""
    override = os.environ.get("L3IC_FSE_SOURCE")
    cache = cache_dir()
    if override:
        path = os.path.abspath(os.path.expanduser(override))
        if os.path.isdir(path):
            found = _amalgamation_dir(path)
            if found is None:
                _fail("L3IC_FSE_SOURCE=%s is a folder without zstd.c or zstd/zstd.c" % override)
            return found
        if not os.path.isfile(path):
            _fail("L3IC_FSE_SOURCE=%s does not exist" % override)
        if _sha256(path) != SDIST_SHA256:
            _fail("L3IC_FSE_SOURCE=%s does not have the SHA-256 of %s" % (override, SDIST_NAME))
        try:
            os.makedirs(cache, exist_ok=True)
            return _unpacked(path, cache)
        except OSError:   # read-only cache: unpack into a folder kept for this process
            return _unpacked(path, tempfile.mkdtemp(prefix="l3ic-fse-"))
    try:
        return _unpacked(_fetch_sdist(cache), cache)
    except OSError as e:
        _fail("the cache %s cannot be used (%s)" % (cache, e))


def _compiler_flags():
    """(compile args, link args).  Unused zstd code is dropped at link time (the extension
    is ~50 KB instead of ~1 MB, or ~7 MB with the -g Python's flags add); L3IC_FSE_CFLAGS
    comes last, so ``-g`` or ``-O1 -fsanitize=address,undefined`` there take precedence."""
    extra = shlex.split(os.environ.get("L3IC_FSE_CFLAGS", ""))
    if sys.platform == "win32":
        return ["/O2"] + extra, []
    compile_args = ["-O3", "-g0", "-ffunction-sections", "-fdata-sections"] + extra
    if sys.platform.startswith("linux"):
        return compile_args, ["-Wl,--gc-sections"] + extra
    if sys.platform == "darwin":
        return compile_args, ["-Wl,-dead_strip"] + extra
    return compile_args, extra


def cdef_from_header(path):
    """The declarations of ``path`` (l3ic_fse.h) in the subset of C that ``ffi.cdef()`` reads:
    comments, the C++ wrapper and other preprocessor lines dropped, the ``#define``d integer
    constants left for the C compiler to fill in (``...``).  So the header is the one source
    of the API."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"#ifdef __cplusplus.*?#endif", "", text, flags=re.S)
    lines = []
    for line in text.splitlines():
        constant = re.match(r"\s*#\s*define\s+(L3IC_\w+)\s+\S", line)
        if constant:
            lines.append("#define %s ..." % constant.group(1))
        elif not line.lstrip().startswith("#"):
            lines.append(line)
    return "\n".join(lines)


def make_ffibuilder(absolute_paths=False):
    """The FFI builder of ``l3ic._fse`` (fetches the zstd source if needed).  cffi releases
    the GIL around every call of an API-mode function, so the coder runs in parallel with
    other Python threads.

    setuptools wants source paths relative to setup.py's folder (the working directory when
    it runs this script); ``ffibuilder.compile()`` changes directory, so it needs them absolute.
    """
    def path(*parts):
        relative = os.path.join(*parts)
        if absolute_paths or not os.path.samefile(os.getcwd(), HERE):
            return os.path.join(HERE, relative)
        return relative

    builder = cffi.FFI()
    builder.cdef(cdef_from_header(os.path.join(HERE, GLUE_DIR, "l3ic_fse.h")))
    compile_args, link_args = _compiler_flags()
    builder.set_source(
        "l3ic._fse",
        '#include "l3ic_fse.h"',
        sources=[path(GLUE_DIR, "l3ic_fse.c")],
        depends=[path(GLUE_DIR, "l3ic_fse.h")],
        include_dirs=[path(GLUE_DIR), zstd_source_dir()],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    return builder


def _builder_or_exit(**kwargs):
    try:
        return make_ffibuilder(**kwargs)
    except FSESourceError as error:   # one paragraph, no traceback
        raise SystemExit(str(error))


def main():
    """Builds src/l3ic/_fse*.so in place (intermediate files under build/fse)."""
    built = _builder_or_exit(absolute_paths=True).compile(tmpdir=os.path.join(HERE, "build", "fse"),
                                                           verbose=True)
    target = os.path.join(HERE, "src", "l3ic", os.path.basename(built))
    shutil.copyfile(built, target)
    print("built", os.path.relpath(target, HERE))


if __name__ == "__main__":
    main()
else:   # loaded by setuptools through cffi_modules=["build_fse.py:ffibuilder"]
    ffibuilder = _builder_or_exit()
