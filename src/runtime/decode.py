"""``python -m runtime.decode``: ``l3ic decode`` under its first name (see ``l3ic.decode``)."""
import sys

from l3ic import cli

if __name__ == "__main__":
    sys.exit(cli.run_tool("decode", prog="python -m runtime.decode"))
