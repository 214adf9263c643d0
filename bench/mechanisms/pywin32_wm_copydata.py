"""WM_COPYDATA written with pywin32 (win32gui): what a pywin32 user would write."""

from __future__ import annotations

import struct
from contextlib import contextmanager
from typing import Callable, Iterator

from payload import CHUNK_SIZE, chunks

LABEL = "pywin32 WM_COPYDATA"
NOTE = ("win32gui window procedure (PyGetMemory copy) and win32gui.SendMessageTimeout per message; "
        "payloads above 1 MiB in 1 MiB chunks")

# COPYDATASTRUCT on 64-bit Windows: ULONG_PTR dwData, DWORD cbData, (padding), PVOID lpData
COPYDATASTRUCT = struct.Struct("<QL4xQ")
SEND_TIMEOUT_MS = 30_000
WAKE_UP_MS = 250  # the loop wakes up now and then, so a lost message ends in a report


def unavailable() -> str | None:
    try:
        import win32gui  # noqa: F401
    except ImportError:
        return "pywin32 is not installed"
    return None


def serve(inbox) -> None:
    import win32api
    import win32con
    import win32event
    import win32gui

    def window_procedure(hwnd: int, message: int, wparam: int, lparam: int) -> int:
        if message == win32con.WM_COPYDATA:
            _, size, address = COPYDATASTRUCT.unpack(win32gui.PyGetMemory(lparam, COPYDATASTRUCT.size))
            inbox.feed(bytes(win32gui.PyGetMemory(address, size)) if size else b"")
            return 1
        return win32gui.DefWindowProc(hwnd, message, wparam, lparam)

    window_class = win32gui.WNDCLASS()
    window_class.lpszClassName = "copydata-bench-pywin32-receiver"
    window_class.lpfnWndProc = window_procedure
    window_class.hInstance = win32api.GetModuleHandle(None)
    atom = win32gui.RegisterClass(window_class)
    try:
        hwnd = win32gui.CreateWindow(atom, "", 0, 0, 0, 0, 0, win32con.HWND_MESSAGE, 0,
                                     window_class.hInstance, None)
        try:
            inbox.ready(str(hwnd))
            while not inbox.finished:
                win32event.MsgWaitForMultipleObjects([], False, WAKE_UP_MS, win32event.QS_ALLINPUT)
                win32gui.PumpWaitingMessages()  # sent messages are dispatched in here
        finally:
            win32gui.DestroyWindow(hwnd)
    finally:
        win32gui.UnregisterClass(atom, window_class.hInstance)


@contextmanager
def connect(address: str) -> Iterator[Callable[[memoryview], None]]:
    import win32con
    import win32gui

    hwnd = int(address)

    def send_one(message: memoryview) -> None:
        for chunk in chunks(message, CHUNK_SIZE):
            chunk_address, _ = win32gui.PyGetBufferAddressAndLen(chunk)
            cds = COPYDATASTRUCT.pack(0, len(chunk), chunk_address)
            _, answer = win32gui.SendMessageTimeout(hwnd, win32con.WM_COPYDATA, 0, cds,
                                                   win32con.SMTO_ABORTIFHUNG, SEND_TIMEOUT_MS)
            if not answer:
                raise RuntimeError("the receiver refused a message")

    yield send_one
