"""Build the browser's entropy decoder: ``python web/build_wasm.py`` -> ``web/dist/l3ic_fse.wasm``.

It is l3ic's FSE glue (``csrc/fse/l3ic_fse.c``), which includes zstd's amalgamated ``zstd.c``,
compiled to WebAssembly with ``web/wasm/l3ic_wasm.c`` around it.  The zstd source is the one the
Python extension is built from: ``build_fse.zstd_source_dir()`` fetches the pinned
python-zstandard sdist, checks its SHA-256 and unpacks it (or takes ``L3IC_FSE_SOURCE``), so the
browser and the Python runtime run the same FSE code.

Compiler: Debian's clang and lld with the wasm32 target and wasi-libc (``apt-get install clang lld
wasi-libc``; ``.ci/run`` installs them); ``CLANG`` overrides the compiler.  Flags:

* ``-D__EMSCRIPTEN__``: zstd.c and the glue start no threads and include no pthread.h only for
  that macro, the one switch their sources have for a single-threaded WebAssembly build;
* ``-O3 -DNDEBUG``, as Python builds the extension (asserts off);
* ``--stack-first`` and a 1 MiB stack: a stack overflow traps at address 0 instead of
  overwriting the heap; ``--max-memory`` caps the module at 1 GiB, so a hostile stream makes
  malloc fail (an "out of memory" error) rather than grow without bound.

The build is skipped when ``web/dist/l3ic_fse.wasm.json`` records the same inputs (the
SHA-256 of the sources and the flags), so running it again is cheap and needs no compiler.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

WEB = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(WEB)
OUTPUT = os.path.join(WEB, "dist", "l3ic_fse.wasm")
STAMP = OUTPUT + ".json"
GLUE = os.path.join(REPO, "csrc", "fse")
WRAPPER = os.path.join(WEB, "wasm", "l3ic_wasm.c")
WASI_INCLUDE = "/usr/include/wasm32-wasi"  # Debian's wasi-libc
WASI_LIB = "/usr/lib/wasm32-wasi"
EXPORTS = ("malloc", "free", "l3ic_fse_error_message", "l3ic_fse_decode_channels", "l3ic_fse_tables_create",
           "l3ic_fse_tables_free", "l3ic_fse_decode_static", "l3ic_wasm_limit", "l3ic_wasm_unzstd",
           "l3ic_wasm_zstd_error")
COMPILE_FLAGS = ("--target=wasm32-wasi", "-O3", "-DNDEBUG", "-D__EMSCRIPTEN__", "-nostdinc",
                 "-Wno-deprecated-declarations")
LINK_FLAGS = ("-nostdlib", "-Wl,--no-entry", "-Wl,--gc-sections", "-Wl,--stack-first", "-Wl,-z,stack-size=1048576",
              "-Wl,--initial-memory=4194304", "-Wl,--max-memory=1073741824")


class BuildError(RuntimeError):
    """The WebAssembly module cannot be built here (one line: what is missing and how to get it)."""


def _run(command):
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
        errors = [line for line in lines if "error" in line] or lines
        raise BuildError("%s failed: %s" % (os.path.basename(command[0]), errors[0] if errors else done.returncode))
    return done.stdout.decode("utf-8", "replace")


def _compiler():
    """(clang command, its resource dir, its version line); BuildError when it is missing."""
    clang = shutil.which(os.environ.get("CLANG") or "clang")
    if not clang:
        raise BuildError("%s is not installed: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32"
                         % (os.environ.get("CLANG") or "clang"))
    if not os.path.isdir(WASI_INCLUDE):
        raise BuildError("wasi-libc is not installed (%s is missing): apt-get install wasi-libc" % WASI_INCLUDE)
    resource = _run([clang, "-print-resource-dir"]).strip()
    return clang, resource, _run([clang, "--version"]).splitlines()[0]


def _zstd_dir():
    """The folder holding the pinned zstd.c, through the Python extension's own build script."""
    sys.path.insert(0, REPO)
    try:
        import build_fse
        return build_fse.zstd_source_dir()
    except build_fse.FSESourceError as e:
        raise BuildError(str(e))
    finally:
        sys.path.remove(REPO)


def _digest(paths, extra):
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    h.update(json.dumps(extra).encode("utf-8"))
    return h.hexdigest()


def _builtins(resource):
    """clang's runtime library for wasm32 (64-bit multiply/divide helpers), when installed."""
    path = os.path.join(resource, "lib", "wasi", "libclang_rt.builtins-wasm32.a")
    return [path] if os.path.isfile(path) else []


def build(force=False, quiet=False):
    """Build OUTPUT unless its stamp says it was built from these sources and flags; returns its path.
    BuildError if it cannot (an up-to-date build needs no compiler)."""
    zstd = _zstd_dir()
    sources = [WRAPPER, os.path.join(GLUE, "l3ic_fse.c"), os.path.join(GLUE, "l3ic_fse.h"), os.path.join(zstd, "zstd.c")]
    digest = _digest(sources, {"compile": COMPILE_FLAGS, "link": LINK_FLAGS, "exports": EXPORTS})
    if not force and os.path.isfile(OUTPUT) and os.path.isfile(STAMP):
        with open(STAMP) as f:
            if json.load(f).get("sha256_inputs") == digest:
                return OUTPUT
    clang, resource, version = _compiler()
    if not quiet:
        print("building %s with %s (about a minute)" % (os.path.relpath(OUTPUT), version), file=sys.stderr)
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(OUTPUT)) as tmp:
        obj, wasm = os.path.join(tmp, "l3ic_wasm.o"), os.path.join(tmp, "l3ic_fse.wasm")
        _run([clang, *COMPILE_FLAGS, "-isystem", os.path.join(resource, "include"), "-isystem", WASI_INCLUDE,
              "-I", GLUE, "-I", zstd, "-c", WRAPPER, "-o", obj])
        _run([clang, "--target=wasm32-wasi", *LINK_FLAGS, *("-Wl,--export=" + name for name in EXPORTS),
              obj, "-L", WASI_LIB, "-lc", *_builtins(resource), "-o", wasm])
        os.replace(wasm, OUTPUT)
    with open(OUTPUT, "rb") as f:
        stamp = {"sha256_inputs": digest, "sha256": hashlib.sha256(f.read()).hexdigest(), "compiler": version}
    with open(STAMP, "w") as f:
        json.dump(stamp, f, indent=2)
    return OUTPUT


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python web/build_wasm.py", description="Build web/dist/l3ic_fse.wasm.")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    try:
        print(os.path.relpath(build(force=args.force)))
    except BuildError as e:
        print("l3ic: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
