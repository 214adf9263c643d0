"""Sending: one WM_COPYDATA to one window, to every subscriber of a channel; finding windows."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from typing import Any, Union

from . import _checks, _codecs, _envelope, _native, _seal
from ._constants import DEFAULT_TIMEOUT, MAX_MESSAGE_SIZE, SMTO_ABORTIFHUNG
from ._errors import CopyDataError, MessageTooLarge, Rejected, TagTooLarge, TargetNotFound
from ._receiver import Receiver

_UINT32_MAX = 0xFFFFFFFF

BROADCAST_THREADS = 32

Target = Union[int, str, Receiver]


def find(name: str) -> int | None:
    """The window handle of the live receiver published under ``name``, or None."""
    hwnds = _native.registry_list(_native.REGISTRY_NAME, _checks.receiver_name(name), 1)
    return hwnds[0] if hwnds else None


def subscribers(channel: str) -> list[int]:
    """The window handles of the live receivers subscribed to ``channel``."""
    return _native.registry_list(_native.REGISTRY_CHANNEL, _checks.receiver_name(channel), _native.CHANNEL_SLOTS)


def find_window(class_name: str | None = None, title: str | None = None) -> int | None:
    """A window of another program, top-level or message-only, by class name and/or title."""
    if class_name is None and title is None:
        raise ValueError("find_window needs a class_name, a title, or both")
    for value, what in ((class_name, "class_name"), (title, "title")):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{what} must be a str or None, not {type(value).__name__}")
    return _native.find_window(class_name, title)


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


def encode_body(data: Any, codec: _codecs.Codec) -> Any:
    """``data`` encoded by ``codec``; with the bytes codec, ``data`` itself (no copy)."""
    if isinstance(codec, _codecs.BytesCodec):
        if isinstance(data, str):
            raise TypeError("data must be bytes-like, not str: encode it first, "
                            "or pass codec='text' (UTF-8) or codec='utf-16'")
        return data
    return codec.encode(data)


def encode(data: Any, codec: _codecs.CodecSpec, raw: bool) -> Any:
    """The payload for ``data``: itself for the bytes codec, else encoded and (unless raw) enveloped."""
    resolved = _codecs.resolve(codec)
    body = encode_body(data, resolved)
    if raw or isinstance(resolved, _codecs.BytesCodec):
        return body
    return _envelope.wrap(body, _codecs.codec_id(resolved))


def send(
    target: Target,
    data: Any,
    *,
    tag: int = 0,
    codec: _codecs.CodecSpec = "bytes",
    raw: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    flags: int = SMTO_ABORTIFHUNG,
    sender: int | Receiver = 0,
    max_size: int = MAX_MESSAGE_SIZE,
    check: bool = True,
    key: bytes | None = None,
) -> int:
    """Send ``data`` as one WM_COPYDATA and return the receiver's answer (the LRESULT).

    With the default codec ("bytes") this is exactly ``SendMessage(hwnd, WM_COPYDATA,
    sender, &cds)`` with ``cds.dwData = tag``, ``cds.cbData = len(data)`` and ``cds.lpData``
    pointing at ``data`` itself (no header, no copy), so any WM_COPYDATA program can receive
    it. Another codec encodes ``data`` and puts it in copydata's envelope, which copydata
    receivers decode by themselves; ``raw=True`` leaves the envelope out, for foreign
    programs (``codec=copydata.Utf16Codec(terminate=True)`` is what C# and AutoHotkey expect).

    ``key`` seals the message with an HMAC for a receiver created with that key (see
    :class:`Receiver`); only such a receiver accepts it.

    ``timeout`` bounds the wait in seconds (None: no limit, though ``SMTO_ABORTIFHUNG``
    still gives up on a hung receiver). With ``check`` (the default), an answer of 0, which
    copydata receivers give when they refuse a message, raises :class:`Rejected`.

    A tag above 2**32-1 is refused with :class:`TagTooLarge` when the target is a 32-bit
    program: its dwData has 32 bits, and the tag would not arrive (under Wine it arrives as 0).

    Raises :class:`TargetNotFound`, :class:`SendTimeout`, :class:`Rejected`,
    :class:`MessageTooLarge` or :class:`TagTooLarge` (nothing was sent), or :class:`SendFailed`.
    """
    hwnd = resolve(target)
    tag = _checks.tag(tag)
    if tag > _UINT32_MAX:
        _check_wide_tag(hwnd, tag)
    milliseconds = _checks.timeout_ms(timeout)
    flags = _checks.send_flags(flags)
    sender_hwnd = sender.hwnd if isinstance(sender, Receiver) else (
        _checks.window_handle(sender, "sender") if sender else 0)
    max_size = _checks.positive_size(max_size, "max_size", most=0xFFFFFFFF)
    payload = encode(data, codec, raw)
    if key is not None:
        payload = _seal.sealer_for(key).seal(payload, hwnd, tag)
    if type(payload) is bytes:
        size = len(payload)
    else:
        view = memoryview(payload)
        if not view.c_contiguous:
            raise ValueError("data must be a contiguous buffer")
        size = view.nbytes
    if size > max_size:
        raise MessageTooLarge(f"{size} bytes is more than max_size={max_size}; nothing was sent")

    result = _native.send(hwnd, tag, sender_hwnd, payload, size, milliseconds, flags, timeout)
    if check and result == 0:
        raise Rejected(f"window {hwnd:#x} answered 0: it refused the message "
                       f"(a copydata receiver does so when its queue is full, the message is too large, or "
                       f"not sealed with the key it requires)")
    return result


def _check_wide_tag(hwnd: int, tag: int) -> None:
    """Refuse a tag that the window's process cannot receive (a 32-bit program gets 32 bits)."""
    # A process that cannot be inspected gets the tag as asked: it is most likely a 64-bit one
    # of higher rights, and refusing a valid send on a guess helps no one.
    if _native.window_tag_bits(hwnd) < 64:
        raise TagTooLarge(f"tag {tag:#x} is above 2**32-1, and window {hwnd:#x} belongs to a 32-bit program, "
                          f"whose dwData holds 32 bits (or this process is one): it would not arrive; "
                          f"nothing was sent")


async def asend(target: Target, data: Any, **options: Any) -> int:
    """:func:`send` for asyncio: the send waits in a worker thread, never in the event loop.

    Cancelling it stops the wait, not the message: it may still be delivered.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(send, target, data, **options))


_broadcast_pool: concurrent.futures.ThreadPoolExecutor | None = None
_broadcast_pool_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _broadcast_pool
    with _broadcast_pool_lock:
        if _broadcast_pool is None:
            _broadcast_pool = concurrent.futures.ThreadPoolExecutor(
                BROADCAST_THREADS, thread_name_prefix="copydata-broadcast")
        return _broadcast_pool


def broadcast(
    channel: str,
    data: Any,
    *,
    tag: int = 0,
    codec: _codecs.CodecSpec = "bytes",
    raw: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    key: bytes | None = None,
) -> dict[int, bool]:
    """Send ``data`` to every live subscriber of ``channel``, all at once.

    Returns, per subscriber window, whether it accepted the message. The sends run in
    parallel, each with its own ``timeout``, so a hung subscriber delays only its own answer
    (up to 32 at a time; more hung subscribers than that queue behind one another).
    With ``key``, each subscriber gets the message sealed for its own window.
    """
    payload = encode(data, codec, raw)
    if key is not None:
        _seal.check_key(key)
    hwnds = subscribers(channel)

    def deliver(hwnd: int) -> bool:
        try:
            return send(hwnd, payload, tag=tag, timeout=timeout, check=False, key=key) != 0
        except CopyDataError:
            return False

    if len(hwnds) <= 1:
        return {hwnd: deliver(hwnd) for hwnd in hwnds}
    futures = {hwnd: _pool().submit(deliver, hwnd) for hwnd in hwnds}
    return {hwnd: future.result() for hwnd, future in futures.items()}
