"""Run the side-by-side benchmark: `python benchmarks/run.py [--quick] [--json OUT.json]`,
the same as `zasjax bench [--quick] [--json OUT.json]`."""

import sys

from zasjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
