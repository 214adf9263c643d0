"""WM_COPYDATA written with ctypes alone: what a Python user without copydata would write."""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from ctypes import wintypes
from typing import Callable, Iterator

from payload import CHUNK_SIZE, chunks

LABEL = "ctypes WM_COPYDATA"
NOTE = ("ctypes window procedure (string_at copy) and ctypes SendMessageTimeoutW per message; "
        "payloads above 1 MiB in 1 MiB chunks")

WM_COPYDATA = 0x004A
WM_TIMER = 0x0113
HWND_MESSAGE = wintypes.HWND(-3)
SMTO_ABORTIFHUNG = 0x0002
SEND_TIMEOUT_MS = 30_000
WAKE_UP_MS = 250  # a timer wakes the loop so that a lost message ends in a report, not a hang

LRESULT = ctypes.c_ssize_t
WNDPROC = ctypes.WINFUNCTYPE(LRESULT, wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM)


class COPYDATASTRUCT(ctypes.Structure):
    _fields_ = [("dwData", ctypes.c_size_t), ("cbData", wintypes.DWORD), ("lpData", ctypes.c_void_p)]


class WNDCLASSW(ctypes.Structure):
    _fields_ = [("style", wintypes.UINT), ("lpfnWndProc", WNDPROC), ("cbClsExtra", ctypes.c_int),
                ("cbWndExtra", ctypes.c_int), ("hInstance", wintypes.HINSTANCE), ("hIcon", wintypes.HICON),
                ("hCursor", wintypes.HANDLE), ("hbrBackground", wintypes.HBRUSH),
                ("lpszMenuName", wintypes.LPCWSTR), ("lpszClassName", wintypes.LPCWSTR)]


user32 = ctypes.WinDLL("user32", use_last_error=True)
kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
user32.DefWindowProcW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM]
user32.DefWindowProcW.restype = LRESULT
user32.RegisterClassW.argtypes = [ctypes.POINTER(WNDCLASSW)]
user32.RegisterClassW.restype = wintypes.ATOM
user32.UnregisterClassW.argtypes = [wintypes.LPCWSTR, wintypes.HINSTANCE]
user32.CreateWindowExW.argtypes = [wintypes.DWORD, wintypes.LPCWSTR, wintypes.LPCWSTR, wintypes.DWORD,
                                   ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, wintypes.HWND,
                                   wintypes.HMENU, wintypes.HINSTANCE, wintypes.LPVOID]
user32.CreateWindowExW.restype = wintypes.HWND
user32.DestroyWindow.argtypes = [wintypes.HWND]
user32.SetTimer.argtypes = [wintypes.HWND, ctypes.c_size_t, wintypes.UINT, ctypes.c_void_p]
user32.SetTimer.restype = ctypes.c_size_t
user32.KillTimer.argtypes = [wintypes.HWND, ctypes.c_size_t]
user32.GetMessageW.argtypes = [ctypes.POINTER(wintypes.MSG), wintypes.HWND, wintypes.UINT, wintypes.UINT]
user32.DispatchMessageW.argtypes = [ctypes.POINTER(wintypes.MSG)]
user32.DispatchMessageW.restype = LRESULT
user32.PostQuitMessage.argtypes = [ctypes.c_int]
user32.SendMessageTimeoutW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM,
                                       wintypes.UINT, wintypes.UINT, ctypes.POINTER(ctypes.c_size_t)]
user32.SendMessageTimeoutW.restype = LRESULT
kernel32.GetModuleHandleW.argtypes = [wintypes.LPCWSTR]
kernel32.GetModuleHandleW.restype = wintypes.HMODULE


def serve(inbox) -> None:
    def window_procedure(hwnd, message, wparam, lparam):
        if message == WM_COPYDATA:
            cds = COPYDATASTRUCT.from_address(lparam)
            inbox.feed(ctypes.string_at(cds.lpData, cds.cbData))
            if inbox.finished:
                user32.PostQuitMessage(0)
            return 1
        return user32.DefWindowProcW(hwnd, message, wparam, lparam)

    procedure = WNDPROC(window_procedure)  # kept alive until the window is gone
    instance = kernel32.GetModuleHandleW(None)
    window_class = WNDCLASSW(lpfnWndProc=procedure, hInstance=instance,
                             lpszClassName="copydata-bench-ctypes-receiver")
    if not user32.RegisterClassW(ctypes.byref(window_class)):
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        hwnd = user32.CreateWindowExW(0, window_class.lpszClassName, "", 0, 0, 0, 0, 0, HWND_MESSAGE,
                                      None, instance, None)
        if not hwnd:
            raise ctypes.WinError(ctypes.get_last_error())
        try:
            user32.SetTimer(hwnd, 1, WAKE_UP_MS, None)
            inbox.ready(str(hwnd))
            message = wintypes.MSG()
            while not inbox.finished and user32.GetMessageW(ctypes.byref(message), None, 0, 0) > 0:
                user32.DispatchMessageW(ctypes.byref(message))
            user32.KillTimer(hwnd, 1)
        finally:
            user32.DestroyWindow(hwnd)
    finally:
        user32.UnregisterClassW(window_class.lpszClassName, instance)


@contextmanager
def connect(address: str) -> Iterator[Callable[[memoryview], None]]:
    hwnd = int(address)
    answer = ctypes.c_size_t()

    def send_one(message: memoryview) -> None:
        for chunk in chunks(message, CHUNK_SIZE):
            data = (ctypes.c_char * len(chunk)).from_buffer(chunk)  # the bytes where they lie
            cds = COPYDATASTRUCT(0, len(chunk), ctypes.addressof(data))
            if not user32.SendMessageTimeoutW(hwnd, WM_COPYDATA, 0, ctypes.addressof(cds), SMTO_ABORTIFHUNG,
                                              SEND_TIMEOUT_MS, ctypes.byref(answer)):
                raise ctypes.WinError(ctypes.get_last_error())
            if not answer.value:
                raise RuntimeError("the receiver refused a message")
            del data  # release the export of the payload buffer

    yield send_one
