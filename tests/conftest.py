"""Shared test fixtures: peers in their own processes, and counts of handles and threads."""

from __future__ import annotations

import ctypes
import ctypes.wintypes
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

PEER_SCRIPT = Path(__file__).with_name("peer.py")
_names = itertools.count()


def _start_wine_desktop_quietly() -> None:
    """Under Wine, the first process that needs the desktop window starts explorer.exe and
    hands it its own stderr; explorer lives as long as any other process does. If that first
    process is a child whose stderr is a pipe, the pipe never reaches end-of-file and
    communicate() hangs. So the test process starts the desktop itself, stderr set to NUL."""
    import copydata

    ntdll = ctypes.WinDLL("ntdll")
    if not hasattr(ntdll, "wine_get_version"):
        return
    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.CreateFileW.restype = ctypes.wintypes.HANDLE
    kernel32.GetStdHandle.restype = ctypes.wintypes.HANDLE
    STD_ERROR_HANDLE, GENERIC_WRITE, OPEN_EXISTING = -12, 0x40000000, 3
    nul = kernel32.CreateFileW("NUL", GENERIC_WRITE, 3, None, OPEN_EXISTING, 0, None)
    stderr = kernel32.GetStdHandle(STD_ERROR_HANDLE)
    kernel32.SetStdHandle(STD_ERROR_HANDLE, ctypes.wintypes.HANDLE(nul))
    try:
        copydata.Receiver().close()  # its window is the first that needs the desktop
    finally:
        kernel32.SetStdHandle(STD_ERROR_HANDLE, ctypes.wintypes.HANDLE(stderr))
        kernel32.CloseHandle(ctypes.wintypes.HANDLE(nul))


SOURCE_PACKAGE = Path(__file__).resolve().parent.parent / "copydata"


def imported_from_source_tree(module_file: str) -> bool:
    """Whether copydata was imported from this checkout's copydata/ folder."""
    return Path(module_file).resolve().parent == SOURCE_PACKAGE


def _check_copydata_is_installed() -> None:
    """tools/winenv.py test and build.bat set COPYDATA_EXPECT_INSTALLED=1: the suite then tests
    the installed package, and stops at once if it would test the checkout instead."""
    import copydata

    if os.environ.get("COPYDATA_EXPECT_INSTALLED") == "1" and imported_from_source_tree(copydata.__file__):
        pytest.exit(f"copydata was imported from the source tree ({copydata.__file__}), not from the "
                    f"installed wheel: run pytest from tests/, as tools/winenv.py test and build.bat do",
                    returncode=4)


if sys.platform == "win32":
    _check_copydata_is_installed()
    _start_wine_desktop_quietly()


