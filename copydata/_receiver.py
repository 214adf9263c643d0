"""Receiver: a message-only window whose WM_COPYDATA messages reach Python in arrival order."""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import struct
import sys
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, NamedTuple, Optional

from . import _checks, _codecs, _envelope, _replies, _seal
from ._core import ffi, lib
from ._errors import ChannelFull, CopyDataError, NameInUse, ReceiverClosed, RecvTimeout
from ._win32 import describe_error

logger = logging.getLogger("copydata")

#: The largest payload one WM_COPYDATA carries by default, on both sides. Wine 8.0 breaks on
#: cross-process messages of 2 MiB and more, so the default stays under that everywhere.
MAX_MESSAGE_SIZE = 2_000_000
DEFAULT_MAX_QUEUE_MESSAGES = 100_000
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH_SIZE = 256
DEFAULT_MAX_TRANSFER_SIZE = 64 * 1024 * 1024
DEFAULT_PART_TIMEOUT = 10.0
DEFAULT_REPLY_TIMEOUT = 5.0
# recv() waits in slices so that Ctrl-C reaches a main thread blocked in it, and so that an
# arecv() cancelled by asyncio stops waiting soon.
_WAIT_SLICE_MS = 100
# Warnings another process can cause: at most one a second of each kind per receiver, whatever it does.
_WARNING_INTERVAL = 1.0


class Message(NamedTuple):
    """One received message."""

    tag: int
    """``dwData``: the sender's number for the kind of message."""
    data: Any
    """The payload: ``bytes`` (a copy), or what the codec decoded from it."""
    sender: int
    """``wParam``: the window the sender names as its own, 0 if none. Nothing verifies it."""
    codec: str = "bytes"
    """The codec that decoded ``data`` ("bytes" when it is the payload itself)."""
    request_id: Optional[int] = None
    """Set when the sender called ``copydata.request`` and waits for a reply."""

    @property
    def is_request(self) -> bool:
        """True when the sender waits for a reply (see :meth:`Receiver.reply`)."""
        return self.request_id is not None


class Refusal(NamedTuple):
    """A message the receiver refused or dropped, as ``on_error`` hears of it."""

    reason: str
    """Why: one of :data:`REFUSAL_REASONS`."""
    tag: int
    """The message's ``dwData``."""
    sender: int
    """Its ``wParam`` (unverified)."""
    size: int
    """Its size in bytes (for ``"incomplete"``, what had arrived of it)."""
    occurrences: int = 1
    """More than 1 when refusals of one reason were merged because ``on_error`` fell behind
    (tag and sender are then the first one's, size the sum)."""


_REASONS = {
    lib.CD_REASON_TOO_LARGE: "too_large",
    lib.CD_REASON_QUEUE_FULL: "queue_full",
    lib.CD_REASON_MALFORMED: "malformed",
    lib.CD_REASON_CLOSING: "closing",
    lib.CD_REASON_PARTS_IN_SYNC_MODE: "parts_in_sync_mode",
    lib.CD_REASON_SECTION: "section",
    lib.CD_REASON_UNAUTHENTICATED: "unauthenticated",
    lib.CD_REASON_REPLAYED: "replayed",
    lib.CD_REASON_INCOMPLETE: "incomplete",
    lib.CD_REASON_PICKLE: "pickle",
    lib.CD_REASON_UNDECODABLE: "undecodable",
}
#: Every ``Refusal.reason``: the ``refused_*`` counts of :class:`ReceiverStats`, plus
#: ``"incomplete"`` (``dropped_incomplete``), ``"pickle"`` (``refused_pickle``) and
#: ``"undecodable"`` (``undecodable``).
REFUSAL_REASONS = tuple(_REASONS.values())
_REFUSALS_PER_TAKE = 256
_BYTES_CODEC_ID = _codecs.BytesCodec.codec_id
# A row of the table cd_messages_pack puts before the payloads it packs.
_PACKED_ROW = struct.Struct("<QQQQiI")
assert _PACKED_ROW.size == ffi.sizeof("cd_packed_row")


