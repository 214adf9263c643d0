#!/usr/bin/env python3
"""Cross-compile the benchmark's native programs (bench/native/*.c) for Windows with mingw-w64.

    python3 bench/build_native.py OUTPUT_DIR [--cc x86_64-w64-mingw32-gcc] [--force]

Runs on the Linux side (Wine cannot run gcc); needs only Python 3.8+ and the mingw-w64 C
compiler. Each bench/native/NAME.c becomes OUTPUT_DIR/NAME.exe, rebuilt only when the .c file
or a header beside it is newer than the .exe. Prints the path of each program it built.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

NATIVE_SOURCES = Path(__file__).resolve().parent / "native"
DEFAULT_CC = "x86_64-w64-mingw32-gcc"
# -static: the programs need no mingw runtime DLL next to them, under Wine or on Windows.
CFLAGS = ["-O2", "-static", "-Wall", "-Wextra", "-DUNICODE", "-D_UNICODE", "-D_WIN32_WINNT=0x0601"]
LIBRARIES = ["-luser32", "-lkernel32"]


def is_current(program: Path, inputs: list[Path]) -> bool:
    if not program.exists():
        return False
    built = program.stat().st_mtime
    return all(path.stat().st_mtime <= built for path in inputs)


def build(output_dir: Path, cc: str = DEFAULT_CC, force: bool = False) -> list[Path]:
    """Build what is out of date; return the programs that were (re)built."""
    if shutil.which(cc) is None:
        raise SystemExit(f"build_native: {cc} not found (Debian: apt-get install mingw-w64)")
    output_dir.mkdir(parents=True, exist_ok=True)
    headers = sorted(NATIVE_SOURCES.glob("*.h"))
    built = []
    for source in sorted(NATIVE_SOURCES.glob("*.c")):
        program = output_dir / (source.stem + ".exe")
        if not force and is_current(program, [source, *headers]):
            continue
        # Compile to a temporary name so that an interrupted build never looks current.
        partial = program.with_suffix(".partial.exe")
        subprocess.run([cc, *CFLAGS, "-I", str(NATIVE_SOURCES), str(source), "-o", str(partial), *LIBRARIES],
                       check=True)
        partial.replace(program)
        built.append(program)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", type=Path, help="where the .exe files go (e.g. .winenv/build/bench)")
    parser.add_argument("--cc", default=DEFAULT_CC, help=f"the mingw-w64 C compiler (default {DEFAULT_CC})")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    options = parser.parse_args(argv)
    try:
        for program in build(options.output_dir, options.cc, options.force):
            print(program)
    except subprocess.CalledProcessError as error:
        print(f"build_native: {error.cmd[0]} failed with exit code {error.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
