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
    """The window handle of the live receiver published under ``name``.

    Parameters
    ----------
    name
        The receiver's name (1 to 128 characters, no backslash).

    Returns
    -------
    int | None
        The handle, or None when no live copydata receiver of this session holds the name.

    Raises
    ------
    NameInUse
        The name's slot was made by another user, or is not held in committed memory: it is
        not believed.
    ValueError
        The name is empty, too long or has a backslash.
    """
    hwnds = _native.registry_list(_native.REGISTRY_NAME, _checks.receiver_name(name), 1)
    return hwnds[0] if hwnds else None


def subscribers(channel: str) -> list[int]:
    """The window handles of the live receivers subscribed to ``channel``.

    Parameters
    ----------
    channel
        The channel's name (1 to 128 characters, no backslash).

    Returns
    -------
    list[int]
        The handles, none if the channel has no live subscriber.
    """
    return _native.registry_list(_native.REGISTRY_CHANNEL, _checks.receiver_name(channel), _native.CHANNEL_SLOTS)


def find_window(class_name: str | None = None, title: str | None = None) -> int | None:
    """A window of another program, top-level or message-only, by class name and/or title.

    Parameters
    ----------
    class_name
        The window's class name, or None for any.
    title
        The window's title, or None for any.

    Returns
    -------
    int | None
        The first such window's handle, or None.

    Raises
    ------
    ValueError
        Neither ``class_name`` nor ``title`` was given.
    """
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

    Parameters
    ----------
    target
        A window handle (an int, from anywhere), a receiver's name, or a
        [`Receiver`][copydata.Receiver].
    data
        The message: with the bytes codec any contiguous bytes-like object, sent from where it
        lies, with the GIL released; else what the codec encodes.
    tag
        ``dwData``, 0 to 2**64-1. A tag above 2**32-1 to a 32-bit program's window is refused
        (its dwData has 32 bits: the tag would not arrive; under Wine it arrives as 0).
    codec
        A codec name ("bytes", "text", "utf-16", "json", "pickle", "nrbf") or an object with
        ``encode`` and ``decode``.
    raw
        Send the encoded body without copydata's envelope, for programs that are not copydata.
    timeout
        Seconds to wait for the answer (None: no limit, though ``SMTO_ABORTIFHUNG`` still
        gives up on a hung receiver).
    flags
        ``SendMessageTimeoutW``'s flags ([`SendFlags`][copydata.SendFlags], ``SMTO_*``).
    sender
        A window handle or a ``Receiver``, sent as ``wParam`` (0: none). It proves nothing.
    max_size
        The largest payload to send, in bytes (up to 4 GiB - 1).
    check
        Raise [`Rejected`][copydata.Rejected] on an answer of 0, which copydata receivers give
        when they refuse a message; False for programs that answer 0 to everything.
    key
        Seal the message with an HMAC for a receiver created with that key; only such a
        receiver accepts it.

    Returns
    -------
    int
        The receiver's answer: 1 from a copydata receiver that took the message, or what its
        sync-mode callback returned.

    Raises
    ------
    TargetNotFound
        No window has that handle, or no live receiver that name.
    SendTimeout
        No answer within ``timeout``, or the window is hung.
    Rejected
        The receiver answered 0 (with ``check``).
    MessageTooLarge
        The payload is larger than ``max_size``; nothing was sent.
    TagTooLarge
        A tag above 2**32-1 for a 32-bit program's window; nothing was sent.
    SendFailed
        ``SendMessageTimeoutW`` failed otherwise (``winerror`` says why).
    TypeError
        ``data`` is not what the codec takes (a str for the bytes codec, say).
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
    """[`send`][copydata.send] for asyncio: the send waits in a worker thread, never in the
    event loop.

    Cancelling it stops the wait, not the message: it may still be delivered.

    Parameters
    ----------
    target
        A window handle, a receiver's name, or a ``Receiver``.
    data
        The message, as for ``send``.
    **options
        ``send``'s keyword arguments: ``tag``, ``codec``, ``raw``, ``timeout``, ``flags``,
        ``sender``, ``max_size``, ``check``, ``key``.

    Returns
    -------
    int
        The receiver's answer, as from ``send``.

    Raises
    ------
    TargetNotFound, SendTimeout, Rejected, MessageTooLarge, TagTooLarge, SendFailed
        As [`send`][copydata.send].
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

    The sends run in parallel, each with its own ``timeout``, so a hung subscriber delays only
    its own answer (up to 32 at a time; more hung subscribers than that queue behind one
    another). No error of one subscriber is raised: it shows as False.

    Parameters
    ----------
    channel
        The channel's name.
    data
        The message, as for [`send`][copydata.send].
    tag
        ``dwData``, 0 to 2**64-1.
    codec
        A codec name or an object with ``encode`` and ``decode``.
    raw
        Send the encoded body without copydata's envelope.
    timeout
        Seconds each subscriber has to answer (None: no limit).
    key
        Seal the message, for each subscriber's own window, with this key.

    Returns
    -------
    dict[int, bool]
        Per subscriber window, whether it accepted the message.
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