class ReceiverStats(NamedTuple):
    """Counts since the receiver opened."""

    received_messages: int
    """Accepted into the queue by the window procedure (the sender was answered 1)."""
    received_bytes: int
    """Their payload bytes."""
    refused_messages: int
    """Answered 0: too large, queue full, malformed, or arriving while closing."""
    refused_bytes: int
    refused_too_large: int
    """Refused: above ``max_message_size``."""
    refused_queue_full: int
    """Refused: the queue held ``max_queue_messages`` or ``max_queue_bytes`` already."""
    refused_malformed: int
    """Refused: no COPYDATASTRUCT, or ``lpData`` NULL with a nonzero ``cbData``."""
    refused_closing: int
    """Refused: arrived while the receiver was closing."""
    refused_parts_in_sync_mode: int
    """Refused: a part frame (from a ``Sender`` with ``shm_threshold=None``) at a receiver in sync
    mode, which has no queue to put the parts together in."""
    refused_section: int
    """Refused: a section descriptor naming a section that is missing, not owned by this
    receiver's user, or smaller than the range it names."""
    refused_unauthenticated: int
    """Refused: at a receiver with a key, a message not sealed with that key (for this window
    and tag); at a receiver without one, a sealed message, which it cannot check."""
    refused_replayed: int
    """Refused by a receiver with a key: a sealed message it accepted before, one stamped more
    than 60 s away from its clock, or one from more fresh sealers than it keeps (4096)."""
    dropped_messages: int
    """Accepted, then discarded undelivered because the receiver was closed."""
    dropped_bytes: int
    """Their payload bytes (for a split message, what had arrived of it)."""
    dropped_incomplete: int
    """Split messages dropped because a part was missing for ``part_timeout`` seconds (or at close)."""
    queued_messages: int
    """Waiting to be delivered now."""
    queued_bytes: int
    """Their payload bytes."""
    assembling_messages: int
    """Split messages whose parts are still arriving."""
    assembling_bytes: int
    """The memory they hold."""
    pump_errors: int
    """Times GetMessageW failed and the window went on."""
    leased_messages: int
    """Large messages (from 1 MiB) of a ``Sender``'s shared memory queued where they lay there,
    with no copy: the sender writes there again only once they are freed (queue mode)."""
    ring_frames: int
    """Frames of a ``Sender`` taken as it announced them in its shared memory, with a posted
    message instead of a WM_COPYDATA round trip each (queue mode, no key)."""
    refused_pickle: int = 0
    """Pickled messages not delivered because the receiver does not allow pickle."""
    undecodable: int = 0
    """Payloads the codec could not decode (delivered as bytes with ``codec == "bytes"``), or that
    could not be read at all (dropped, and logged)."""
    stray_replies: int = 0
    """Replies that matched no waiting request (or, to a request made with a key, were not
    sealed with it)."""


def _free_message(message: Any, data: Any) -> None:
    """Frees a message with a lease once its buffer (``data``) is gone."""
    lib.cd_message_free(message)


