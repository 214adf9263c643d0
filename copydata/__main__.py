"""python -m copydata COMMAND: copydata from the command line."""

from __future__ import annotations

import argparse
import sys

from . import _demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m copydata",
                                     description="WM_COPYDATA messages between processes on Windows.")
    commands = parser.add_subparsers(dest="command", required=True)
    _demo.add_arguments(commands.add_parser(
        "demo", help="stream messages from a sender process to a receiver process and check them"))
    options = parser.parse_args(argv)
    if options.command == "demo":
        return _demo.main(options)
    raise AssertionError(options.command)


if __name__ == "__main__":
    sys.exit(main())
