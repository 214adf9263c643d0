#!/usr/bin/env python3
"""Build and test copydata on Linux: mingw-w64 builds the extension, Windows CPython runs it under Wine.

    python3 tools/winenv.py setup            install what is missing, nothing else
    python3 tools/winenv.py build            cross-compile copydata/_core.pyd and the test programs
    python3 tools/winenv.py wheel            build dist/*.whl (cp39-abi3-win_amd64) and the sdist
    python3 tools/winenv.py test             install the wheel into Windows CPython 3.11 and run
                                             the whole suite, then the smoke suite on 3.9 and 3.13
    python3 tools/winenv.py test ARGS        the same install, then pytest ARGS on 3.11 only
    python3 tools/winenv.py smoke [ARGS]     the wheel installed into 3.9 and 3.13, pytest -m smoke
    python3 tools/winenv.py buildbat [ARGS]  build.bat in a fresh copy of CPython 3.11, with the
                                             extension built here instead of MSVC's (pytest ARGS)
    python3 tools/winenv.py python [ARGS]    run the Windows Python with the source tree importable
    python3 tools/winenv.py demo [ARGS]      copydata beside a C loop of SendMessage and memcpy
    python3 tools/winenv.py bench [ARGS]     copydata beside the alternatives (bench/run.py)

The tests never import the source tree: each Windows CPython they run in is a copy of its own
(.winenv/installed-X.Y) into which pip installs the wheel, as a user would. `python`, `demo`
and `bench` run the source tree (PYTHONPATH) in the build interpreter, for development.

Its parts: _winenv_wine.py (Wine, the Windows CPythons, setting up, running them),
_winenv_build.py (the extension and the C programs) and _winenv_wheel.py (the wheel and the
suites run against it as installed).

Everything it downloads or creates lives in .winenv/ (ignored by git), so a second run
is quick. Every command ends the Wine processes of that private prefix when it is done,
so do not run two commands of this tool at once on the same checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _winenv_build import build
from _winenv_wheel import build_wheel, run_build_bat, run_smoke, test
from _winenv_wine import (BENCH_PROGRAMS, BENCH_REQUIREMENTS, BUILD_PYTHON, ROOT, end_wine_processes,
                          ensure_windows_packages, log, setup, windows_path, windows_python)


# --- commands -------------------------------------------------------------------------------

PASSTHROUGH_COMMANDS = {
    "test": "install the wheel and run the test suite (arguments go to pytest)",
    "smoke": "install the wheel into CPython 3.9 and 3.13 and run the smoke suite (arguments go to pytest)",
    "buildbat": "run build.bat in a fresh CPython 3.11, the extension built here (arguments go to pytest)",
    "python": "run the Windows Python (arguments go to it)",
    "demo": "copydata beside a C loop of SendMessage and memcpy, every message checked (arguments go to it)",
    "bench": "run the benchmarks side by side (arguments go to bench/run.py)",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="winenv.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="install what is missing")
    build_parser = commands.add_parser("build", help="cross-compile copydata/_core.pyd")
    build_parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    commands.add_parser("wheel", help="build dist/*.whl and the sdist")
    for name, text in PASSTHROUGH_COMMANDS.items():
        commands.add_parser(name, help=text, add_help=False)
    # Everything after a pass-through command is its own, options included.
    split = 1 if argv and argv[0] in PASSTHROUGH_COMMANDS else len(argv)
    options = parser.parse_args(argv[:split])
    options.args = argv[split:]

    try:
        if options.command == "setup":
            setup()
            return 0
        if options.command == "build":
            build(force=options.force)
            return 0
        if options.command == "wheel":
            build_wheel()
            return 0
        if options.command == "test":
            return test(options.args)
        if options.command == "smoke":
            return run_smoke(build_wheel(), options.args)
        if options.command == "buildbat":
            return run_build_bat(options.args)
        build()
        if options.command == "python":
            return windows_python(options.args, interactive=True)
        if options.command == "demo":
            return windows_python(["-m", "copydata", "demo", *options.args])
        if options.command == "bench":
            ensure_windows_packages(BUILD_PYTHON, BENCH_REQUIREMENTS, locked=False)
            return windows_python([str(ROOT / "bench" / "run.py"), "--native-dir", windows_path(BENCH_PROGRAMS),
                                   *options.args])
        raise AssertionError(options.command)
    except subprocess.CalledProcessError as error:
        log(f"{' '.join(map(str, error.cmd))} failed with exit code {error.returncode}")
        return error.returncode or 1
    except KeyboardInterrupt:
        return 130
    finally:
        end_wine_processes()


if __name__ == "__main__":
    sys.exit(main())
