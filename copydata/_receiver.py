"""Receiver: a message-only window whose WM_COPYDATA messages reach Python in arrival order."""

from __future__ import annotations

import array
import asyncio
import collections
import functools
import itertools
import logging
import threading
from typing import Any, AsyncIterator, Callable, Iterable, Iterator

from . import _checks, _codecs, _envelope, _native, _replies, _seal
from ._constants import (DEFAULT_BATCH_SIZE, DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_QUEUE_MESSAGES,
                         DEFAULT_MAX_TRANSFER_SIZE, DEFAULT_PART_TIMEOUT, DEFAULT_REPLY_TIMEOUT, MAX_MESSAGE_SIZE,
                         SMTO_ABORTIFHUNG, WAIT_FOREVER_MS)
from ._errors import ReceiverClosed, RecvTimeout
from ._decoding import Decoding
from ._messages import Message, MessageBatch, ReceiverStats, Refusal

logger = logging.getLogger("copydata")

# recv() waits in slices so that Ctrl-C reaches a main thread blocked in it, and so that an
# arecv() cancelled by asyncio stops waiting soon.
_WAIT_SLICE_MS = 100
# Counts kept in Python, after those of the C core (cd_stats).
_PYTHON_COUNTS = ("refused_pickle", "undecodable", "stray_replies")


