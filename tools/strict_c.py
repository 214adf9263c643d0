#!/usr/bin/env python3
"""Compile csrc/ as ISO C11, with GNU extensions as errors, for 64-bit and 32-bit Windows.

    python3 tools/strict_c.py

MSVC compiles csrc/ on Windows (setup.py, build.bat, cibuildwheel), and has never run here,
so csrc/ must be plain ISO C: no GNU extensions (statement expressions, zero-length arrays,
case ranges, arithmetic on void *, ...: -pedantic-errors), no VLAs (optional in C11, absent
from MSVC: -Wvla), and none of the GNU-only words of GNU_ONLY_WORDS, which -pedantic lets
through. Both mingw-w64 compilers check it (tools/winenv.py installs them if missing), with
-fsyntax-only: nothing is built.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
COMPILERS = ["x86_64-w64-mingw32-gcc", "i686-w64-mingw32-gcc"]
STRICT_FLAGS = ["-std=c11", "-pedantic-errors", "-Werror", "-Wall", "-Wextra", "-Wvla", "-fsyntax-only"]
GNU_ONLY_WORDS = re.compile(r"\b(__builtin_\w+|__attribute__|__typeof__|typeof|__sync_\w+|__atomic_\w+|"
                            r"__int128|__asm__|asm|__label__|__auto_type)\b")
COMMENTS_AND_STRINGS = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def gnu_only_words(path: Path) -> list[str]:
    """file:line: word, for each GNU-only word in the code of a C file (comments and strings aside)."""
    text = path.read_text(encoding="utf-8")
    code = COMMENTS_AND_STRINGS.sub(lambda match: re.sub(r"[^\n]", " ", match.group()), text)
    return [f"{path.relative_to(ROOT)}:{code.count(chr(10), 0, match.start()) + 1}: GNU-only {match.group()!r}"
            for match in GNU_ONLY_WORDS.finditer(code)]


def problems() -> list[str]:
    """What keeps csrc/ from being plain ISO C, for each compiler: [] when nothing does."""
    found = []
    sources = sorted(CSRC.glob("*.c"))
    for compiler in COMPILERS:
        for source in sources:
            result = subprocess.run([compiler, *STRICT_FLAGS, "-I", str(CSRC), str(source)],
                                    capture_output=True, text=True, cwd=ROOT)
            if result.returncode != 0:
                found.append(f"{compiler} {' '.join(STRICT_FLAGS)} {source.relative_to(ROOT)}:\n{result.stderr}")
    return found + [line for path in sorted(CSRC.glob("*.[ch]")) for line in gnu_only_words(path)]


def main() -> int:
    import _winenv_wine  # tools/winenv.py's set-up, which imports this module

    _winenv_wine.ensure_host_packages()
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    print(f"[strict_c] {len(found)} problems in csrc/ with {', '.join(COMPILERS)}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
