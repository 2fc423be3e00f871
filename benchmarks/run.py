"""Run the side-by-side benchmark: `python benchmarks/run.py [--quick] [--json OUT.json]`."""

import sys

from zasjax._bench import main

if __name__ == "__main__":
    main(sys.argv[1:])
