#!/usr/bin/env python3
"""Fuzz copydata's reader of .NET BinaryFormatter streams (copydata/_nrbf*.py) natively on Linux
with atheris (libFuzzer for Python, coverage-guided).

    python3 tools/fuzz_nrbf.py                  a short run, 30 seconds: what CI does
    python3 tools/fuzz_nrbf.py --seconds 3600   a longer one

The reader is pure Python, so it runs on Linux CPython as it is (fuzz/fuzz_nrbf.py loads it
without copydata/__init__.py, which needs Windows). atheris goes into a venv of this Python in
.winenv/fuzz-nrbf/venv. New inputs go to .winenv/fuzz-nrbf/corpus, seeded from fuzz/corpus/nrbf;
a failing input is left in .winenv/fuzz-nrbf/ and fails the run with libFuzzer's exit code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".winenv" / "fuzz-nrbf"
VENV = WORK / "venv"
ATHERIS = "atheris==3.0.0"
TARGET = ROOT / "fuzz" / "fuzz_nrbf.py"
SEEDS = ROOT / "fuzz" / "corpus" / "nrbf"
# Per input: 10 s, 1 GiB at most, 64 KiB long (a receiver takes up to 2 MB; the bounds scale
# with the length, so short inputs find the same faults faster).
LIMITS = ["-timeout=10", "-rss_limit_mb=1024", "-max_len=65536"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30, help="how long to fuzz (default 30)")
    options = parser.parse_args()
    python = VENV / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", ATHERIS], check=True)
    corpus = WORK / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    command = [str(python), str(TARGET), f"-max_total_time={options.seconds}", f"-artifact_prefix={WORK}/",
               "-print_final_stats=1", *LIMITS, str(corpus), str(SEEDS)]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
