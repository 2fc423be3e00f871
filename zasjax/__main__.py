"""`python -m zasjax ...` is the `zasjax` command."""

import sys

from .cli import main

sys.exit(main())
