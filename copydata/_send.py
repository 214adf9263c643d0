"""send() and find(): one WM_COPYDATA to a window, and a receiver's window by name."""

from __future__ import annotations

from typing import Union

from . import _checks
from ._core import ffi, lib
from ._errors import CopyDataError, MessageTooLarge, Rejected, SendFailed, SendTimeout, TargetNotFound
from ._receiver import MAX_MESSAGE_SIZE, Receiver
from ._win32 import describe_error

# SendMessageTimeoutW flags (winuser.h)
SMTO_NORMAL = 0x0000
SMTO_BLOCK = 0x0001
SMTO_ABORTIFHUNG = 0x0002
SMTO_NOTIMEOUTIFNOTHUNG = 0x0008
SMTO_ERRORONEXIT = 0x0020

DEFAULT_TIMEOUT = 5.0

Target = Union[int, str, Receiver]
Buffer = Union[bytes, bytearray, memoryview]


def find(name: str) -> int | None:
    """The window handle of the live receiver published under ``name``, or None."""
    _checks.receiver_name(name)
    hwnd = ffi.new("uint64_t *")
    process_id = ffi.new("uint32_t *")
    error = ffi.new("uint32_t *")
    status = lib.cd_name_lookup(name, hwnd, process_id, error)
    if status == lib.CD_OK:
        return int(hwnd[0])
    if status == lib.CD_NOT_FOUND:
        return None
    raise CopyDataError(f"could not look up the name {name!r}: {describe_error(status, error[0])}")


def resolve(target: Target) -> int:
    """The window handle that ``target`` (a handle, a receiver's name, or a Receiver) means."""
    if isinstance(target, Receiver):
        if target.closed:
            raise TargetNotFound(f"{target!r} is closed")
        return target.hwnd
    if isinstance(target, str):
        hwnd = find(target)
        if hwnd is None:
            raise TargetNotFound(f"no live receiver is named {target!r}")
        return hwnd
    return _checks.window_handle(target, "target")


def send(
    target: Target,
    data: Buffer,
    *,
    tag: int = 0,
    timeout: float | None = DEFAULT_TIMEOUT,
    flags: int = SMTO_ABORTIFHUNG,
    sender: int | Receiver = 0,
    max_size: int = MAX_MESSAGE_SIZE,
    check: bool = True,
) -> int:
    """Send ``data`` as one WM_COPYDATA and return the receiver's answer (the LRESULT).

    On the wire this is exactly ``SendMessage(hwnd, WM_COPYDATA, sender, &cds)`` with
    ``cds.dwData = tag``, ``cds.cbData = len(data)`` and ``cds.lpData`` pointing at
    ``data`` itself (no header, no copy), so any WM_COPYDATA program can receive it.

    ``timeout`` bounds the wait in seconds (None: no limit, though ``SMTO_ABORTIFHUNG``
    still gives up on a hung receiver). With ``check`` (the default), an answer of 0, which
    copydata receivers give when they refuse a message, raises :class:`Rejected`.

    Raises :class:`TargetNotFound`, :class:`SendTimeout`, :class:`Rejected`,
    :class:`MessageTooLarge` (nothing was sent) or :class:`SendFailed`.
    """
    hwnd = resolve(target)
    tag = _checks.tag(tag)
    milliseconds = _checks.timeout_ms(timeout)
    flags = _checks.send_flags(flags)
    sender_hwnd = sender.hwnd if isinstance(sender, Receiver) else (
        _checks.window_handle(sender, "sender") if sender else 0)
    max_size = _checks.positive_size(max_size, "max_size", most=0xFFFFFFFF)
    if isinstance(data, str):
        raise TypeError("data must be bytes-like, not str: encode it first (for example data.encode())")
    if type(data) is bytes:
        size = len(data)
    else:
        view = memoryview(data)
        if not view.c_contiguous:
            raise ValueError("data must be a contiguous buffer")
        size = view.nbytes
    if size > max_size:
        raise MessageTooLarge(f"{size} bytes is more than max_size={max_size}; nothing was sent")

    result = ffi.new("intptr_t *")
    error = ffi.new("uint32_t *")
    status = lib.cd_send(hwnd, tag, sender_hwnd, ffi.from_buffer(data), size, milliseconds, flags,
                         result, error)
    if status == lib.CD_OK:
        if check and result[0] == 0:
            raise Rejected(f"window {hwnd:#x} answered 0: it refused the message "
                           f"(a copydata receiver does so when its queue is full or the message is too large)")
        return int(result[0])
    if status == lib.CD_TARGET_GONE:
        raise TargetNotFound(f"window {hwnd:#x} does not exist (its receiver closed or its process ended)")
    if status == lib.CD_TIMEOUT:
        raise SendTimeout(f"window {hwnd:#x} did not answer within {timeout} s (it is busy or hung)")
    raise SendFailed(f"sending to window {hwnd:#x} failed: {describe_error(status, error[0])}", error[0])
