"""python -m copydata: the command line (see copydata._cli)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
