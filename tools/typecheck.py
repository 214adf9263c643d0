#!/usr/bin/env python3
"""Type-check the copydata package with mypy as Windows code, from Linux.

mypy is installed once into .winenv/typecheck (a venv of this Python); copydata._core is the
compiled extension, unknown to mypy, hence --ignore-missing-imports.
"""

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".winenv" / "typecheck"
MYPY_VERSION = "2.4.1"


def main() -> int:
    python = VENV / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"mypy=={MYPY_VERSION}"], check=True)
    return subprocess.run([str(python), "-m", "mypy", "--platform", "win32", "--python-version", "3.11",
                           "--ignore-missing-imports", "copydata"], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
