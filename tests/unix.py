"""Running a Linux program (Mono) from a Windows test process under Wine, for tests/test_nrbf.py.

Wine 8.0 runs a Linux executable that a Windows process starts with CreateProcessW (ntdll
forks and execs it), but returns no process handle, and hands it neither our pipes nor an exit
code. So the command runs inside /bin/sh with its output sent to files in a fresh folder, and
its exit status is written last, under a name that appears only when complete (a rename); we
wait for that file. ``timeout`` (coreutils) ends a command that would outlive our wait.
"""

from __future__ import annotations

import ctypes
import ctypes.wintypes
import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)


class _StartupInfo(ctypes.Structure):
    _fields_ = [("cb", ctypes.wintypes.DWORD), ("lpReserved", ctypes.wintypes.LPWSTR),
                ("lpDesktop", ctypes.wintypes.LPWSTR), ("lpTitle", ctypes.wintypes.LPWSTR),
                ("dwX", ctypes.wintypes.DWORD), ("dwY", ctypes.wintypes.DWORD), ("dwXSize", ctypes.wintypes.DWORD),
                ("dwYSize", ctypes.wintypes.DWORD), ("dwXCountChars", ctypes.wintypes.DWORD),
                ("dwYCountChars", ctypes.wintypes.DWORD), ("dwFillAttribute", ctypes.wintypes.DWORD),
                ("dwFlags", ctypes.wintypes.DWORD), ("wShowWindow", ctypes.wintypes.WORD),
                ("cbReserved2", ctypes.wintypes.WORD), ("lpReserved2", ctypes.c_void_p),
                ("hStdInput", ctypes.wintypes.HANDLE), ("hStdOutput", ctypes.wintypes.HANDLE),
                ("hStdError", ctypes.wintypes.HANDLE)]


class _ProcessInformation(ctypes.Structure):
    _fields_ = [("hProcess", ctypes.wintypes.HANDLE), ("hThread", ctypes.wintypes.HANDLE),
                ("dwProcessId", ctypes.wintypes.DWORD), ("dwThreadId", ctypes.wintypes.DWORD)]


class Completed(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def under_wine() -> bool:
    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


def unix_path(path: Path | str) -> str:
    """The Linux path of a Windows path, as Wine maps it."""
    function = _kernel32.wine_get_unix_file_name
    function.argtypes = [ctypes.wintypes.LPCWSTR]
    function.restype = ctypes.c_void_p
    pointer = function(str(Path(path).resolve()))
    if not pointer:
        raise OSError(f"Wine has no Linux path for {path}")
    try:
        return ctypes.string_at(pointer).decode()
    finally:
        _kernel32.HeapFree(_kernel32.GetProcessHeap(), 0, ctypes.c_void_p(pointer))


def run_unix(argv: list[str], timeout: float = 120.0) -> Completed:
    """Run a Linux command to its end and return its exit status and output (UTF-8)."""
    folder = Path(tempfile.mkdtemp(prefix="unix-"))
    out, err, status = (unix_path(folder / name) for name in ("out", "err", "status"))
    script = folder / "run.sh"
    script.write_text(f"timeout {int(timeout)} {shlex.join(argv)} > {shlex.quote(out)} 2> {shlex.quote(err)}\n"
                      f"echo $? > {shlex.quote(status)}.part && mv {shlex.quote(status)}.part {shlex.quote(status)}\n",
                      newline="\n")
    command = ctypes.create_unicode_buffer(f"Z:\\bin\\sh {unix_path(script)}")
    startup = _StartupInfo(cb=ctypes.sizeof(_StartupInfo))
    process = _ProcessInformation()
    if not _kernel32.CreateProcessW(None, command, None, None, False, 0, None, None,
                                    ctypes.byref(startup), ctypes.byref(process)):
        raise ctypes.WinError(ctypes.get_last_error(), "CreateProcessW of /bin/sh failed")
    for handle in (process.hProcess, process.hThread):
        if handle:  # Wine gives none for a Linux program; Windows would
            _kernel32.CloseHandle(handle)
    deadline = time.monotonic() + timeout + 10
    while not (folder / "status").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{argv} did not finish within {timeout} s")
        time.sleep(0.02)
    code = int((folder / "status").read_text().strip())
    result = Completed(code, (folder / "out").read_text("utf-8"), (folder / "err").read_text("utf-8"))
    for name in ("out", "err", "status", "run.sh"):
        os.unlink(folder / name)
    folder.rmdir()
    return result
