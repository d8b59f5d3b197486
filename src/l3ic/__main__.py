"""``python -m l3ic encode|decode|info ...``: the ``l3ic`` command."""
import sys

from l3ic import cli

sys.exit(cli.main())
