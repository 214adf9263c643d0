"""A second process for the tests: receives or sends WM_COPYDATA and reports in JSON lines.

    python peer.py serve [NAME] [--sync-sleep S] [--max-message-size N] [--codec C] [--raw]
                         [--allow-pickle] [--channel CHANNEL ...] [--fail-tag TAG] [--key HEX]
    python peer.py send TARGET TAG:SIZE:SEED ... [--key HEX]
    python peer.py send-value TARGET CODEC JSON [--tag N] [--raw]
    python peer.py send-raw TARGET HEX ... [--tag N] [--sender HWND]   each payload as it is, answers reported
    python peer.py send-evil-pickle TARGET PATH
    python peer.py request TARGET CODEC JSON [--tag N] [--allow-pickle] [--key HEX]
    python peer.py stream TARGET TAG:SIZE:SEED ... [--key HEX] [--chunk-size N] [--no-shm]
                                                  [--max-batch-bytes N] [--shm-threshold N]
                                                  [--sequence COUNT]
                         one Sender for every spec, in order (large ones in parts or shared memory)
    python peer.py burst TARGET COUNT
    python peer.py pywin32-serve
    python peer.py hang                 a window whose thread never pumps its messages
    python peer.py squat NAME [--sddl SDDL] [--reserve]   a name's slot made first, an impostor in it
    python peer.py pywin32-send TARGET TAG:SIZE:SEED ...

Every report is one JSON object on stdout. A serving peer first reports {"ready": hwnd},
then one {"tag", "size", "sha256", "sender"} per bytes message ({"tag", "value", "sender",
"codec"} for decoded ones, with "request": true for requests), and ends when stdin closes.
It replies to requests with reply_for(data), or fails those tagged --fail-tag; in sync mode a
plain message is answered 1000 + its tag.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import struct
import sys
import time

QUIT_TAG = 0xC0DA_0001  # tells a pywin32 peer to end its message loop


def payload(size: int, seed: int) -> bytes:
    """The bytes a test expects for (size, seed), the same in every process."""
    return random.Random(seed).randbytes(size)


def report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def describe(tag: int, data: object, sender: int, codec: str = "bytes", request: bool = False) -> dict:
    if isinstance(data, bytes):
        report = {"tag": tag, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "sender": sender}
        if codec != "bytes":
            report["codec"] = codec
    else:
        try:
            json.dumps(data)
            value = data
        except TypeError:
            value = repr(data)
        report = {"tag": tag, "value": value, "sender": sender, "codec": codec}
    if request:
        report["request"] = True
    return report


def reply_for(data: object) -> object:
    """What a serving peer answers a request with."""
    if isinstance(data, bytes):
        return data[::-1]
    if isinstance(data, str):
        return data.upper()
    return {"echo": data}


class Evil:
    """Unpickling this creates a folder: proof that a pickle ran code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


def parse_specs(specs: list[str]) -> list[tuple[int, int, int]]:
    return [tuple(int(part) for part in spec.split(":")) for spec in specs]  # type: ignore[misc]


def sequence(count: int) -> list[tuple[int, int, int]]:
    """Specs for ``stream --sequence COUNT``: message n has tag n, 16 + n % 200 bytes, seed n."""
    return [(n, 16 + n % 200, n) for n in range(count)]