class Receiver(Decoding):
    """A window that other processes send WM_COPYDATA to.

    With ``on_message``, every message is passed to it, in arrival order, on one dispatch
    thread; without it, the receiver is a queue read with [`recv`][copydata.Receiver.recv],
    [`recv_many`][copydata.Receiver.recv_many], [`recv_batch`][copydata.Receiver.recv_batch],
    [`arecv`][copydata.Receiver.arecv] or by iteration (``for`` and ``async for``).

    The window procedure copies each payload into a bounded queue in C and answers the sender
    at once (``send`` returns 1), so a slow callback never holds a sender up; a message that
    does not fit (``max_message_size``, ``max_queue_messages``, ``max_queue_bytes``) is
    answered 0 and counted in [`stats`][copydata.Receiver.stats], and nothing already queued
    is lost. A ``Sender`` sends a large frame through shared memory (or, without it, splits a
    large message into parts, which the receiver puts together in C). The guide's
    "Receiving" page says more.

    Parameters
    ----------
    name
        Publishes the window under this name (1 to 128 characters, no backslash), so that
        ``send("name", ...)`` and [`find`][copydata.find] reach it.
    on_message
        Called with each [`Message`][copydata.Message], in order, on the dispatch thread; an
        exception it raises is logged and delivery goes on. Without it, the receiver is a queue.
        For a request, what it returns is the reply.
    sync
        The sender waits while ``on_message`` runs, and an int it returns is what ``send``
        returns (any other value answers 1; an exception answers 0). Needs ``on_message``.
    codec
        Decodes payloads that come without an envelope (from a plain ``send`` or a foreign
        program): a name ("bytes", "text", "utf-16", "json", "pickle", "nrbf") or an object
        with ``encode`` and ``decode``. Enveloped payloads say their own codec.
    raw
        Turns envelope decoding off: every payload is foreign, decoded with ``codec``.
    allow_pickle
        Unpickle pickled payloads. Without it they are refused and counted: unpickling runs
        code of the sender's choosing.
    channels
        Channel names to subscribe to, for [`broadcast`][copydata.broadcast].
    allow_lower_integrity
        Let processes of lower integrity send WM_COPYDATA to the window
        (``ChangeWindowMessageFilterEx``); by default UIPI keeps them out.
    max_message_size
        The largest single WM_COPYDATA taken, in bytes (up to 4 GiB - 1).
    max_queue_messages
        The most messages the queue holds.
    max_queue_bytes
        The most payload bytes the queue holds.
    max_transfer_size
        The most bytes of messages taken in one split message or one shared-memory frame
        (None: 64 MiB, or ``max_queue_bytes`` if smaller).
    part_timeout
        Seconds after which a split message whose next part has not come is dropped (and
        counted in ``stats.dropped_incomplete``).
    batch_size
        How many messages the dispatch thread takes from the queue in one call into C.
    reply_timeout
        Seconds a reply to a request may take to be sent.
    key
        16 to 1024 secret bytes: accept only messages sealed with this key by
        ``send(..., key=)``, ``Sender(..., key=)`` or ``request(..., key=)`` (an HMAC-SHA256
        over the message, its tag and this window, checked in C before anything else, with a
        counter and a time against replay). Replies to requests are sealed with it too.
    on_error
        Called with a [`Refusal`][copydata.Refusal] for every message refused or dropped, one
        at a time on a thread of its own, in order.
    copy
        False hands over the receiver's own buffer instead of a copy: ``data`` of a
        bytes-codec message is then a read-only ``memoryview``, valid for as long as you hold
        it or a slice of it. Small messages (up to 4 KiB) are slices of one shared block of at
        most 256 KiB; a message of 1 MiB or more that a ``Sender`` left in its shared memory
        under a lease is a view of that memory itself, with no copy at all (only as steady as
        the sender is well-behaved). In sync mode, a message that came through a ``Sender``'s
        shared memory is a view of it that is released when ``on_message`` returns.

    Raises
    ------
    NameInUse
        Another live receiver holds ``name``.
    ChannelFull
        A channel already has 256 live subscribers.
    ValueError
        A limit out of range, ``sync`` without ``on_message``, a bad name or key.
    TypeError
        ``on_message`` or ``on_error`` not callable, ``channels`` a str.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        on_message: Callable[[Message], object] | None = None,
        sync: bool = False,
        codec: _codecs.CodecSpec = "bytes",
        raw: bool = False,
        allow_pickle: bool = False,
        channels: Iterable[str] = (),
        allow_lower_integrity: bool = False,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_queue_messages: int = DEFAULT_MAX_QUEUE_MESSAGES,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_transfer_size: int | None = None,
        part_timeout: float = DEFAULT_PART_TIMEOUT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
        key: bytes | None = None,
        on_error: Callable[[Refusal], object] | None = None,
        copy: bool = True,
    ) -> None:
        if name is not None:
            _checks.receiver_name(name)
        if isinstance(channels, str):
            raise TypeError("channels must be a list of channel names, not a str")
        channel_names = list(dict.fromkeys(_checks.receiver_name(channel) for channel in channels))
        if on_message is not None and not callable(on_message):
            raise TypeError(f"on_message must be callable, not {type(on_message).__name__}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable, not {type(on_error).__name__}")
        key = None if key is None else _seal.check_key(key)
        if sync and on_message is None:
            raise ValueError("sync=True needs on_message: it is what the sender waits for")
        _checks.positive_size(max_message_size, "max_message_size", most=0xFFFFFFFF)
        _checks.positive_size(max_queue_messages, "max_queue_messages")
        _checks.positive_size(max_queue_bytes, "max_queue_bytes")
        if max_transfer_size is None:
            max_transfer_size = min(DEFAULT_MAX_TRANSFER_SIZE, max_queue_bytes)
        _checks.positive_size(max_transfer_size, "max_transfer_size")
        _checks.positive_size(batch_size, "batch_size", most=1 << 20)
        _checks.timeout_ms(reply_timeout)
        part_timeout_ms = _checks.timeout_ms(part_timeout)
        for limit, what in ((max_message_size, "max_message_size"), (max_transfer_size, "max_transfer_size")):
            if limit > max_queue_bytes:
                raise ValueError(f"{what} ({limit}) cannot exceed max_queue_bytes ({max_queue_bytes}): "
                                 f"such a message could never be queued")

        self._name = name
        self._channels = tuple(channel_names)
        self._on_message = on_message
        self._sync = bool(sync)
        self._codec = _codecs.resolve(codec)
        self._codec_name = _codecs.name_of(self._codec)
        self._plain_bytes = isinstance(self._codec, _codecs.BytesCodec)
        self._raw = bool(raw)
        self._copy = bool(copy)
        self._allow_pickle = bool(allow_pickle)
        self._batch_size = batch_size
        self._reply_timeout = reply_timeout
        self._state_lock = threading.Lock()
        self._closed = False
        self._close_requested = False
        self._pushed_back: collections.deque[Message] = collections.deque()
        self._counts: collections.Counter[str] = collections.Counter()
        self._pump_errors_seen = 0
        self._warned: dict[str, tuple[float, int]] = {}  # per kind of warning: when last logged, how many held back since
        self._registrations: list[_native.Registration] = []
        self._dispatcher: threading.Thread | None = None
        self._key = key
        self._on_error = on_error
        self._error_reporter: threading.Thread | None = None
        self._replier = _replies.Replier(self._send_reply_now, functools.partial(self._warn, "reply"),
                                         "copydata-replies")

        self._native = _native.NativeReceiver(_native.ReceiverConfig(
            max_message_size=max_message_size, max_queue_messages=max_queue_messages,
            max_queue_bytes=max_queue_bytes, sync=self._sync, allow_lower_integrity=bool(allow_lower_integrity),
            unpack_batches=not self._raw and self._takes_frames, max_transfer_size=max_transfer_size,
            part_timeout_ms=part_timeout_ms, key=key, report_refusals=on_error is not None,
            pass_sealed=self._pass_sealed))
        self._hwnd = self._native.hwnd
        try:
            if name is not None:
                self._registrations.append(_native.Registration(_native.REGISTRY_NAME, name, self._hwnd))
            for channel in self._channels:
                self._registrations.append(_native.Registration(_native.REGISTRY_CHANNEL, channel, self._hwnd))
            if on_error is not None:
                self._error_reporter = threading.Thread(
                    target=self._report_errors, name=f"copydata-errors-{self._hwnd:#x}", daemon=True)
                self._error_reporter.start()
            if on_message is not None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name=f"copydata-dispatch-{self._hwnd:#x}", daemon=True)
                self._dispatcher.start()
        except BaseException:
            self.close()
            raise

    # A receiver without a key refuses sealed messages in C; the reply window checks them itself.
    _pass_sealed = False
    # Batch, part and section frames (from a Sender) are taken apart in C; the reply window takes
    # only replies, each one plain WM_COPYDATA.
    _takes_frames = True

    # --- properties ---------------------------------------------------------------------

    @property
    def hwnd(self) -> int:
        """The window handle that senders target."""
        return self._hwnd

    @property
    def name(self) -> str | None:
        """The name this receiver is published under, or None."""
        return self._name

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels this receiver is subscribed to."""
        return self._channels

    @property
    def closed(self) -> bool:
        """True once [`close`][copydata.Receiver.close] was called."""
        return self._closed

    @property
    def stats(self) -> ReceiverStats:
        """A snapshot of the counts (still readable after close)."""
        native = self._native.stats()
        return ReceiverStats(**{field: native[field] if field in native else self._counts[field]
                                for field in ReceiverStats._fields})

    def _route_reply(self, kind: int, message: Message) -> int:
        """A reply arrived; only the window of copydata.request expects any."""
        self._count("stray_replies")
        return 0

    # --- replies to requests ------------------------------------------------------------

    def reply(self, request: Message, value: object = None) -> None:
        """Answer a message sent with [`request`][copydata.request].

        A receiver with ``on_message`` replies by itself with what the callback returns (should
        that not encode, the requester gets [`RequestFailed`][copydata.RequestFailed]); a queue
        receiver replies with this. The reply is sent on a reply thread: this does not wait.

        Parameters
        ----------
        request
            The request, as received (``request.is_request`` is True).
        value
            The reply: bytes-like values go as bytes, anything else with the request's codec;
            None sends an empty reply.

        Raises
        ------
        ValueError
            ``request`` is not a request.
        Exception
            Whatever the codec raises when it cannot encode ``value``; nothing is sent then, so
            you may reply again.
        """
        if request.request_id is None:
            raise ValueError("that message is not a request: its sender did not call copydata.request")
        self._deliver_reply(request, self._reply_payload(request, value))

    def _send_reply(self, request: Message, value: object, failed: bool = False) -> None:
        """Replies for a callback (or a refusal): a value the codec cannot encode becomes a
        failed reply that says so, never silence the requester would wait out."""
        try:
            payload = self._reply_payload(request, value, failed)
        except Exception as error:
            self._warn("reply", f"could not encode its reply to request {request.request_id} from "
                                f"{request.sender:#x}: {error}")
            payload = self._reply_payload(
                request, f"the reply could not be encoded: {type(error).__name__}: {error}", failed=True)
        self._deliver_reply(request, payload)

    def _reply_payload(self, request: Message, value: object, failed: bool = False) -> bytes:
        if failed:
            codec_id, kind, body = _codecs.TextCodec.codec_id, _envelope.FAILED_REPLY, str(value).encode()
        elif value is None or isinstance(value, (bytes, bytearray, memoryview)):
            codec_id, kind, body = _codecs.BytesCodec.codec_id, _envelope.REPLY, bytes(value or b"")
        else:
            codec = self._codec if request.codec in ("custom", self._codec_name) else _codecs.resolve(request.codec)
            codec_id, kind, body = _codecs.codec_id(codec), _envelope.REPLY, codec.encode(value)
        return _envelope.wrap(body, codec_id, kind, request.request_id)  # type: ignore[arg-type]

    def _deliver_reply(self, request: Message, payload: bytes) -> None:
        """Queues the reply for the reply threads: delivery never waits for a requester."""
        self._replier.submit(request.sender, request.tag, payload,
                             f"request {request.request_id} from {request.sender:#x}")

    def _send_reply_now(self, target: int, tag: int, payload: bytes) -> None:
        if self._key is not None:
            payload = _seal.sealer_for(self._key).seal(payload, target, tag)
        timeout_ms = _checks.timeout_ms(self._reply_timeout)
        _native.send(target, tag, self._hwnd, payload, len(payload), timeout_ms, SMTO_ABORTIFHUNG, self._reply_timeout)

    # --- queue mode ---------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """The next message.

        Parameters
        ----------
        timeout
            Seconds to wait for it (None: without limit; 0: only what is queued).

        Returns
        -------
        Message
            The message: its tag, data (decoded by its codec), sender, codec and request id.

        Raises
        ------
        RecvTimeout
            Nothing arrived in time.
        ReceiverClosed
            The receiver is closed and nothing is left.
        RuntimeError
            This receiver delivers to ``on_message``.
        """
        return self.recv_many(1, timeout)[0]

    def recv_many(self, max_count: int, timeout: float | None = None) -> list[Message]:
        """Up to ``max_count`` messages already queued, in order, taken in one call into C.

        Parameters
        ----------
        max_count
            The most messages to return.
        timeout
            Seconds to wait for the first one (None: without limit; 0: only what is queued).

        Returns
        -------
        list[Message]
            One message or more, in arrival order.

        Raises
        ------
        RecvTimeout
            Nothing arrived in time.
        ReceiverClosed
            The receiver is closed and nothing is left.
        RuntimeError
            This receiver delivers to ``on_message``.
        """
        if self._on_message is not None:
            raise RuntimeError("this receiver delivers to on_message; recv() is for receivers without one")
        _checks.positive_size(max_count, "max_count")
        return self._take(max_count, _checks.timeout_ms(timeout, allow_zero=True), timeout, None)

    def _take(self, max_count: int, remaining_ms: int, timeout: float | None,
              cancelled: threading.Event | None) -> list[Message]:
        messages = self._take_pushed_back(max_count)
        if messages:
            return messages
        while True:
            wait_ms = min(remaining_ms, _WAIT_SLICE_MS)
            taken = self._native.take(max_count, wait_ms, self._copy, bytes_as=Message)
            if taken is not None:
                self._log_pump_errors()
                messages = self._messages(taken)
                if messages:
                    return messages
                continue
            if cancelled is not None and cancelled.is_set():
                return []
            remaining_ms = _left_after(remaining_ms, wait_ms, timeout)

    def recv_batch(self, max_count: int = DEFAULT_MAX_QUEUE_MESSAGES, timeout: float | None = None) -> MessageBatch:
        """Up to ``max_count`` messages already queued, as one [`MessageBatch`][copydata.MessageBatch]:
        their tags, senders and sizes as columns, their payloads back to back in one block, with
        no object per message; for many small messages, the fastest way in.

        Every payload is copied into the block (with ``copy=False`` the block is handed over as
        a read-only view instead of being copied once more into ``bytes``), so a message a
        Sender left in its shared memory is released at once. Payloads come as they arrived:
        not decoded, never unpickled, replies not routed.

        Parameters
        ----------
        max_count
            The most messages to take (100,000 by default: as many as a queue holds by default).
        timeout
            Seconds to wait for the first one (None: without limit; 0: only what is queued).

        Returns
        -------
        MessageBatch
            One message or more, in arrival order.

        Raises
        ------
        RecvTimeout
            Nothing arrived in time.
        ReceiverClosed
            The receiver is closed and nothing is left.
        RuntimeError
            This receiver delivers to ``on_message``.
        """
        if self._on_message is not None:
            raise RuntimeError("this receiver delivers to on_message; recv_batch() is for receivers without one")
        _checks.positive_size(max_count, "max_count")
        remaining_ms = _checks.timeout_ms(timeout, allow_zero=True)
        pushed_back = self._take_pushed_back(max_count)
        if pushed_back:
            return _batch_of(pushed_back, self._copy)
        while True:
            wait_ms = min(remaining_ms, _WAIT_SLICE_MS)
            taken = self._native.take_columns(max_count, wait_ms, self._copy)
            if taken is not None:
                self._log_pump_errors()
                return MessageBatch(*taken, copy=self._copy)
            remaining_ms = _left_after(remaining_ms, wait_ms, timeout)

    def _messages(self, taken: list[Any]) -> list[Message]:
        """The messages of what C handed over, replies routed aside. A batch frame's records of
        the bytes codec (what a Sender sends most) came as Messages already."""
        messages: list[Message] = []
        append = messages.append
        for item in taken:
            if type(item) is Message:
                append(item)
                continue
            tag, payload, sender, codec_id = item
            decoded = self._decode_safely(tag, payload, sender, codec_id)
            if decoded is None:
                continue
            kind, message = decoded
            if kind >= _envelope.REPLY:
                self._route_reply(kind, message)
            else:
                append(message)
        return messages

    def _take_pushed_back(self, max_count: int) -> list[Message]:
        with self._state_lock:
            count = min(max_count, len(self._pushed_back))
            return [self._pushed_back.popleft() for _ in range(count)]

    def __iter__(self) -> Iterator[Message]:
        """Every message, until the receiver is closed."""
        while True:
            try:
                yield self.recv()
            except ReceiverClosed:
                return

    # --- asyncio ------------------------------------------------------------------------

    async def arecv(self, timeout: float | None = None) -> Message:
        """[`recv`][copydata.Receiver.recv] for asyncio: waits in a worker thread, never in the
        event loop.

        Cancelling it leaves the receiver usable and loses nothing: a message that arrived
        as the wait was cancelled is handed to the next recv.

        Parameters
        ----------
        timeout
            Seconds to wait (None: without limit; 0: only what is queued).

        Returns
        -------
        Message
            The next message.

        Raises
        ------
        RecvTimeout
            Nothing arrived in time.
        ReceiverClosed
            The receiver is closed and nothing is left.
        RuntimeError
            This receiver delivers to ``on_message``.
        """
        if self._on_message is not None:
            raise RuntimeError("this receiver delivers to on_message; arecv() is for receivers without one")
        remaining_ms = _checks.timeout_ms(timeout, allow_zero=True)
        cancelled = threading.Event()
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(None, self._take, 1, remaining_ms, timeout, cancelled)
        try:
            messages = await asyncio.shield(work)
        except asyncio.CancelledError:
            cancelled.set()
            work.add_done_callback(self._push_back_result)
            raise
        return messages[0]

    def _push_back_result(self, work: asyncio.Future) -> None:
        if work.cancelled() or work.exception() is not None:
            return
        with self._state_lock:
            self._pushed_back.extendleft(reversed(work.result()))

    def __aiter__(self) -> AsyncIterator[Message]:
        """``async for message in receiver``: every message, until the receiver is closed."""
        return self._iterate_async()

    async def _iterate_async(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.arecv()
            except ReceiverClosed:
                return

    # --- callback mode ------------------------------------------------------------------

    def _dispatch(self) -> None:
        try:
            while True:
                if self._sync:
                    self._answer(self._native.take_sync())
                else:
                    taken = self._native.take(self._batch_size, WAIT_FOREVER_MS, self._copy, bytes_as=Message) or []
                    self._deliver_all(taken)
                self._log_pump_errors()
                if self._close_requested:
                    self._close_requested = False
                    self._native.close()
        except ReceiverClosed:
            self._replier.close()  # (closed from on_message, close() has returned already)
            self._native.discard()  # nothing is left; ends on_error's thread too

    def _deliver_all(self, taken: list[Any]) -> None:
        """Callback mode, not sync: each message to on_message in turn. A batch frame's records of
        the bytes codec came as Messages already: neither decoded nor ever requests."""
        on_message = self._on_message
        for item in taken:
            if type(item) is not Message:
                self._process(*item)
                continue
            try:
                on_message(item)  # type: ignore[misc]
            except Exception:
                self._warn("on_message", f"on_message raised on message tag={item.tag} from {item.sender:#x}; "
                           f"delivery goes on", level=logging.ERROR, exc_info=True)

    def _process(self, tag: int, payload: bytes | memoryview, sender: int, codec_id: int = _native.NO_CODEC) -> int:
        """Decode one payload, deliver it, reply to a request; returns the answer for sync mode."""
        decoded = self._decode_safely(tag, payload, sender, codec_id)
        if decoded is None:
            return 0
        kind, message = decoded
        if kind >= _envelope.REPLY:
            return self._route_reply(kind, message)
        try:
            value = self._on_message(message)  # type: ignore[misc]
        except Exception as error:
            self._warn("on_message", f"on_message raised on message tag={message.tag} from {message.sender:#x}; "
                                     f"delivery goes on", level=logging.ERROR, exc_info=True)
            if kind == _envelope.REQUEST:
                self._send_reply(message, f"{type(error).__name__}: {error}", failed=True)
            return 0
        if kind == _envelope.REQUEST:
            self._send_reply(message, value)
            return 1
        if self._sync and isinstance(value, int):
            return _lresult(value)
        return 1

    def _answer(self, native: _native.SyncMessage) -> None:
        result = 0
        try:
            if native.in_section and not self._copy:
                # on_message reads it where it is, in the sender's section.
                result = native.lend(lambda view: self._process(native.tag, view, native.sender, native.codec_id))
            else:
                result = self._process(native.tag, native.copy(), native.sender, native.codec_id)
        except Exception:
            self._warn("answer", "on_message's answer is not an LRESULT; the sender is answered 0", level=logging.ERROR,
                       exc_info=True)
        finally:
            native.answer(result)

    def _log_pump_errors(self) -> None:
        pump_errors = self._native.stats()["pump_errors"]
        if pump_errors != self._pump_errors_seen:
            self._warn("pump", f"saw GetMessageW fail {pump_errors - self._pump_errors_seen} time(s); its "
                               f"window goes on")
            self._pump_errors_seen = pump_errors

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Destroy the window, withdraw its name and channels, release every thread and handle.

        Messages accepted before the close are still passed to ``on_message`` before this
        returns; a queue-mode receiver drops (and counts) what nobody received. Called from
        inside ``on_message``, it returns at once and the window closes after the callback.
        Closing twice is harmless.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            registrations, self._registrations = self._registrations, []
        for registration in registrations:
            registration.withdraw()
        if self._dispatcher is not None and threading.current_thread() is self._dispatcher:
            self._close_requested = True
            return
        self._native.close()
        if self._dispatcher is not None:
            self._dispatcher.join()
        self._replier.close()
        self._native.discard()
        if self._error_reporter is not None and threading.current_thread() is not self._error_reporter:
            self._error_reporter.join()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Receiver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        name = f" name={self._name!r}" if self._name is not None else ""
        return f"<copydata.Receiver hwnd={self._hwnd:#x}{name} {state}>"


def _left_after(remaining_ms: int, wait_ms: int, timeout: float | None) -> int:
    """What is left of a wait once a slice of ``wait_ms`` brought nothing; RecvTimeout when
    nothing is."""
    if remaining_ms == WAIT_FOREVER_MS:
        return remaining_ms
    remaining_ms -= wait_ms
    if remaining_ms <= 0:
        raise RecvTimeout(f"no message arrived within {timeout} s")
    return remaining_ms


def _batch_of(messages: list[Message], copy: bool) -> MessageBatch:
    """A MessageBatch of messages taken already (an arecv cancelled as they came), laid out as C
    lays out one: columns, then the payloads back to back."""
    count = len(messages)
    # Decoded already: encoded again by the codec that decoded them.
    codecs = [_codecs.resolve(message.codec) if message.codec in _codecs.BUILT_IN else _codecs.BUILT_IN["bytes"]
              for message in messages]
    payloads = [bytes(message.data) if isinstance(message.data, (bytes, bytearray, memoryview))
                else bytes(codec.encode(message.data)) for message, codec in zip(messages, codecs)]
    sizes = [len(payload) for payload in payloads]
    offsets = list(itertools.accumulate([0, *sizes[:-1]])) if count else []
    columns = b"".join(array.array("Q", values).tobytes() for values in
                       ([m.tag for m in messages], [m.sender for m in messages], offsets, sizes))
    codecs_ids = array.array("i", [_codecs.codec_id(codec) for codec in codecs]).tobytes()
    header = columns + codecs_ids
    block = header + bytes(-len(header) % 8) + b"".join(payloads)
    return MessageBatch(block if copy else memoryview(block).toreadonly(), count, copy=copy)


def _lresult(value: int) -> int:
    if not -(1 << 63) <= value < (1 << 63):
        raise OverflowError(f"on_message returned {value}, which does not fit in an LRESULT")
    return int(value)
