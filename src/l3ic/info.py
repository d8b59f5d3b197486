"""``python -m runtime.info FILE.l3ic... [--json]``: print the header of l3ic files.

When the encoder had to change the source beyond what decoding restores (16-bit
samples reduced to 8 bits, CMYK converted to RGB, ...), the file's ``SRCF``
record says so, and this prints it as ``source``.

Several files: each one's fields under a ``==> FILE <==`` line (as ``head``
prints several files), or with ``--json`` one list of objects, each with a
``file`` key (one file prints one object, as before, so that scripts reading
one file need not change).  A file that cannot be read is one ``l3ic: error:
FILE: ...`` line; the others are still shown and the exit status is 1.
"""
import json
import sys

from l3ic import cli
from l3ic import image as images
from l3ic.reader import read_info
from l3ic.files import read_input
from l3ic.errors import L3icError
from l3ic.options import CodecOptions


def parse_args(argv, prog):
    p = cli.Parser(prog=prog, description="Show the header of l3ic files.")
    p.add_argument("input", nargs="+", help=".l3ic files")
    p.add_argument("--json", action="store_true", help="print JSON (an object; a list of objects for several files)")
    p.add_argument("--max-pixels", type=int, default=images.DEFAULT_MAX_PIXELS,
                   help="refuse files claiming larger images (default %(default)d)")
    return p.parse_args(argv)


def file_info(path, max_pixels):
    """The header of one file; its errors name the file (several files are read in one run)."""
    try:
        return read_info(read_input(path), max_pixels=max_pixels)
    except L3icError as e:
        message = str(e)
        raise L3icError(message if path in message else "%s: %s" % (path, message)) from e


def text_lines(info):
    """The human-readable fields: the source record in words, bpp to 3 decimals (as the encoder prints it), sizes
    as H x W, the codebook as its range, side data as its records' sizes (``--json`` has them all as data)."""
    for key, value in info.items():
        if key == "source":
            value = images.describe_source(value)
        elif key == "bpp":
            value = "%.3f" % value
        elif key == "codebook":
            value = "%d..%d (%d values)" % (value["minimum"], value["minimum"] + value["size"] - 1, value["size"])
        elif key in ("latent", "tile"):
            value = "%d x %d cells" % tuple(value)
        elif key == "side_data":
            value = ", ".join("%s %d bytes" % item for item in value.items()) or "none"
        yield "%-24s %s" % (key, value)


def main(argv=None, prog="l3ic info"):
    args = parse_args(argv, prog)
    CodecOptions.validated(max_pixels=args.max_pixels, flags=True)
    if len(args.input) == 1:  # errors surface as the tool's one line
        info = file_info(args.input[0], args.max_pixels)
        print(json.dumps(info, indent=2) if args.json else "\n".join(text_lines(info)))
        return 0
    shown, failed = [], False
    for path in args.input:
        try:
            info = file_info(path, args.max_pixels)
        except L3icError as e:
            print("l3ic: error: %s" % e, file=sys.stderr)
            failed = True
            continue
        if not args.json:
            print("%s==> %s <==" % ("\n" if shown else "", path))
            print("\n".join(text_lines(info)), flush=True)
        shown.append(dict(file=path, **info))
    if args.json:
        print(json.dumps(shown, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
