"""``python -m runtime.info FILE.l3ic [--json]``: print the header of an l3ic file.

When the encoder had to change the source beyond what decoding restores (16-bit
samples reduced to 8 bits, CMYK converted to RGB, ...), the file's ``SRCF``
record says so, and this prints it as ``source``.
"""
import json
import sys

from l3ic import cli
from l3ic import image as images
from l3ic.codec import read_info


def main(argv=None, prog="l3ic info"):
    p = cli.Parser(prog=prog, description="Show the header of an l3ic file.")
    p.add_argument("input", help=".l3ic file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--max-pixels", type=int, default=images.DEFAULT_MAX_PIXELS,
                   help="refuse files claiming larger images (default %(default)d)")
    args = p.parse_args(argv)
    info = read_info(cli.read_input(args.input), max_pixels=args.max_pixels)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if key == "source":
            value = images.describe_source(value)
        print("%-24s %s" % (key, value))


if __name__ == "__main__":
    sys.exit(cli.run(main))
