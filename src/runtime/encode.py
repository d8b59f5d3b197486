"""``python -m runtime.encode``: ``l3ic encode`` under its first name (see ``l3ic.encode``)."""
import sys

from l3ic import cli

if __name__ == "__main__":
    sys.exit(cli.run_tool("encode", prog="python -m runtime.encode"))
