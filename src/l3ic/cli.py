"""The ``l3ic`` command and what its tools share: one-line errors, exit codes, paths.

``l3ic encode|decode|info ...`` (``main``, the console script) runs the tools
of ``l3ic.encode``, ``l3ic.decode`` and ``l3ic.info``; ``python -m
runtime.encode`` and the like are the same tools under their first name.
Every user error surfaces as ``l3ic: error: <one line>`` on stderr and a
non-zero exit status, never a traceback (set ``L3IC_DEBUG=1`` to see one).
"""
import argparse
import importlib
import os
import sys
import time
import traceback

from l3ic import __version__
from l3ic.errors import L3icError

EXIT_ERROR = 1
EXIT_INTERNAL = 2
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a program ended by SIGPIPE (``yes | head``)
STARTED = time.perf_counter()  # the tools' result lines time the whole run from here (imports before it: ~20 ms)

TOOLS = {"encode": "compress images to .l3ic files", "decode": "decompress .l3ic files to images",
         "info": "show the header of .l3ic files", "view": "view .l3ic files in a web browser (docs/web.md)"}
MODULES = {"view": "web"}  # a tool whose module has another name (l3ic.web, also python -m l3ic.web)
USAGE = "usage: l3ic {encode,decode,info,view} [options] (l3ic TOOL --help for each), or l3ic -V/--version"


def main(argv=None):
    """``l3ic TOOL ARGS...``: the exit status of the tool."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in TOOLS:
        return run_tool(argv[0], argv[1:])
    return run(_top_level, argv)


def _top_level(argv):
    """``l3ic`` without a tool: the version, the usage, or a one-line error."""
    if argv[:1] in (["-V"], ["--version"]):
        print("l3ic %s" % __version__)
        return 0
    if argv[:1] in ([], ["-h"], ["--help"]):
        print(USAGE + "\n\n" + "\n".join("  %-8s %s" % item for item in TOOLS.items()),
              file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    print("l3ic: error: unknown tool %r: %s" % (argv[0], USAGE), file=sys.stderr)
    return EXIT_USAGE


def run_tool(name, argv=None, prog=None):
    """Import the tool ``l3ic.NAME`` and run its ``main`` under ``run``: a broken install is one line too."""
    def tool(args):
        try:
            module = importlib.import_module("l3ic." + MODULES.get(name, name))
        except ImportError as e:
            raise L3icError(str(e))
        return module.main(args, prog=prog or "l3ic " + name)
    return run(tool, argv)


def run(main, argv=None):
    """Call ``main(argv)`` and turn every failure into one line on stderr and an exit code."""
    try:
        status = main(argv) or 0
        sys.stdout.flush()  # a reader that went away shows here, inside the try, not at exit
        return status
    except BrokenPipeError:
        return _broken_pipe()
    except L3icError as e:
        print("l3ic: error: %s" % e, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("l3ic: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("l3ic: error: out of memory", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # a bug: still one line, with the way to get details
        if os.environ.get("L3IC_DEBUG"):
            traceback.print_exc()
        print("l3ic: internal error: %s: %s (set L3IC_DEBUG=1 for a traceback)" % (type(e).__name__, e), file=sys.stderr)
        return EXIT_INTERNAL


def _broken_pipe():
    """The reader of standard output went away (``l3ic info *.l3ic | head -2``): end quietly, as ``cat`` does.

    Standard output is pointed at /dev/null, so that Python's own flush at exit
    does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (argparse's own exits with status 2 after the usage)."""

    def error(self, message):
        self.exit(2, "l3ic: error: %s (see --help)\n" % message)


def tool_parser(prog, description, input_help, output_help):
    """The options every codec tool shares: input, -o, model, provider, threads, -f, --max-pixels, --quiet."""
    from l3ic.image import DEFAULT_MAX_PIXELS
    from l3ic.options import PROVIDERS
    parser = Parser(prog=prog, description=description)
    parser.add_argument("input", nargs="+", help=input_help)
    parser.add_argument("-o", "--output", help=output_help)
    parser.add_argument("-m", "--model", help="model: low, medium, high, or a model folder (encode: default medium; "
                                              "decode: default the model the file names)")
    parser.add_argument("--provider", default="auto", choices=PROVIDERS,
                        help="ONNX Runtime execution provider (auto: CUDA when available)")
    parser.add_argument("-f", "--force", action="store_true",
                        help="overwrite an existing output (decode: also drop alpha that the output format cannot hold)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse larger images (decompression-bomb guard; default %(default)d)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="ONNX Runtime threads (default: all cores for one file, 1 per worker in a batch)")
    parser.add_argument("--quiet", action="store_true", help="print only errors: no result line, no progress")
    return parser


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer, got %r" % text)
    return value


def elapsed():
    """Seconds since the tool started (module import), what the result lines report."""
    return time.perf_counter() - STARTED
