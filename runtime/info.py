"""``python -m runtime.info FILE.l3ic [--json]``: print the header of an l3ic file.

When the encoder had to change the source beyond what decoding restores (16-bit
samples reduced to 8 bits, CMYK converted to RGB, ...), the file's ``SRCF``
record says so, and this prints it as ``source``.
"""
import json
import sys

from runtime import cli, container
from runtime import image as images
from runtime.codec import read_info


def main(argv=None):
    p = cli.Parser(prog="python -m runtime.info", description="Show the header of an l3ic file.")
    p.add_argument("input", help=".l3ic file")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    data = cli.read_input(args.input)
    info = read_info(data)
    record = container.L3icFile.parse(data).side_record(images.SOURCE)
    if record is not None:
        info["source"] = images.read_source_record(record)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if key == "source":
            value = images.describe_source(value)
        print("%-24s %s" % (key, value))


if __name__ == "__main__":
    sys.exit(cli.run(main))
