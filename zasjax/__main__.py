"""`python -m zasjax ...` is the `zasjax` command."""

import sys

from .cli import console

sys.exit(console())