class Receiver:
    """A window that other processes send WM_COPYDATA to.

    With ``on_message``, every message is passed to it, in arrival order, on one dispatch
    thread; without it, the receiver is a queue read with :meth:`recv`, :meth:`arecv` or by
    iteration (``for`` and ``async for``).

    The window procedure copies each payload into a bounded queue in C and answers the sender
    at once (``send`` returns 1), so a slow callback never holds a sender up; a message that
    does not fit (``max_message_size``, ``max_queue_messages``, ``max_queue_bytes``) is
    answered 0 and counted in :attr:`stats`, and nothing already queued is lost.

    ``sync=True``: the sender waits while ``on_message`` runs, and an int it returns is what
    ``send`` returns (any other value answers 1; an exception answers 0).

    ``codec`` decodes payloads that come without an envelope (from plain ``send`` or foreign
    programs); enveloped payloads say their own codec. ``raw=True`` turns envelope decoding
    off. Pickled payloads are refused and counted unless ``allow_pickle=True``.

    A ``Sender`` sends a large frame through shared memory (or, without it, splits a large
    message into parts, which the receiver puts together in C); either way the receiver
    takes up to ``max_transfer_size`` bytes of messages at once (default 64 MiB, or
    ``max_queue_bytes`` if smaller), and drops (and counts) a split message whose next part
    is ``part_timeout`` seconds late.

    ``name`` publishes the window so that ``send("name", ...)`` and :func:`copydata.find`
    reach it (two live receivers cannot hold one name: :class:`NameInUse`); ``channels``
    subscribes it to :func:`copydata.broadcast`. ``allow_lower_integrity=True`` lets
    processes of lower integrity (UIPI) send WM_COPYDATA to it.

    ``key`` (16 to 1024 secret bytes) makes it accept only messages sealed with that key by
    ``send(..., key=)``, ``Sender(..., key=)`` or ``request(..., key=)``: an HMAC-SHA256 over
    the message, its tag and this window, checked in C before anything else, with a counter
    and a time against replay. Its replies to requests are sealed with the key too.

    ``on_error`` is called with a :class:`Refusal` for every message refused or dropped (the
    reasons :attr:`stats` counts), one at a time on a thread of its own, in order.

    ``copy=False`` hands over the receiver's own buffer instead of copying it into ``bytes``:
    ``data`` of a bytes-codec message is then a read-only ``memoryview`` (the copy a large
    message would cost is saved), valid for as long as you hold it or a slice of it, even
    after close. Small messages (up to 4 KiB) taken together are slices of one block of at
    most 256 KiB: holding one holds its block. A message of 1 MiB or more that a ``Sender``
    left in its shared memory under a lease is a view of that memory itself, with no copy at
    all (``stats.leased_messages``): the sender writes there again only once the view is
    gone, but the memory is the sender's, so the view is only as steady as the sender is
    well-behaved. Other codecs decode as usual. In sync mode, ``copy=False`` hands a message
    that came through a ``Sender``'s shared memory over as a read-only view of that memory
    itself, with no copy at all: the view is released when ``on_message`` returns (using it
    later raises ``ValueError``); a slice of it kept longer stays readable and unchanged (the
    receiver answers the frame so, and the sender writes its next frames into a new section),
    and keeps that memory mapped until the last such slice goes. Other messages are copied in
    sync mode.
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
        self._registrations: list[object] = []
        self._dispatcher: threading.Thread | None = None
        self._key = key
        self._on_error = on_error
        self._error_reporter: threading.Thread | None = None
        self._replier = _replies.Replier(self._send_reply_now, functools.partial(self._warn, "reply"),
                                         "copydata-replies")

        key_buffer = ffi.from_buffer(key) if key is not None else ffi.NULL
        config = ffi.new("cd_receiver_config *", {
            "max_message_size": max_message_size,
            "max_queue_messages": max_queue_messages,
            "max_queue_bytes": max_queue_bytes,
            "sync": int(self._sync),
            "allow_lower_integrity": int(bool(allow_lower_integrity)),
            "unpack_batches": int(not self._raw and self._takes_frames),
            "max_transfer_size": max_transfer_size,
            "part_timeout_ms": part_timeout_ms,
            "key": key_buffer,
            "key_size": len(key) if key is not None else 0,
            "report_refusals": int(on_error is not None),
            "pass_sealed": int(self._pass_sealed),
        })
        handle = ffi.new("cd_receiver **")
        error = ffi.new("uint32_t *")
        status = lib.cd_receiver_open(config, handle, error)
        if status != lib.CD_OK:
            raise CopyDataError(f"could not create the receiver window: {describe_error(status, error[0])}")
        self._handle = ffi.gc(handle[0], lib.cd_receiver_free)
        self._hwnd = int(lib.cd_receiver_hwnd(self._handle))
        try:
            if name is not None:
                self._register(lib.CD_REGISTRY_NAME, name)
            for channel in self._channels:
                self._register(lib.CD_REGISTRY_CHANNEL, channel)
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

    def _register(self, kind: int, name: str) -> None:
        registration = ffi.new("cd_registration **")
        error = ffi.new("uint32_t *")
        status = lib.cd_registry_claim(kind, name, self._hwnd, registration, error)
        if status == lib.CD_NAME_IN_USE:
            raise NameInUse(f"a live receiver already holds the name {name!r}")
        if status == lib.CD_INVALID:
            from ._send import untrusted_slot  # _send imports this module

            raise NameInUse(untrusted_slot(kind, name))
        if status == lib.CD_FULL:
            raise ChannelFull(f"channel {name!r} already has {lib.CD_CHANNEL_SLOTS} live subscribers")
        if status != lib.CD_OK:
            what = "name" if kind == lib.CD_REGISTRY_NAME else "channel"
            raise CopyDataError(f"could not register the {what} {name!r}: {describe_error(status, error[0])}")
        self._registrations.append(registration[0])

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
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def stats(self) -> ReceiverStats:
        """A snapshot of the counts (still readable after close)."""
        stats = ffi.new("cd_stats *")
        lib.cd_receiver_stats(self._handle, stats)
        native = [getattr(stats, field) for field in ReceiverStats._fields[:-3]]  # as in cd_stats
        counted = [self._counts[field] for field in ReceiverStats._fields[-3:]]
        return ReceiverStats._make(native + counted)

    # --- decoding -----------------------------------------------------------------------

    def _decode(self, tag: int, payload: bytes | memoryview, sender: int,
                codec_id: int = lib.CD_NO_CODEC) -> tuple[int, Message] | None:
        """The kind and the message a payload carries, or None when it must not be delivered.

        ``codec_id`` is set for a record of a batch frame (unpacked in C): its body is
        encoded with the frame's codec and is never itself an envelope.
        """
        if codec_id == _BYTES_CODEC_ID:  # most records of a batch frame: nothing to decode
            return _envelope.MESSAGE, Message(tag, payload, sender)
        if type(payload) is not bytes:  # copy=False: the receiver's buffer, as a memoryview
            if codec_id == lib.CD_NO_CODEC and self._plain_bytes and (self._raw or payload[:4] != _envelope.MAGIC):
                return _envelope.MESSAGE, Message(tag, payload, sender)
            payload = bytes(payload)  # to be decoded: a copy is made anyway
        if codec_id != lib.CD_NO_CODEC:
            return self._open_envelope(tag, sender, _envelope.Envelope(codec_id, _envelope.MESSAGE, 0, payload))
        if not self._raw and payload.startswith(_envelope.MAGIC):
            envelope = _envelope.unwrap(payload)
            if envelope is not None:
                return self._open_envelope(tag, sender, envelope)
        if self._plain_bytes:
            return _envelope.MESSAGE, Message(tag, payload, sender)
        return _envelope.MESSAGE, self._decode_body(tag, payload, sender, self._codec, None)

    def _decode_safely(self, tag: int, payload: bytes | memoryview, sender: int, codec_id: int) -> tuple[int, Message] | None:
        """:meth:`_decode`, but a failure is counted and logged, never raised: whatever another
        process sends must not stop the dispatch thread or a recv."""
        try:
            return self._decode(tag, payload, sender, codec_id)
        except Exception:
            self._count("undecodable")
            self._report(lib.CD_REASON_UNDECODABLE, tag, sender, len(payload))
            self._warn("undecodable", f"could not decode a message (tag={tag}, {len(payload)} bytes); it is "
                                      f"dropped", exc_info=True)
            return None

    def _pickle_allowed(self, envelope: _envelope.Envelope) -> bool:
        return self._allow_pickle

    def _open_envelope(self, tag: int, sender: int, envelope: _envelope.Envelope) -> tuple[int, Message] | None:
        codec_id, kind, request_id, body = envelope
        request = request_id if kind != _envelope.MESSAGE else None
        if kind == _envelope.FAILED_REPLY:
            return kind, Message(tag, body.decode("utf-8", "replace"), sender, "text", request)
        if codec_id == _codecs.PickleCodec.codec_id and not self._pickle_allowed(envelope):
            self._count("refused_pickle")
            self._report(lib.CD_REASON_PICKLE, tag, sender, len(body))
            self._warn("pickle", f"refused a pickled message (tag={tag}, {len(body)} bytes, sender {sender:#x}): "
                       f"this receiver was not created with allow_pickle=True")
            if kind == _envelope.REQUEST:
                self._send_reply(Message(tag, None, sender, "pickle", request),
                                 "this receiver does not accept pickle", failed=True)
            return None
        if codec_id == _codecs.CUSTOM_CODEC_ID:
            if isinstance(self._codec, _codecs.BUILT_IN_TYPES):
                return kind, Message(tag, body, sender, "custom", request)
            return kind, self._decode_body(tag, body, sender, self._codec, request)
        return kind, self._decode_body(tag, body, sender, _codecs.BY_ID[codec_id], request)

    def _decode_body(self, tag: int, body: bytes, sender: int, codec: _codecs.Codec,
                     request_id: int | None) -> Message:
        try:
            return Message(tag, codec.decode(body), sender, _codecs.name_of(codec), request_id)
        except Exception as error:
            self._count("undecodable")
            self._report(lib.CD_REASON_UNDECODABLE, tag, sender, len(body))
            self._warn("undecodable", f"could not decode a message (tag={tag}, {len(body)} bytes) with the "
                       f"{_codecs.name_of(codec)} codec ({error}); it is delivered as bytes")
            return Message(tag, body, sender, "bytes", request_id)

    def _count(self, what: str) -> None:
        with self._state_lock:
            self._counts[what] += 1

    def _report(self, reason: int, tag: int, sender: int, size: int) -> None:
        """Tell on_error (on its own thread, in order with the refusals made in C)."""
        if self._on_error is not None:
            lib.cd_receiver_report(self._handle, reason, tag, sender, size)

    def _report_errors(self) -> None:
        refusals = ffi.new("cd_refusal[]", _REFUSALS_PER_TAKE)
        count = ffi.new("size_t *")
        while lib.cd_receiver_take_refusals(self._handle, refusals, _REFUSALS_PER_TAKE,
                                            _checks.WAIT_FOREVER_MS, count) == lib.CD_OK:
            for index in range(count[0]):
                native = refusals[index]
                refusal = Refusal(_REASONS[native.reason], native.tag, native.sender, native.size, native.count)
                try:
                    self._on_error(refusal)  # type: ignore[misc]
                except Exception:
                    logger.exception("on_error raised on %s; reporting goes on", refusal)

    def _warn(self, kind: str, text: str, *, level: int = logging.WARNING, exc_info: bool = False) -> None:
        """Logs ``text``, at most once a second for each ``kind`` of trouble: other processes can
        make a receiver warn (a message it cannot decode, a request whose reply window is gone),
        as often as they like. What was held back is counted in the next line of its kind."""
        now = time.monotonic()
        with self._state_lock:
            last, suppressed = self._warned.get(kind, (-_WARNING_INTERVAL, 0))
            if now - last < _WARNING_INTERVAL:
                self._warned[kind] = (last, suppressed + 1)
                return
            self._warned[kind] = (now, 0)
        more = f" ({suppressed} more like it held back)" if suppressed else ""
        logger.log(level, "receiver %#x %s%s", self._hwnd, text, more, exc_info=exc_info)

    def _route_reply(self, kind: int, message: Message) -> int:
        """A reply arrived; only the window of copydata.request expects any."""
        self._count("stray_replies")
        return 0

    # --- replies to requests ------------------------------------------------------------

    def reply(self, request: Message, value: object = None) -> None:
        """Answer a message sent with ``copydata.request``: bytes-like values go as bytes,
        anything else with the request's codec; None sends an empty reply.

        Raises what the codec raises when it cannot encode ``value`` (nothing is sent then, so
        you may reply again). A receiver with ``on_message`` replies by itself with what the
        callback returns; should that not encode, the requester gets ``RequestFailed``.
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
        from ._send import send  # _send imports this module

        send(target, payload, tag=tag, timeout=self._reply_timeout, sender=self._hwnd, key=self._key)

    # --- queue mode ---------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """The next message; waits up to ``timeout`` seconds (None: without limit).

        Raises :class:`RecvTimeout` when nothing arrived in time and :class:`ReceiverClosed`
        once the receiver is closed.
        """
        return self.recv_many(1, timeout)[0]

    def recv_many(self, max_count: int, timeout: float | None = None) -> list[Message]:
        """Up to ``max_count`` messages already queued, in order, taken in one call into C.

        Waits up to ``timeout`` seconds for the first one, like :meth:`recv`.
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
        first = ffi.new("cd_message **")
        leased = ffi.new("size_t *")
        while True:
            wait_ms = min(remaining_ms, _WAIT_SLICE_MS)
            status = lib.cd_receiver_take(self._handle, max_count, wait_ms, first, leased)
            if status == lib.CD_OK:
                self._log_pump_errors()
                for tag, payload, sender, codec_id in self._unpack(first[0], self._copy, leased[0]):
                    decoded = self._decode_safely(tag, payload, sender, codec_id)
                    if decoded is None:
                        continue
                    kind, message = decoded
                    if kind >= _envelope.REPLY:
                        self._route_reply(kind, message)
                    else:
                        messages.append(message)
                if messages:
                    return messages
                continue
            if status == lib.CD_CLOSED:
                raise ReceiverClosed(f"receiver {self._hwnd:#x} is closed")
            if cancelled is not None and cancelled.is_set():
                return []
            if remaining_ms != _checks.WAIT_FOREVER_MS:
                remaining_ms -= wait_ms
                if remaining_ms <= 0:
                    raise RecvTimeout(f"no message arrived within {timeout} s")

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

    @staticmethod
    def _unpack(first: Any, copy: bool, leased: int) -> list[tuple[int, Any, int, int]]:
        """The messages of a list taken from C, as (tag, payload, sender, codec id), and frees the
        list (without copy, each payload's owner frees what it needs once it goes). C packs
        small messages into blocks: a table read in one call, and their payloads as slices of
        the block (copied into ``bytes`` with copy), with no C object of their own. The others
        come one by one, as :meth:`_unpack_one_by_one` hands them over."""
        if first.next == ffi.NULL:  # one message (one send per call): a block would only cost
            return Receiver._unpack_one_by_one(first, copy, leased)
        payloads: list[tuple[int, Any, int, int]] = []
        block, block_size, count = ffi.new("char **"), ffi.new("size_t *"), ffi.new("size_t *")
        rest, after = ffi.new("cd_message **"), ffi.new("cd_message **")
        while first != ffi.NULL:
            if lib.cd_messages_pack(first, block, block_size, count, rest, after) != lib.CD_OK:
                payloads += Receiver._unpack_one_by_one(first, copy, leased)
                break
            whole: Any
            if copy:
                whole = ffi.unpack(block[0], block_size[0])
                lib.cd_block_free(block[0])
            else:
                owner = ffi.gc(block[0], lib.cd_block_free, block_size[0])
                whole = memoryview(ffi.buffer(owner, block_size[0])).toreadonly()
            others = iter(Receiver._unpack_one_by_one(rest[0], copy, leased))
            payloads += [(tag, whole[offset:offset + size], sender, codec_id) if packed else next(others)
                         for tag, sender, offset, size, codec_id, packed
                         in _PACKED_ROW.iter_unpack(whole[:count[0] * _PACKED_ROW.size])]
            first = after[0]
        return payloads

    @staticmethod
    def _unpack_one_by_one(first: Any, copy: bool, leased: int) -> list[tuple[int, Any, int, int]]:
        """:meth:`_unpack` for messages each in a buffer of its own: frees the list, or,
        without copy, hands each message's buffer to its payload, which frees it. ``leased`` of
        them lie in a sender's section (see ``ReceiverStats.leased_messages``): their buffers
        are not behind the message, and freeing them releases the lease."""
        payloads = []
        message = first
        if copy:
            while message != ffi.NULL:
                payloads.append((message.tag, ffi.unpack(message.data, message.size), message.sender,
                                 message.codec_id))
                message = message.next
            lib.cd_messages_free(first)
            return payloads
        while message != ffi.NULL:
            following, size = message.next, message.size
            release = (functools.partial(_free_message, message) if leased and message.lease != ffi.NULL
                       else lib.cd_message_release)
            owner = ffi.gc(ffi.cast("char *", message.data), release, size)
            payloads.append((message.tag, memoryview(ffi.buffer(owner, size)).toreadonly(), message.sender,
                             message.codec_id))
            message = following
        return payloads

    # --- asyncio ------------------------------------------------------------------------

    async def arecv(self, timeout: float | None = None) -> Message:
        """:meth:`recv` for asyncio: waits in a worker thread, never in the event loop.

        Cancelling it leaves the receiver usable and loses nothing: a message that arrived
        as the wait was cancelled is handed to the next recv.
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
        first = ffi.new("cd_message **")
        leased = ffi.new("size_t *")
        while True:
            status = lib.cd_receiver_take(self._handle, self._batch_size, _checks.WAIT_FOREVER_MS, first, leased)
            if status == lib.CD_CLOSED:
                self._replier.close()  # (closed from on_message, close() has returned already)
                lib.cd_receiver_discard(self._handle)  # nothing is left; ends on_error's thread too
                return
            if self._sync:
                self._answer(first[0])
            else:
                for tag, payload, sender, codec_id in self._unpack(first[0], self._copy, leased[0]):
                    self._process(tag, payload, sender, codec_id)
            self._log_pump_errors()
            if self._close_requested:
                self._close_requested = False
                lib.cd_receiver_close(self._handle)

    def _process(self, tag: int, payload: bytes | memoryview, sender: int, codec_id: int = lib.CD_NO_CODEC) -> int:
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

    def _answer(self, native: Any) -> None:
        result = 0
        try:
            if native.section != ffi.NULL and not self._copy:
                result = self._answer_in_place(native)
            else:
                result = self._process(native.tag, ffi.unpack(native.data, native.size), native.sender,
                                       native.codec_id)
        except Exception:
            self._warn("answer", "on_message's answer is not an LRESULT; the sender is answered 0", level=logging.ERROR,
                       exc_info=True)
        finally:
            lib.cd_receiver_reply(self._handle, native, result)

    def _answer_in_place(self, native: Any) -> int:
        """Sync mode, a message in a sender's section: on_message reads it where it is."""
        kept: list[Any] = []

        def unmap_if_kept(_: Any) -> None:
            if kept:
                lib.cd_kept_section_release(kept[0])

        owner = ffi.gc(ffi.cast("char *", native.data), unmap_if_kept)
        buffer = ffi.buffer(owner, native.size)
        del owner  # the buffer holds it: it goes with the last view of the buffer
        whole = memoryview(buffer)
        readonly = whole.toreadonly()
        try:
            return self._process(native.tag, readonly, native.sender, native.codec_id)
        finally:
            escaped = False
            for view in (readonly, whole):
                try:
                    view.release()
                except BufferError:  # something still exports it (numpy, say)
                    escaped = True
            # Only this frame and getrefcount's argument hold the buffer, unless a slice of
            # the view outlives the callback: the section must then stay mapped as long.
            if escaped or sys.getrefcount(buffer) > 2:
                kept.append(lib.cd_receiver_keep_section(self._handle, native))

    def _log_pump_errors(self) -> None:
        stats = ffi.new("cd_stats *")
        lib.cd_receiver_stats(self._handle, stats)
        if stats.pump_errors != self._pump_errors_seen:
            self._warn("pump", f"saw GetMessageW fail {stats.pump_errors - self._pump_errors_seen} time(s); its "
                               f"window goes on")
            self._pump_errors_seen = stats.pump_errors

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
            lib.cd_registry_withdraw(registration)
        if self._dispatcher is not None and threading.current_thread() is self._dispatcher:
            self._close_requested = True
            return
        lib.cd_receiver_close(self._handle)
        if self._dispatcher is not None:
            self._dispatcher.join()
        self._replier.close()
        lib.cd_receiver_discard(self._handle)
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


def _lresult(value: int) -> int:
    if not -(1 << 63) <= value < (1 << 63):
        raise OverflowError(f"on_message returned {value}, which does not fit in an LRESULT")
    return int(value)