class Peer:
    """A peer process (tests/peer.py) whose JSON reports are read with a timeout."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, str(PEER_SCRIPT), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8",
        )
        self.reports: queue.Queue[dict | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.reports.put(json.loads(line))
        self.reports.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def read(self, timeout: float = 60) -> dict:
        """The next report; fails the test if none comes in time or the peer ended."""
        try:
            item = self.reports.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"peer {self.args} sent no report within {timeout} s; stderr: {''.join(self.stderr)}")
        if item is None:
            self.process.wait(timeout=10)
            pytest.fail(f"peer {self.args} ended (exit code {self.process.returncode}); "
                        f"stderr: {''.join(self.stderr)}")
        return item

    def wait_ready(self) -> int:
        return self.read()["ready"]

    def finish(self, timeout: float = 60) -> list[dict]:
        """Close the peer's stdin, wait for it to exit cleanly, and return its last reports."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"peer {self.args} did not exit within {timeout} s")
        rest = []
        while (item := self.reports.get(timeout=10)) is not None:
            rest.append(item)
        assert code == 0, f"peer {self.args} exited with {code}; stderr: {''.join(self.stderr)}"
        return rest

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def receive_from_script(receiver, script: Path, source: str, count: int) -> list:
    """Runs ``source`` as a Windows Python script with the receiver's handle as its argument,
    receives ``count`` messages meanwhile, and checks that the script printed "done"."""
    script.write_text(source)
    process = subprocess.Popen([sys.executable, str(script), str(receiver.hwnd)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        received: list = []
        while len(received) < count:
            received.extend(receiver.recv_many(count - len(received), timeout=60))
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert (process.returncode, out.strip()) == (0, "done"), err
    return received


@pytest.fixture
def start_peer() -> Iterator:
    """start_peer(*args) -> Peer; every peer still running at the end of the test is killed."""
    peers: list[Peer] = []

    def start(*args: str) -> Peer:
        peer = Peer(*args)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.kill()


def _built_program(variable: str, source: str, name: str) -> str:
    """The path of SOURCE/NAME.c built for Windows, in the folder that $VARIABLE names; without
    it (a Windows machine with no mingw-w64) the test is skipped, never counted as passed."""
    folder = os.environ.get(variable)
    program = Path(folder or "", f"{name}.exe")
    if not folder or not program.exists():
        pytest.skip(f"{name}.exe is not built: tools/winenv.py builds {source} with mingw-w64")
    return str(program)


@pytest.fixture
def test_program() -> Iterator:
    """test_program(name, bits=64) -> the path of tests/native/NAME.c built for 64-bit Windows,
    or with bits=32 for 32-bit Windows (tools/winenv.py builds both, the 32-bit ones in the
    x86 folder under the one that COPYDATA_TEST_PROGRAMS names)."""

    def find(name: str, bits: int = 64) -> str:
        assert bits in (32, 64), bits
        return _built_program("COPYDATA_TEST_PROGRAMS", "tests/native/", name if bits == 64 else f"x86/{name}")

    yield find


@pytest.fixture
def bench_program() -> Iterator:
    """bench_program(name) -> the path of bench/native/NAME.c built for Windows (folder:
    COPYDATA_BENCH_NATIVE, which bench/run.py reads too)."""
    yield lambda name: _built_program("COPYDATA_BENCH_NATIVE", "bench/native/", name)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A receiver name that no other test or test run uses."""
    return f"copydata-test-{os.getpid()}-{next(_names)}-{request.node.name}"[:128]


# --- counting what a process holds ----------------------------------------------------------

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True) if sys.platform == "win32" else None
TH32CS_SNAPTHREAD = 0x4


class THREADENTRY32(ctypes.Structure):
    _fields_ = [("dwSize", ctypes.wintypes.DWORD), ("cntUsage", ctypes.wintypes.DWORD),
                ("th32ThreadID", ctypes.wintypes.DWORD), ("th32OwnerProcessID", ctypes.wintypes.DWORD),
                ("tpBasePri", ctypes.wintypes.LONG), ("tpDeltaPri", ctypes.wintypes.LONG),
                ("dwFlags", ctypes.wintypes.DWORD)]


class SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX(ctypes.Structure):
    _fields_ = [("Object", ctypes.c_void_p), ("UniqueProcessId", ctypes.c_size_t),
                ("HandleValue", ctypes.c_size_t), ("GrantedAccess", ctypes.wintypes.ULONG),
                ("CreatorBackTraceIndex", ctypes.wintypes.USHORT), ("ObjectTypeIndex", ctypes.wintypes.USHORT),
                ("HandleAttributes", ctypes.wintypes.ULONG), ("Reserved", ctypes.wintypes.ULONG)]


SystemExtendedHandleInformation = 64
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004


def process_handle_count() -> int:
    """Handles this process holds, from the system's handle table.

    GetProcessHandleCount answers 0 under Wine 8.0, so it cannot show a leak there;
    NtQuerySystemInformation lists every handle, on Windows and under Wine alike.
    """
    ntdll = ctypes.WinDLL("ntdll")
    size = 1 << 20
    while True:
        buffer = ctypes.create_string_buffer(size)
        status = ntdll.NtQuerySystemInformation(SystemExtendedHandleInformation, buffer, size, None)
        status &= 0xFFFFFFFF
        if status == STATUS_INFO_LENGTH_MISMATCH:
            size *= 2
            continue
        if status != 0:
            raise OSError(f"NtQuerySystemInformation failed with NTSTATUS {status:#x}")
        count = ctypes.c_size_t.from_buffer(buffer).value
        # SYSTEM_HANDLE_INFORMATION_EX: two ULONG_PTRs, then the entries
        entries = (SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX * count).from_buffer(buffer, 2 * ctypes.sizeof(ctypes.c_size_t))
        return sum(1 for entry in entries if entry.UniqueProcessId == os.getpid())


def os_thread_count() -> int:
    """Threads of this process as Windows counts them (the C pump threads included)."""
    _kernel32.CreateToolhelp32Snapshot.restype = ctypes.wintypes.HANDLE
    snapshot = _kernel32.CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0)
    if snapshot in (None, ctypes.wintypes.HANDLE(-1).value):
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        entry = THREADENTRY32()
        entry.dwSize = ctypes.sizeof(entry)
        count = 0
        more = _kernel32.Thread32First(ctypes.wintypes.HANDLE(snapshot), ctypes.byref(entry))
        while more:
            if entry.th32OwnerProcessID == os.getpid():
                count += 1
            more = _kernel32.Thread32Next(ctypes.wintypes.HANDLE(snapshot), ctypes.byref(entry))
        return count
    finally:
        _kernel32.CloseHandle(ctypes.wintypes.HANDLE(snapshot))


class PROCESS_MEMORY_COUNTERS_EX(__import__("ctypes").Structure):
    import ctypes as _c
    _fields_ = [("cb", _c.c_ulong), ("PageFaultCount", _c.c_ulong), ("PeakWorkingSetSize", _c.c_size_t),
                ("WorkingSetSize", _c.c_size_t), ("QuotaPeakPagedPoolUsage", _c.c_size_t),
                ("QuotaPagedPoolUsage", _c.c_size_t), ("QuotaPeakNonPagedPoolUsage", _c.c_size_t),
                ("QuotaNonPagedPoolUsage", _c.c_size_t), ("PagefileUsage", _c.c_size_t),
                ("PeakPagefileUsage", _c.c_size_t), ("PrivateUsage", _c.c_size_t)]


def private_bytes() -> int:
    """The process's commit charge (PagefileUsage): its private memory. Wine 8.0 leaves
    PrivateUsage at 0, so that field could never show a leak there."""
    import ctypes

    counters = PROCESS_MEMORY_COUNTERS_EX()
    counters.cb = ctypes.sizeof(counters)
    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.GetCurrentProcess.restype = ctypes.c_void_p
    assert kernel32.K32GetProcessMemoryInfo(ctypes.c_void_p(kernel32.GetCurrentProcess()), ctypes.byref(counters),
                                            counters.cb)
    return counters.PagefileUsage
