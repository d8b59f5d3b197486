"""``python -m runtime.info FILE.l3ic [--json]``: print the header of an l3ic file."""
import json
import sys

from runtime import cli
from runtime.codec import read_info


def main(argv=None):
    p = cli.Parser(prog="python -m runtime.info", description="Show the header of an l3ic file.")
    p.add_argument("input", help=".l3ic file")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    info = read_info(cli.read_input(args.input))
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        print("%-24s %s" % (key, value))


if __name__ == "__main__":
    sys.exit(cli.run(main))
