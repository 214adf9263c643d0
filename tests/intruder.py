"""A foreign process that sends a receiver's window what any process of the desktop can send it.

    python intruder.py HWND ATTACK [ATTACK ...] [--seed N]

Attacks:
    nccreate-null    WM_NCCREATE whose CREATESTRUCT has lpCreateParams NULL (Windows and Wine
                     marshal CREATESTRUCT across processes)
    nccreate-wild    the same with a wild lpCreateParams
    create           WM_CREATE with a wild lpCreateParams
    userdata-wild    SetWindowLongPtrW(GWLP_USERDATA) to a wild value, then GWLP_WNDPROC
    quit-posted      WM_QUIT posted to the window, and to its thread
    destroy          WM_DESTROY and WM_NCDESTROY sent
    close            WM_CLOSE sent and posted
    settext          WM_SETTEXT sent
    timer-wild       WM_TIMER posted with the sweep's id and a wild TIMERPROC in lParam
    copydata-null    WM_COPYDATA with a NULL COPYDATASTRUCT
    sweep            every message below WM_USER, sent and posted, with zero and random parameters

Reports one JSON object: {"attacks": [...], "sent": N, "faults": N} (faults: sends that made this
process read its own wild pointer while marshalling, which ctypes reports as OSError).
"""

from __future__ import annotations

import ctypes
import ctypes.wintypes as wt
import json
import random
import sys

user32 = ctypes.WinDLL("user32", use_last_error=True)
user32.SendMessageTimeoutW.argtypes = [wt.HWND, wt.UINT, wt.WPARAM, wt.LPARAM, wt.UINT, wt.UINT,
                                       ctypes.POINTER(ctypes.c_size_t)]
user32.SendMessageTimeoutW.restype = ctypes.c_ssize_t
user32.PostMessageW.argtypes = [wt.HWND, wt.UINT, wt.WPARAM, wt.LPARAM]
user32.PostThreadMessageW.argtypes = [wt.DWORD, wt.UINT, wt.WPARAM, wt.LPARAM]
user32.GetWindowThreadProcessId.argtypes = [wt.HWND, ctypes.POINTER(wt.DWORD)]
user32.GetWindowThreadProcessId.restype = wt.DWORD
user32.SetWindowLongPtrW.argtypes = [wt.HWND, ctypes.c_int, ctypes.c_ssize_t]
user32.SetWindowLongPtrW.restype = ctypes.c_ssize_t

WM_CREATE, WM_DESTROY, WM_SETTEXT, WM_CLOSE, WM_QUIT = 0x0001, 0x0002, 0x000C, 0x0010, 0x0012
WM_COPYDATA, WM_NCCREATE, WM_NCDESTROY, WM_TIMER, WM_USER = 0x004A, 0x0081, 0x0082, 0x0113, 0x0400
GWLP_WNDPROC, GWLP_USERDATA = -4, -21
SMTO_ABORTIFHUNG = 0x0002
PART_SWEEP_TIMER = 1  # the receiver's own timer id (csrc)
WILD = 0x0000_4141_4141_4140


class CREATESTRUCTW(ctypes.Structure):
    _fields_ = [("lpCreateParams", ctypes.c_void_p), ("hInstance", wt.HINSTANCE), ("hMenu", wt.HMENU),
                ("hwndParent", wt.HWND), ("cy", ctypes.c_int), ("cx", ctypes.c_int), ("y", ctypes.c_int),
                ("x", ctypes.c_int), ("style", wt.LONG), ("lpszName", wt.LPCWSTR), ("lpszClass", wt.LPCWSTR),
                ("dwExStyle", wt.DWORD)]


class Intruder:
    def __init__(self, hwnd: int) -> None:
        self.hwnd = hwnd
        self.sent = 0
        self.faults = 0

    def send(self, message: int, wparam: int = 0, lparam: int = 0) -> None:
        answer = ctypes.c_size_t()
        try:
            user32.SendMessageTimeoutW(self.hwnd, message, wparam, lparam, SMTO_ABORTIFHUNG, 500,
                                       ctypes.byref(answer))
        except OSError:  # marshalling read a wild pointer of ours
            self.faults += 1
        self.sent += 1

    def post(self, message: int, wparam: int = 0, lparam: int = 0) -> None:
        user32.PostMessageW(self.hwnd, message, wparam, lparam)
        self.sent += 1

    def create_struct(self, params: int) -> int:
        self._kept = CREATESTRUCTW(lpCreateParams=params or None, lpszName="intruder")
        return ctypes.addressof(self._kept)


def attack(intruder: Intruder, name: str, rng: random.Random) -> None:
    hwnd = intruder.hwnd
    if name == "nccreate-null":
        intruder.send(WM_NCCREATE, 0, intruder.create_struct(0))
    elif name == "nccreate-wild":
        intruder.send(WM_NCCREATE, 0, intruder.create_struct(WILD))
    elif name == "create":
        intruder.send(WM_CREATE, 0, intruder.create_struct(WILD))
    elif name == "userdata-wild":
        user32.SetWindowLongPtrW(hwnd, GWLP_USERDATA, WILD)
        user32.SetWindowLongPtrW(hwnd, GWLP_WNDPROC, WILD)
        intruder.sent += 2
    elif name == "quit-posted":
        intruder.post(WM_QUIT)
        thread = user32.GetWindowThreadProcessId(hwnd, None)
        user32.PostThreadMessageW(thread, WM_QUIT, 0, 0)
        intruder.sent += 1
    elif name == "destroy":
        intruder.send(WM_DESTROY)
        intruder.send(WM_NCDESTROY)
    elif name == "close":
        intruder.send(WM_CLOSE)
        intruder.post(WM_CLOSE)
    elif name == "settext":
        text = ctypes.create_unicode_buffer("taken over")
        intruder.send(WM_SETTEXT, 0, ctypes.addressof(text))
    elif name == "timer-wild":
        intruder.post(WM_TIMER, PART_SWEEP_TIMER, WILD)
        intruder.post(WM_TIMER, 7, WILD)
    elif name == "copydata-null":
        intruder.send(WM_COPYDATA, 0, 0)
    elif name == "sweep":
        for message in range(WM_USER):
            intruder.send(message)
            intruder.post(message)
            intruder.send(message, rng.getrandbits(32), rng.getrandbits(64))
            intruder.post(message, rng.getrandbits(64), rng.getrandbits(64))
    else:
        raise SystemExit(f"unknown attack {name!r}")


def main() -> None:
    args = sys.argv[1:]
    seed = 1
    if "--seed" in args:
        at = args.index("--seed")
        seed = int(args[at + 1])
        del args[at:at + 2]
    hwnd, names = int(args[0], 0), args[1:]
    intruder = Intruder(hwnd)
    rng = random.Random(seed)
    for name in names:
        attack(intruder, name, rng)
    print(json.dumps({"attacks": names, "sent": intruder.sent, "faults": intruder.faults}), flush=True)


if __name__ == "__main__":
    main()
