"""Request and reply: a message whose answer is a message, back through a window of our own."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import secrets
import threading
import time
from typing import Any, NamedTuple

from . import _codecs, _envelope, _native, _seal
from ._errors import RequestFailed, RequestTimeout
from ._receiver import Message, Receiver
from ._constants import DEFAULT_TIMEOUT
from ._send import Target, resolve, send


class _Waiting(NamedTuple):
    reply: concurrent.futures.Future
    allow_pickle: bool
    key: bytes | None
    target: int  # the window the request went to: its reply must name it as its sender


class _ReplyWindow(Receiver):
    """The window that replies to this process's requests come back to."""

    # Replies to requests made with a key come sealed; each is checked here with its own key.
    _pass_sealed = True
    # Replies are plain WM_COPYDATA: batch, part and section frames are not taken apart here.
    _takes_frames = False

    def __init__(self) -> None:
        self._waiting: dict[int, _Waiting] = {}
        self._waiting_lock = threading.Lock()
        super().__init__(on_message=lambda message: None)

    def expect(self, target: int, allow_pickle: bool, key: bytes | None) -> tuple[int, concurrent.futures.Future]:
        """A new request to ``target``: its id, unguessable (only the target learns it, so only
        the target can reply to it), and the future its reply completes."""
        reply: concurrent.futures.Future = concurrent.futures.Future()
        with self._waiting_lock:
            request_id = secrets.randbits(64) | 1
            while request_id in self._waiting:
                request_id = secrets.randbits(64) | 1
            self._waiting[request_id] = _Waiting(reply, allow_pickle, key, target)
        return request_id, reply

    def forget(self, request_id: int) -> None:
        with self._waiting_lock:
            self._waiting.pop(request_id, None)

    def _pickle_allowed(self, envelope: _envelope.Envelope) -> bool:
        # Only a reply to a request whose caller said allow_pickle=True is ever unpickled.
        with self._waiting_lock:
            waiting = self._waiting.get(envelope.request_id)
        return envelope.kind == _envelope.REPLY and waiting is not None and waiting.allow_pickle

    def _authentic(self, tag: int, payload: bytes, sender: int) -> bytes | None:
        """The reply in ``payload``, unsealed if it must be: None if it is not authentic (it
        names no waiting request, comes from another window than the request went to, or is not
        sealed with the request's key)."""
        sealed = _seal.is_sealed(payload)
        envelope = _envelope.unwrap(payload[_seal.HEADER_SIZE:] if sealed else payload)
        with self._waiting_lock:
            waiting = self._waiting.get(envelope.request_id) if envelope is not None else None
        if waiting is None or waiting.target != sender:
            return None
        key = waiting.key
        if key is None:
            return None if sealed else payload
        return _seal.unseal(key, payload, self._hwnd, tag) if sealed else None

    def _process(self, tag: int, payload: bytes | memoryview, sender: int, codec_id: int = _native.NO_CODEC) -> int:
        authentic = self._authentic(tag, bytes(payload), sender)  # a reply window always copies: bytes already
        if authentic is None:
            self._count("stray_replies")
            return 0
        decoded = self._decode_safely(tag, authentic, sender, codec_id)
        if decoded is None:
            return 0
        kind, message = decoded
        if kind < _envelope.REPLY:
            self._count("stray_replies")  # nobody sends anything but replies here
            return 0
        return self._route_reply(kind, message)

    def _route_reply(self, kind: int, message: Message) -> int:
        with self._waiting_lock:
            waiting = self._waiting.pop(message.request_id, None)  # type: ignore[arg-type]
        if waiting is None:
            return super()._route_reply(kind, message)
        reply = waiting.reply
        try:
            if kind == _envelope.FAILED_REPLY:
                reply.set_exception(RequestFailed(f"the receiver failed on the request: {message.data}",
                                                  message.data))
            else:
                reply.set_result(message)
        except concurrent.futures.InvalidStateError:  # the caller gave up as the reply came
            pass
        return 1


_reply_window: _ReplyWindow | None = None
_reply_window_lock = threading.Lock()


def _close_reply_window() -> None:
    with _reply_window_lock:
        if _reply_window is not None:
            _reply_window.close()


atexit.register(_close_reply_window)


def reply_window() -> _ReplyWindow:
    """This process's reply window, opened on first use."""
    global _reply_window
    with _reply_window_lock:
        if _reply_window is None or _reply_window.closed:
            _reply_window = _ReplyWindow()
        return _reply_window


