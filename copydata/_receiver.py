"""Receiver: a message-only window whose WM_COPYDATA messages reach Python in arrival order."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterator, NamedTuple

from . import _checks
from ._core import ffi, lib
from ._errors import CopyDataError, NameInUse, ReceiverClosed, RecvTimeout
from ._win32 import describe_error

logger = logging.getLogger("copydata")

#: The largest payload one WM_COPYDATA carries by default, on both sides. Wine 8.0 fails
#: cross-process messages of 2 MiB and more, so the default stays under that everywhere.
MAX_MESSAGE_SIZE = 2_000_000
DEFAULT_MAX_QUEUE_MESSAGES = 100_000
DEFAULT_MAX_QUEUE_BYTES = 256 * 1024 * 1024
DEFAULT_BATCH_SIZE = 256
# recv() waits in slices so that Ctrl-C reaches a main thread blocked in it.
_WAIT_SLICE_MS = 250


class Message(NamedTuple):
    """One received WM_COPYDATA."""

    tag: int
    """``dwData``: the sender's number for the kind of message."""
    data: bytes
    """``lpData[0:cbData]``: the payload, copied."""
    sender: int
    """``wParam``: the window the sender names as its own, 0 if none. Nothing verifies it."""


class ReceiverStats(NamedTuple):
    """Counts kept by the window procedure since the receiver opened."""

    received_messages: int
    """Accepted into the queue (the sender was answered 1)."""
    received_bytes: int
    refused_messages: int
    """Answered 0: too large, queue full, malformed, or arriving while closing."""
    refused_bytes: int
    refused_too_large: int
    refused_queue_full: int
    refused_malformed: int
    refused_closing: int
    dropped_messages: int
    """Accepted, then discarded undelivered because the receiver was closed."""
    dropped_bytes: int
    queued_messages: int
    """Waiting to be delivered now."""
    queued_bytes: int
    pump_errors: int
    """Times GetMessageW failed and the window went on."""


