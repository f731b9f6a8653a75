"""`python -m edgetenant` runs the operator (same as `edgetenant run`)."""

import sys

from edgetenant.cli import main

sys.exit(main(["run", *sys.argv[1:]]))