def _prepare(target: Target, data: Any, codec: _codecs.CodecSpec, allow_pickle: bool,
             key: bytes | None) -> tuple[int, _ReplyWindow, int, concurrent.futures.Future, bytes]:
    resolved = _codecs.resolve(codec)
    if isinstance(resolved, _codecs.PickleCodec) and not allow_pickle:
        raise ValueError("codec='pickle' needs allow_pickle=True: the reply would be unpickled, "
                         "which runs code of the replying process's choosing")
    key = None if key is None else _seal.check_key(key)
    body = resolved.encode(data)
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    hwnd = resolve(target)
    window = reply_window()
    request_id, reply = window.expect(hwnd, allow_pickle, key)
    return hwnd, window, request_id, reply, _envelope.wrap(body, _codecs.codec_id(resolved), _envelope.REQUEST,
                                                           request_id)


def request(target: Target, data: Any, *, tag: int = 0, codec: _codecs.CodecSpec = "bytes",
            timeout: float | None = DEFAULT_TIMEOUT, allow_pickle: bool = False,
            key: bytes | None = None) -> Message:
    """Send ``data`` and wait for the receiver's reply message.

    The receiver's ``on_message`` return value (or its [`reply`][copydata.Receiver.reply])
    comes back as a [`Message`][copydata.Message]. Safe to call from many threads at once:
    each call gets its own reply.

    Parameters
    ----------
    target
        A window handle, a receiver's name, or a [`Receiver`][copydata.Receiver].
    data
        The request, encoded with ``codec``.
    tag
        ``dwData``, 0 to 2**64-1.
    codec
        A codec name or an object with ``encode`` and ``decode``; replies other than bytes
        come back with it too.
    timeout
        Seconds for the send and the wait for the reply together (None: no limit).
    allow_pickle
        Needed for ``codec="pickle"``: the reply is unpickled only then.
    key
        Seal the request for a receiver with that key; only a reply sealed with it is taken.

    Returns
    -------
    Message
        The reply: bytes-like replies as bytes, others decoded with the request's codec.

    Raises
    ------
    RequestTimeout
        No reply came within ``timeout``.
    RequestFailed
        The receiver's callback raised, or its reply could not be encoded; ``remote_error``
        says what.
    TargetNotFound, SendTimeout, Rejected, MessageTooLarge, SendFailed
        As [`send`][copydata.send].
    ValueError
        ``codec="pickle"`` without ``allow_pickle``.
    """
    hwnd, window, request_id, reply, payload = _prepare(target, data, codec, allow_pickle, key)
    try:
        started = time.monotonic()
        send(hwnd, payload, tag=tag, timeout=timeout, sender=window.hwnd, key=key)
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        try:
            return reply.result(remaining)
        except concurrent.futures.TimeoutError:
            raise RequestTimeout(f"no reply from {target!r} within {timeout} s") from None
    finally:
        window.forget(request_id)


async def arequest(target: Target, data: Any, *, tag: int = 0, codec: _codecs.CodecSpec = "bytes",
                   timeout: float | None = DEFAULT_TIMEOUT, allow_pickle: bool = False,
                   key: bytes | None = None) -> Message:
    """[`request`][copydata.request] for asyncio; cancelling it forgets the request (a late
    reply is dropped).

    Parameters
    ----------
    target
        A window handle, a receiver's name, or a ``Receiver``.
    data
        The request, encoded with ``codec``.
    tag
        ``dwData``, 0 to 2**64-1.
    codec
        A codec name or an object with ``encode`` and ``decode``.
    timeout
        Seconds for the send and the wait for the reply together (None: no limit).
    allow_pickle
        Needed for ``codec="pickle"``: the reply is unpickled only then.
    key
        Seal the request for a receiver with that key; only a reply sealed with it is taken.

    Returns
    -------
    Message
        The reply.

    Raises
    ------
    RequestTimeout, RequestFailed, TargetNotFound, SendTimeout, Rejected, ValueError
        As [`request`][copydata.request].
    """
    loop = asyncio.get_running_loop()
    hwnd, window, request_id, reply, payload = _prepare(target, data, codec, allow_pickle, key)
    try:
        started = time.monotonic()
        await loop.run_in_executor(None, lambda: send(hwnd, payload, tag=tag, timeout=timeout,
                                                      sender=window.hwnd, key=key))
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(reply), remaining)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no reply from {target!r} within {timeout} s") from None
    finally:
        window.forget(request_id)