class Receiver:
    """A window that other processes send WM_COPYDATA to.

    With ``on_message``, every message is passed to it, in arrival order, on one dispatch
    thread; without it, the receiver is a queue read with :meth:`recv` or by iteration.

    The window procedure copies each payload into a bounded queue in C and answers the sender
    at once (``send`` returns 1), so a slow callback never holds a sender up; a message that
    does not fit (``max_message_size``, ``max_queue_messages``, ``max_queue_bytes``) is
    answered 0 and counted in :attr:`stats`, and nothing already queued is lost.

    With ``sync=True``, the sender waits while ``on_message`` runs, and an int it returns is
    what ``send`` returns (``None`` answers 1; an exception answers 0).

    ``name`` publishes the window so that ``send("name", ...)`` and :func:`copydata.find`
    reach it; two live receivers cannot hold one name (:class:`NameInUse`).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        on_message: Callable[[Message], object] | None = None,
        sync: bool = False,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_queue_messages: int = DEFAULT_MAX_QUEUE_MESSAGES,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if name is not None:
            _checks.receiver_name(name)
        if on_message is not None and not callable(on_message):
            raise TypeError(f"on_message must be callable, not {type(on_message).__name__}")
        if sync and on_message is None:
            raise ValueError("sync=True needs on_message: it is what the sender waits for")
        _checks.positive_size(max_message_size, "max_message_size", most=0xFFFFFFFF)
        _checks.positive_size(max_queue_messages, "max_queue_messages")
        _checks.positive_size(max_queue_bytes, "max_queue_bytes")
        _checks.positive_size(batch_size, "batch_size", most=1 << 20)
        if max_message_size > max_queue_bytes:
            raise ValueError(f"max_message_size ({max_message_size}) cannot exceed max_queue_bytes "
                             f"({max_queue_bytes}): such a message could never be queued")

        self._name = name
        self._on_message = on_message
        self._sync = bool(sync)
        self._batch_size = batch_size
        self._state_lock = threading.Lock()
        self._closed = False
        self._close_requested = False
        self._pump_errors_seen = 0
        self._registration = ffi.NULL
        self._dispatcher: threading.Thread | None = None

        config = ffi.new("cd_receiver_config *", {
            "max_message_size": max_message_size,
            "max_queue_messages": max_queue_messages,
            "max_queue_bytes": max_queue_bytes,
            "sync": int(self._sync),
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
                self._publish(name)
            if on_message is not None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name=f"copydata-dispatch-{self._hwnd:#x}", daemon=True)
                self._dispatcher.start()
        except BaseException:
            self.close()
            raise

    def _publish(self, name: str) -> None:
        registration = ffi.new("cd_name_registration **")
        error = ffi.new("uint32_t *")
        status = lib.cd_name_publish(name, self._hwnd, registration, error)
        if status == lib.CD_NAME_IN_USE:
            raise NameInUse(f"a live receiver already holds the name {name!r}")
        if status != lib.CD_OK:
            raise CopyDataError(f"could not publish the name {name!r}: {describe_error(status, error[0])}")
        self._registration = registration[0]

    # --- properties ---------------------------------------------------------------------

    @property
    def hwnd(self) -> int:
        """The window handle that senders target."""
        return self._hwnd

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> ReceiverStats:
        """A snapshot of the window procedure's counts (still readable after close)."""
        stats = ffi.new("cd_stats *")
        lib.cd_receiver_stats(self._handle, stats)
        return ReceiverStats(*(getattr(stats, field) for field in ReceiverStats._fields))

    # --- queue mode ---------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """The next message; waits up to ``timeout`` seconds (None: without limit).

        Raises :class:`RecvTimeout` when nothing arrived in time and :class:`ReceiverClosed`
        once the receiver is closed.
        """
        return self.recv_many(1, timeout)[0]

    def recv_many(self, max_count: int, timeout: float | None = None) -> list[Message]:
        """Up to ``max_count`` messages already queued, in order, in one call into C.

        Waits up to ``timeout`` seconds for the first one, like :meth:`recv`.
        """
        if self._on_message is not None:
            raise RuntimeError("this receiver delivers to on_message; recv() is for receivers without one")
        _checks.positive_size(max_count, "max_count")
        remaining_ms = _checks.timeout_ms(timeout, allow_zero=True)
        first = ffi.new("cd_message **")
        while True:
            wait_ms = min(remaining_ms, _WAIT_SLICE_MS)
            status = lib.cd_receiver_take(self._handle, max_count, wait_ms, first)
            if status == lib.CD_OK:
                self._log_pump_errors()
                return self._unpack(first[0])
            if status == lib.CD_CLOSED:
                raise ReceiverClosed(f"receiver {self._hwnd:#x} is closed")
            if remaining_ms != _checks.WAIT_FOREVER_MS:
                remaining_ms -= wait_ms
                if remaining_ms <= 0:
                    raise RecvTimeout(f"no message arrived within {timeout} s")

    def __iter__(self) -> Iterator[Message]:
        """Every message, until the receiver is closed."""
        while True:
            try:
                yield self.recv()
            except ReceiverClosed:
                return

    @staticmethod
    def _unpack(first: object) -> list[Message]:
        messages = []
        message = first
        while message != ffi.NULL:
            messages.append(Message(message.tag, ffi.unpack(message.data, message.size), message.sender))
            message = message.next
        lib.cd_messages_free(first)
        return messages

    # --- callback mode ------------------------------------------------------------------

    def _dispatch(self) -> None:
        first = ffi.new("cd_message **")
        while True:
            status = lib.cd_receiver_take(self._handle, self._batch_size, _checks.WAIT_FOREVER_MS, first)
            if status == lib.CD_CLOSED:
                return
            if self._sync:
                self._answer(first[0])
            else:
                for message in self._unpack(first[0]):
                    self._deliver(message)
            self._log_pump_errors()
            if self._close_requested:
                self._close_requested = False
                lib.cd_receiver_close(self._handle)

    def _deliver(self, message: Message) -> object:
        try:
            return self._on_message(message)  # type: ignore[misc]
        except Exception:
            logger.exception("on_message raised on message tag=%d size=%d from %#x; delivery goes on",
                             message.tag, len(message.data), message.sender)
            return None

    def _answer(self, native: object) -> None:
        result = 0
        try:
            message = Message(native.tag, ffi.unpack(native.data, native.size), native.sender)
            value = self._on_message(message)  # type: ignore[misc]
            result = 1 if value is None else int(value)
            if not -(1 << 63) <= result < (1 << 63):
                raise OverflowError(f"on_message returned {result}, which does not fit in an LRESULT")
        except Exception:
            logger.exception("on_message raised in sync mode; the sender is answered 0")
            result = 0
        finally:
            lib.cd_receiver_reply(self._handle, native, result)

    def _log_pump_errors(self) -> None:
        stats = ffi.new("cd_stats *")
        lib.cd_receiver_stats(self._handle, stats)
        if stats.pump_errors != self._pump_errors_seen:
            logger.warning("GetMessageW failed %d time(s) on receiver %#x; its window goes on",
                           stats.pump_errors - self._pump_errors_seen, self._hwnd)
            self._pump_errors_seen = stats.pump_errors

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Destroy the window, withdraw the name, and release every thread and handle.

        Messages accepted before the close are still passed to ``on_message`` before this
        returns; a queue-mode receiver drops (and counts) what nobody received. Called from
        inside ``on_message``, it returns at once and the window closes after the callback.
        Closing twice is harmless.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        if self._registration != ffi.NULL:
            lib.cd_name_withdraw(self._registration)
            self._registration = ffi.NULL
        if self._dispatcher is not None and threading.current_thread() is self._dispatcher:
            self._close_requested = True
            return
        lib.cd_receiver_close(self._handle)
        if self._dispatcher is not None:
            self._dispatcher.join()
        lib.cd_receiver_discard(self._handle)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        name = f" name={self._name!r}" if self._name is not None else ""
        return f"<copydata.Receiver hwnd={self._hwnd:#x}{name} {state}>"
