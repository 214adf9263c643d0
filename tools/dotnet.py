#!/usr/bin/env python3
"""Mono for the nrbf codec's tests: .NET's own BinaryFormatter, run natively on Linux.

    python3 tools/dotnet.py              install Mono if missing and build the C# test programs

tools/winenv.py calls ensure_mono() from setup and build_programs() from build, and names the
folder of the built programs in COPYDATA_DOTNET_PROGRAMS (a Linux path) for the tests. Mono
cannot reach Wine's windows, so the tests, in Windows Python under Wine, start Mono as a Linux
program (Wine runs a Linux executable that a Windows process starts, without a process handle)
and trade bytes with it through files: see tests/unix.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "tests" / "dotnet"
PROGRAMS = ROOT / ".winenv" / "build" / "dotnet"
# Debian's Mono, enough for mcs and BinaryFormatter (about 40 MB).
APT_PACKAGES = ["mono-mcs", "mono-runtime", "libmono-corlib4.5-cil"]


def log(message: str) -> None:
    print(f"[dotnet] {message}", file=sys.stderr, flush=True)


def ensure_mono() -> None:
    """Install Debian's Mono with apt-get when mcs or mono is missing (root only)."""
    if shutil.which("mcs") and shutil.which("mono"):
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES]
    if os.geteuid() != 0:
        sys.exit(f"[dotnet] Mono is missing; install it with: sudo apt-get update && sudo {' '.join(command)}")
    log(f"installing {' '.join(APT_PACKAGES)} with apt-get (once)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run([*command, "-qq"], env=env, check=True)


def build_programs(output: Path = PROGRAMS) -> None:
    """Compile each tests/dotnet/NAME.cs into OUTPUT/NAME.exe with mcs, when it changed."""
    output.mkdir(parents=True, exist_ok=True)
    for source in sorted(SOURCES.glob("*.cs")):
        program = output / f"{source.stem}.exe"
        if program.exists() and source.stat().st_mtime <= program.stat().st_mtime:
            continue
        log(f"compiling {program.relative_to(ROOT)} with mcs")
        subprocess.run(["mcs", "-nologo", "-warnaserror", "-out:" + str(program), str(source)], check=True)


if __name__ == "__main__":
    ensure_mono()
    build_programs()
