"""``python -m runtime.info``: ``l3ic info`` under its first name (see ``l3ic.info``)."""
import sys

from l3ic import cli

if __name__ == "__main__":
    sys.exit(cli.run_tool("info", prog="python -m runtime.info"))
