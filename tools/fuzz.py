#!/usr/bin/env python3
"""Fuzz copydata's frame parsers (csrc/frames.c) and replay table (csrc/replay.c) natively on
Linux: libFuzzer, ASan, UBSan.

    python3 tools/fuzz.py                  a short run, 30 seconds: what CI does
    python3 tools/fuzz.py --seconds 3600   a longer one

The parsers are plain C over a byte buffer, so they build on Linux as they are. Installs
Debian's clang and libclang-rt-14-dev if clang is missing (root only). New inputs go to
.winenv/fuzz/corpus, seeded from fuzz/corpus/frames; a crash leaves its input in .winenv/fuzz/
and fails the run with libFuzzer's exit code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".winenv" / "fuzz"
TARGET = WORK / "fuzz_frames"
SOURCES = [ROOT / "fuzz" / "fuzz_frames.c", ROOT / "csrc" / "frames.c", ROOT / "csrc" / "replay.c"]
SEEDS = ROOT / "fuzz" / "corpus" / "frames"
FLAGS = ["-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all", "-Wall", "-Wextra"]


def ensure_clang() -> None:
    if shutil.which("clang"):
        return
    if os.geteuid() != 0:
        sys.exit("[fuzz] clang is missing: sudo apt-get install clang libclang-rt-14-dev")
    print("[fuzz] installing clang and libclang-rt-14-dev with apt-get (once)", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "clang", "libclang-rt-14-dev"], env=env, check=True)


def build() -> None:
    inputs = [*SOURCES, ROOT / "csrc" / "copydata.h", ROOT / "csrc" / "frames.h"]
    if TARGET.exists() and all(path.stat().st_mtime <= TARGET.stat().st_mtime for path in inputs):
        return
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run(["clang", *FLAGS, "-I", str(ROOT / "csrc"), *map(str, SOURCES), "-o", str(TARGET)], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30, help="how long to fuzz (default 30)")
    options = parser.parse_args()
    ensure_clang()
    build()
    corpus = WORK / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    command = [str(TARGET), f"-max_total_time={options.seconds}", f"-artifact_prefix={WORK}/",
               "-print_final_stats=1", str(corpus), str(SEEDS)]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
