"""The wheel, and the test suites run against it as installed, for tools/winenv.py: the wheel
and the sdist built in Windows CPython, copies of Windows CPython with it installed by pip, the
suite and the smoke suite run in them, and build.bat as on Windows.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import zipfile
from pathlib import Path

from _winenv_build import build
from _winenv_wine import (BUILD_PYTHON, BUILD_REQUIREMENTS, ENV_DIR, EXTENSION, REQUIREMENTS, ROOT, WHEELS,
                          WindowsPython, ensure_windows_packages, ensure_windows_python, log, requirements_for, run,
                          windows_path, windows_pip, windows_python)

DIST = ROOT / "dist"
# Copies that get the wheel installed, as a user installs it, and run the tests against it:
# the whole suite on 3.11, the smoke suite on the oldest and newest CPython the sdists hold.
SUITE_PYTHON = WindowsPython("3.11", "3.11.1", ENV_DIR / "installed-3.11")
SMOKE_PYTHONS = [WindowsPython("3.9", "3.9.1", ENV_DIR / "installed-3.9"),
                 WindowsPython("3.13", "3.13.1", ENV_DIR / "installed-3.13")]


# --- the wheel ------------------------------------------------------------------------------

# What goes into the sdist and the wheel: a change to any of them makes a new wheel.
def wheel_inputs() -> list[Path]:
    names = ["setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE", "build.bat"]
    return [*(ROOT / name for name in names), *sorted((ROOT / "docs").rglob("*.md")),
            *sorted((ROOT / "copydata").glob("*.py")),
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
