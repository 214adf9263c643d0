"""Building, for tools/winenv.py: the C programs that the tests and the benchmark run, and
copydata/_core.pyd, cross-compiled with mingw-w64 from the cffi description setup.py uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dotnet  # tools/dotnet.py: Mono, for the nrbf codec's tests
import strict_c  # tools/strict_c.py: csrc/ as ISO C11
from _winenv_wine import (BENCH_PROGRAMS, BUILD_DIR, BUILD_PYTHON, EXTENSION, MINGW_GCC, MINGW_GCC_32, ROOT,
                          TEST_PROGRAMS, log, run, setup, windows_python)

BUILD_INPUTS = [ROOT / "copydata" / "_ffi_build.py", ROOT / "csrc" / "copydata.cdef",
                *sorted((ROOT / "csrc").glob("*.[ch]"))]
# Plain Win32 C programs: foreign WM_COPYDATA peers for the tests, the C floor and memcpy for
# the benchmark (SOURCE/NAME.c -> BUILT/NAME.exe).
TEST_PROGRAMS_SOURCE = ROOT / "tests" / "native"
BENCH_PROGRAMS_SOURCE = ROOT / "bench" / "native"
# -static: the programs need no mingw runtime DLL beside them, under Wine or on Windows.
PROGRAM_FLAGS = ["-O2", "-static", "-Wall", "-Wextra"]
GCC_FLAGS = ["-O2", "-shared", "-static-libgcc", "-Wall", "-Wextra", "-Wno-unused-parameter"]
WINDOWS_LIBRARIES = ["-luser32", "-lkernel32", "-ladvapi32", "-lbcrypt"]


def extension_is_current() -> bool:
    if not EXTENSION.exists():
        return False
    built = EXTENSION.stat().st_mtime
    return all(path.stat().st_mtime <= built for path in BUILD_INPUTS)


def build_programs(sources: Path, output: Path, compiler: str = MINGW_GCC) -> None:
    """Compile each SOURCES/NAME.c into OUTPUT/NAME.exe, when it or a header beside it changed."""
    output.mkdir(parents=True, exist_ok=True)
    headers = sorted(sources.glob("*.h"))
    for source in sorted(sources.glob("*.c")):
        program = output / f"{source.stem}.exe"
        if program.exists() and all(path.stat().st_mtime <= program.stat().st_mtime for path in [source, *headers]):
            continue
        log(f"compiling {program.relative_to(ROOT)}")
        run([compiler, *PROGRAM_FLAGS, str(source), "-o", str(program), "-luser32", "-lkernel32"])


def check_strict_c() -> None:
    """csrc/ as ISO C11 with GNU extensions as errors, for both Windows targets (tools/strict_c.py):
    MSVC compiles it on Windows, and has never run here."""
    log("checking csrc/ as ISO C11 for 64-bit and 32-bit Windows (tools/strict_c.py)")
    found = strict_c.problems()
    if found:
        sys.exit("[winenv] csrc/ is not plain ISO C:\n" + "\n".join(found))


def build(force: bool = False) -> None:
    setup()
    build_programs(TEST_PROGRAMS_SOURCE, TEST_PROGRAMS)
    # The same peers as 32-bit programs (conftest's test_program(name, bits=32)).
    build_programs(TEST_PROGRAMS_SOURCE, TEST_PROGRAMS / "x86", MINGW_GCC_32)
    # The tests check the benchmark's C receiver too: its count of intact messages is what
    # every benchmark figure rests on.
    build_programs(BENCH_PROGRAMS_SOURCE, BENCH_PROGRAMS)
    dotnet.build_programs()
    if extension_is_current() and not force:
        return
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    check_strict_c()
    generated = BUILD_DIR / "_core.c"
    log("generating the cffi module source from copydata/_ffi_build.py")
    # The same cffi description that setup.py uses; any Python with cffi can emit it.
    code = windows_python([str(ROOT / "copydata" / "_ffi_build.py"), "--emit-c", str(generated)])
    if code != 0:
        sys.exit(f"[winenv] copydata/_ffi_build.py failed with exit code {code}")
    log(f"compiling {EXTENSION.relative_to(ROOT)} with {MINGW_GCC}")
    sources = [str(path) for path in sorted((ROOT / "csrc").glob("*.c"))]
    run([MINGW_GCC, *GCC_FLAGS, "-I", str(BUILD_PYTHON.directory / "include"), "-I", str(ROOT / "csrc"),
         str(generated), *sources, "-o", str(EXTENSION),
         str(BUILD_PYTHON.directory / "libs" / "python3.lib"), *WINDOWS_LIBRARIES])