def parse_key(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def parse_target(text: str) -> int | str:
    return int(text, 0) if text[:1].isdigit() else text


def serve(options: argparse.Namespace) -> None:
    import copydata

    def on_message(message: copydata.Message) -> object:
        report(**describe(message.tag, message.data, message.sender, message.codec, message.is_request))
        if options.sync_sleep:
            time.sleep(options.sync_sleep)
        if message.tag == options.fail_tag:
            raise ValueError(f"tag {message.tag} is refused")
        if message.is_request:
            return reply_for(message.data)
        return 1000 + message.tag  # in sync mode, the sender sees this LRESULT

    with copydata.Receiver(options.name, on_message=on_message, sync=options.sync_sleep > 0,
                           max_message_size=options.max_message_size, codec=options.codec,
                           raw=options.raw, allow_pickle=options.allow_pickle,
                           channels=options.channel, key=parse_key(options.key)) as receiver:
        report(ready=receiver.hwnd)
        sys.stdin.read()  # until the test closes our stdin
    report(stats=receiver.stats._asdict())


def send(options: argparse.Namespace) -> None:
    import copydata

    for tag, size, seed in parse_specs(options.specs):
        try:
            result = copydata.send(parse_target(options.target), payload(size, seed), tag=tag,
                                   key=parse_key(options.key))
            report(result=result)
        except copydata.CopyDataError as error:
            report(error=type(error).__name__, message=str(error))


def burst(options: argparse.Namespace) -> None:
    import copydata

    target = copydata.find(options.target) if not options.target[:1].isdigit() else int(options.target, 0)
    started = time.perf_counter()
    for sequence in range(options.count):
        copydata.send(target, struct.pack("<Q", sequence) * 8, tag=sequence)
    report(sent=options.count, seconds=time.perf_counter() - started)


def stream(options: argparse.Namespace) -> None:
    import copydata

    try:
        with copydata.Sender(parse_target(options.target), key=parse_key(options.key), timeout=30,
                             chunk_size=options.chunk_size, max_batch_bytes=options.max_batch_bytes,
                             shm_threshold=None if options.no_shm else options.shm_threshold) as sender:
            specs = parse_specs(options.specs) + sequence(options.sequence)
            for tag, size, seed in specs:
                sender.send(payload(size, seed), tag=tag)
        report(sent=len(specs))
    except copydata.CopyDataError as error:
        report(error=type(error).__name__, message=str(error))


def send_raw(options: argparse.Namespace) -> None:
    """Each HEX payload as one plain WM_COPYDATA (a frame built by the test, say), in order."""
    import copydata

    for text in options.payloads:
        try:
            report(result=copydata.send(parse_target(options.target), bytes.fromhex(text), tag=options.tag,
                                        sender=options.sender, check=False))
        except copydata.CopyDataError as error:
            report(error=type(error).__name__, message=str(error))


def send_value(options: argparse.Namespace) -> None:
    import copydata

    result = copydata.send(parse_target(options.target), json.loads(options.value), tag=options.tag,
                           codec=options.codec, raw=options.raw)
    report(result=result)


def send_evil_pickle(options: argparse.Namespace) -> None:
    import copydata

    try:
        result = copydata.send(parse_target(options.target), Evil(options.path), codec="pickle")
        report(result=result)
    except copydata.CopyDataError as error:
        report(error=type(error).__name__)


def request(options: argparse.Namespace) -> None:
    import copydata

    try:
        reply = copydata.request(parse_target(options.target), json.loads(options.value), tag=options.tag,
                                 codec=options.codec, allow_pickle=options.allow_pickle, timeout=10,
                                 key=parse_key(options.key))
        report(reply=describe(reply.tag, reply.data, reply.sender, reply.codec))
    except copydata.CopyDataError as error:
        report(error=type(error).__name__, message=str(error))


def pywin32_serve(options: argparse.Namespace) -> None:
    import win32api
    import win32con
    import win32gui

    def window_proc(hwnd: int, msg: int, wparam: int, lparam: int) -> int:
        if msg == win32con.WM_COPYDATA:
            # COPYDATASTRUCT on 64-bit Windows: ULONG_PTR dwData, DWORD cbData, PVOID lpData
            tag, size, address = struct.unpack("<QL4xQ", win32gui.PyGetMemory(lparam, 24))
            data = bytes(win32gui.PyGetMemory(address, size)) if size else b""
            if tag == QUIT_TAG:
                win32gui.PostQuitMessage(0)
            else:
                report(**describe(tag, data, wparam))
            return 1
        return win32gui.DefWindowProc(hwnd, msg, wparam, lparam)

    window_class = win32gui.WNDCLASS()
    window_class.lpszClassName = "copydata-tests-pywin32-peer"
    window_class.lpfnWndProc = window_proc
    window_class.hInstance = win32api.GetModuleHandle(None)
    atom = win32gui.RegisterClass(window_class)
    hwnd = win32gui.CreateWindow(atom, "pywin32 peer", 0, 0, 0, 0, 0, win32con.HWND_MESSAGE, 0,
                                 window_class.hInstance, None)
    report(ready=hwnd)
    win32gui.PumpMessages()
    win32gui.DestroyWindow(hwnd)
    report(done=True)


def hang(options: argparse.Namespace) -> None:
    import win32con
    import win32gui

    hwnd = win32gui.CreateWindow("STATIC", "hung peer", 0, 0, 0, 0, 0, win32con.HWND_MESSAGE, 0, 0, None)
    report(ready=hwnd)
    time.sleep(120)  # never pumps: a hung receiver


def squat(options: argparse.Namespace) -> None:
    """Makes a receiver name's slot before anyone claims it, with the security descriptor given
    (or the default one), and puts a window of its own there (of copydata's window class, which
    any process can register), as a process that wants another's messages would."""
    import ctypes
    import ctypes.wintypes as wt

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    user32 = ctypes.WinDLL("user32", use_last_error=True)
    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32.CreateFileMappingW.restype = wt.HANDLE
    kernel32.MapViewOfFile.restype = ctypes.c_void_p
    user32.CreateWindowExW.restype = wt.HWND
    user32.DefWindowProcW.restype = ctypes.c_ssize_t
    user32.DefWindowProcW.argtypes = [wt.HWND, wt.UINT, wt.WPARAM, wt.LPARAM]
    procedure_type = ctypes.WINFUNCTYPE(ctypes.c_ssize_t, wt.HWND, wt.UINT, wt.WPARAM, wt.LPARAM)
    procedure = procedure_type(lambda hwnd, msg, wparam, lparam: user32.DefWindowProcW(hwnd, msg, wparam, lparam))

    class WNDCLASSW(ctypes.Structure):
        _fields_ = [("style", wt.UINT), ("lpfnWndProc", procedure_type), ("cbClsExtra", ctypes.c_int),
                    ("cbWndExtra", ctypes.c_int), ("hInstance", wt.HINSTANCE), ("hIcon", wt.HICON),
                    ("hCursor", wt.HANDLE), ("hbrBackground", wt.HBRUSH), ("lpszMenuName", wt.LPCWSTR),
                    ("lpszClassName", wt.LPCWSTR)]

    window_class = WNDCLASSW(lpfnWndProc=procedure, lpszClassName="copydata.receiver.v1")
    if not user32.RegisterClassW(ctypes.byref(window_class)):
        raise ctypes.WinError(ctypes.get_last_error())
    hwnd = user32.CreateWindowExW(0, "copydata.receiver.v1", "impostor", 0, 0, 0, 0, 0, wt.HWND(-3), None, None,
                                  None)  # HWND_MESSAGE
    attributes = None
    if options.sddl:
        descriptor = ctypes.c_void_p()
        if not advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(options.sddl, 1, ctypes.byref(descriptor),
                                                                            None):
            raise ctypes.WinError(ctypes.get_last_error())
        attributes = (ctypes.c_uint32 * 6)()  # SECURITY_ATTRIBUTES: nLength, then the descriptor's pointer
        attributes[0] = 24
        ctypes.c_void_p.from_buffer(attributes, 8).value = descriptor.value
    protect = 0x04 | (0x4000000 if options.reserve else 0)  # PAGE_READWRITE [| SEC_RESERVE]
    mapping = kernel32.CreateFileMappingW(wt.HANDLE(-1), attributes, protect, 0, 8,
                                          f"Local\\copydata.v1.name.{options.name}")
    if not mapping:
        raise ctypes.WinError(ctypes.get_last_error())
    if not options.reserve:
        view = kernel32.MapViewOfFile(wt.HANDLE(mapping), 0x2, 0, 0, 8)
        ctypes.c_uint64.from_address(view).value = (os.getpid() << 32) | (hwnd & 0xFFFFFFFF)
    report(ready=hwnd)
    sys.stdin.read()


def pywin32_send(options: argparse.Namespace) -> None:
    import win32con
    import win32gui

    target = parse_target(options.target)
    for tag, size, seed in parse_specs(options.specs):
        data = payload(size, seed)
        buffer = bytearray(data) or bytearray(1)
        address, _ = win32gui.PyGetBufferAddressAndLen(buffer)
        copydatastruct = struct.pack("<QL4xQ", tag, len(data), address)
        result = win32gui.SendMessage(target, win32con.WM_COPYDATA, 0, copydatastruct)
        report(result=result)


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve")
    serve_parser.add_argument("name", nargs="?")
    serve_parser.add_argument("--sync-sleep", type=float, default=0.0)
    serve_parser.add_argument("--max-message-size", type=int, default=2_000_000)
    serve_parser.add_argument("--codec", default="bytes")
    serve_parser.add_argument("--raw", action="store_true")
    serve_parser.add_argument("--allow-pickle", action="store_true")
    serve_parser.add_argument("--channel", action="append", default=[])
    serve_parser.add_argument("--fail-tag", type=int)
    serve_parser.add_argument("--key")
    for name in ("send-value", "request"):
        command = commands.add_parser(name)
        command.add_argument("target")
        command.add_argument("codec")
        command.add_argument("value", help="JSON")
        command.add_argument("--tag", type=int, default=0)
        command.add_argument("--raw", action="store_true")
        command.add_argument("--allow-pickle", action="store_true")
        command.add_argument("--key")
    evil_parser = commands.add_parser("send-evil-pickle")
    evil_parser.add_argument("target")
    evil_parser.add_argument("path")
    for name in ("send", "pywin32-send", "stream"):
        command = commands.add_parser(name)
        command.add_argument("target")
        command.add_argument("specs", nargs="*" if name == "stream" else "+")
        command.add_argument("--key")
    commands.choices["stream"].add_argument("--chunk-size", type=int, default=1 << 20)
    commands.choices["stream"].add_argument("--sequence", type=int, default=0, metavar="COUNT",
                                            help="after the specs, COUNT messages as sequence() describes")
    commands.choices["stream"].add_argument("--no-shm", action="store_true")
    commands.choices["stream"].add_argument("--max-batch-bytes", type=int, default=8 << 20)
    commands.choices["stream"].add_argument("--shm-threshold", type=int, default=1 << 20)
    raw_parser = commands.add_parser("send-raw")
    raw_parser.add_argument("target")
    raw_parser.add_argument("payloads", nargs="+", metavar="HEX")
    raw_parser.add_argument("--tag", type=int, default=0)
    raw_parser.add_argument("--sender", type=lambda text: int(text, 0), default=0, help="wParam, as claimed")
    burst_parser = commands.add_parser("burst")
    burst_parser.add_argument("target")
    burst_parser.add_argument("count", type=int)
    squat_parser = commands.add_parser("squat")
    squat_parser.add_argument("name")
    squat_parser.add_argument("--sddl", help="the slot's security descriptor (default: Windows' default)")
    squat_parser.add_argument("--reserve", action="store_true", help="SEC_RESERVE: nothing committed")
    commands.add_parser("pywin32-serve")
    commands.add_parser("hang")
    options = parser.parse_args()
    handlers = {"serve": serve, "send": send, "burst": burst, "send-value": send_value, "send-raw": send_raw,
                "send-evil-pickle": send_evil_pickle, "request": request, "hang": hang, "stream": stream,
                "pywin32-serve": pywin32_serve, "pywin32-send": pywin32_send, "squat": squat}
    handlers[options.command](options)


if __name__ == "__main__":
    main()
