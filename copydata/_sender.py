"""Sender: many messages to one receiver, packed into few WM_COPYDATA frames."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

from . import _checks, _codecs, _native, _seal
from ._constants import (DEFAULT_CHUNK_SIZE, DEFAULT_LINGER, DEFAULT_MAX_BATCH_BYTES, DEFAULT_SHM_THRESHOLD,
                         DEFAULT_TIMEOUT, MAX_MESSAGE_SIZE, PART_HEADER_SIZE, SECTION_PREFIX)
from ._errors import CopyDataError
from ._send import Target, encode_body, resolve
from ._transports import InlineTransport, Link, SectionTransport

__all__ = ["Sender", "SECTION_PREFIX"]

_MAX_TAG = (1 << 64) - 1
# A record's length is a u32.
_MAX_RECORD = (1 << 32) - 1


class Sender:
    """Sends many messages to one receiver, packed into batch frames.

    Each :meth:`send` appends the message (its tag and encoded bytes) to a frame built in C;
    the frame goes out when the next message would take it past ``max_batch_bytes``, when its
    first message has waited ``linger`` seconds (0: at once), on :meth:`flush` and on
    :meth:`close`. A message larger than ``max_batch_bytes`` goes in a frame of its own. A
    copydata receiver unpacks the frame in C and still delivers every message separately, in
    order, with its own tag.

    A frame larger than ``shm_threshold`` is built in a shared-memory section of the
    sender's (owned by and open only to the current user, under an unguessable name) and
    only a small descriptor of it travels as WM_COPYDATA: each message is copied into the
    section once and out of it once, by the receiver, and many large messages cost one round
    trip. The section has two halves of ``max_batch_bytes``: the receiver answers a frame
    before it copies it out, and the sender fills the other half meanwhile. A queue-mode
    receiver copies no message of 1 MiB or more at all: it reads it in place, under a lease,
    and the sender writes into that half again once the receiver has released it (or, after
    50 ms and 4 ms per MiB of a half, moves to a new section and copies for a second, then
    two, doubling up to a minute each time the receiver holds on, before it offers leases
    again). While the receiver reads
    in place, each next frame is announced in the section with a posted message rather than
    sent, with no round trip; its answer is awaited before anything else goes out. A message larger
    than ``max_batch_bytes`` goes alone in a frame, the halves growing to fit it, up to eight
    times ``max_batch_bytes`` or 64 MiB, whichever is less; a larger one goes through the halves
    in parts, which the receiver copies and puts back together (sent whole instead to a
    receiver in sync mode, which takes no parts). With
    ``shm_threshold=None`` frames travel in WM_COPYDATA itself (so at most
    :data:`~copydata.MAX_MESSAGE_SIZE` bytes each), and a message larger than ``chunk_size``
    goes in parts of at most ``chunk_size`` bytes, which the receiver puts back together.
    Either way messages arrive in order.

    When the receiver refuses a frame (its queue is full), the sender waits and offers it
    again, for up to ``timeout`` seconds, so nothing it accepted is lost: :meth:`send` and
    :meth:`flush` block meanwhile. A frame the receiver does not answer at all within
    ``timeout`` (it is hung, or slow in sync mode) raises :class:`SendTimeout`: the receiver may
    have begun it and take it still, so its messages may or may not arrive, and it is never
    offered again (that could deliver them twice); the Sender goes on with the next frame. A frame it could never take (more messages or bytes than
    its limits allow) raises :class:`Rejected` at once instead, and its messages are lost; a
    frame holds at most 65,536 messages. An error in a background (linger) send is raised by
    the next call. Only copydata receivers understand these frames. One in sync mode takes a
    frame's messages one at a time (those in shared memory in place, with ``copy=False``),
    but refuses parts.

    ``key`` seals every frame for a receiver created with that key (see :class:`Receiver`).

    In asyncio, :meth:`asend`, :meth:`aflush`, :meth:`aclose` and ``async with`` do the same
    without blocking the event loop.
    """

    def __init__(
        self,
        target: Target,
        *,
        codec: _codecs.CodecSpec = "bytes",
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        linger: float = DEFAULT_LINGER,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        shm_threshold: int | None = DEFAULT_SHM_THRESHOLD,
        timeout: float | None = DEFAULT_TIMEOUT,
        key: bytes | None = None,
    ) -> None:
        hwnd = resolve(target)
        sealer = None if key is None else _seal.Sealer(key)
        largest = MAX_MESSAGE_SIZE - (0 if key is None else _seal.HEADER_SIZE)
        self._codec = _codecs.resolve(codec)
        codec_id = _codecs.codec_id(self._codec)
        _checks.positive_size(max_batch_bytes, "max_batch_bytes")
        if max_batch_bytes < _native.Batch.OVERHEAD:
            raise ValueError(f"max_batch_bytes must be at least {_native.Batch.OVERHEAD} (one empty message)")
        if isinstance(linger, bool) or not isinstance(linger, (int, float)) or not 0 <= linger < 3600:
            raise ValueError(f"linger must be a number of seconds from 0 to 3600; got {linger!r}")
        self._linger = float(linger)
        chunk_size = _checks.positive_size(chunk_size, "chunk_size", most=largest - PART_HEADER_SIZE)
        if shm_threshold is not None:
            _checks.positive_size(shm_threshold, "shm_threshold")
        self._hwnd = hwnd
        self._timeout = timeout
        self._encodes = not isinstance(self._codec, _codecs.BytesCodec)
        self._batch = _native.Batch(codec_id)
        link = Link(hwnd, timeout, _checks.timeout_ms(timeout), sealer)
        # The transport, chosen once: frames in WM_COPYDATA itself (each within its limit), or,
        # beyond shm_threshold, in shared memory (each within max_batch_bytes).
        self._transport: InlineTransport | SectionTransport
        if shm_threshold is None:
            self._transport = InlineTransport(link, self._batch, codec_id, min(max_batch_bytes, largest), chunk_size)
        else:
            self._transport = SectionTransport(link, self._batch, codec_id, max_batch_bytes,
                                               min(shm_threshold, largest))
        self._lock = threading.Condition(threading.Lock())
        self._first_waiting_since: float | None = None
        self._lingerer_idle = False  # the linger thread waits for a frame to start, with no deadline
        self._background_error: CopyDataError | None = None
        self._closed = False
        self._lingerer: threading.Thread | None = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None  # for asyncio, made on first use
        self._worker_lock = threading.Lock()
        self._worker_backlog = 0  # calls submitted to the worker and not yet done
        if self._linger > 0:
            self._lingerer = threading.Thread(target=self._linger_loop, daemon=True,
                                              name=f"copydata-sender-{self._hwnd:#x}")
            self._lingerer.start()

    @property
    def target(self) -> int:
        """The window handle this sender sends to."""
        return self._hwnd

    @property
    def pending(self) -> int:
        """Messages sent but not yet accepted by the receiver."""
        return self._batch.records

    def send(self, data: Any, tag: int = 0) -> None:
        """Add one message; it goes out with the next frame."""
        tag, pointer = self._prepare(data, tag)
        with self._lock:
            self._add(tag, pointer, wait=True)

    def flush(self) -> None:
        """Send what is pending; returns once the receiver has accepted all of it."""
        with self._lock:
            self._raise_if_unusable()
            self._flush_frame()
            self._transport.settle()

    def close(self) -> None:
        """Flush, then stop. Closing twice is harmless."""
        try:
            with self._lock:
                if self._closed:
                    return
                try:
                    self._raise_if_unusable()
                    self._flush_frame(last=True)
                    self._transport.settle()
                finally:
                    self._closed = True
                    self._lock.notify_all()
                    self._transport.close()
        finally:
            if self._lingerer is not None:
                self._lingerer.join()
            with self._worker_lock:
                if self._worker is not None:
                    self._worker.shutdown(wait=False)  # its thread ends once idle (it may be this one)

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- asyncio ------------------------------------------------------------------------

    async def asend(self, data: Any, tag: int = 0) -> None:
        """:meth:`send` for asyncio. A message that joins the frame being built is copied in at
        once, in the event loop's thread; one that would send a frame (the frame is full,
        ``linger=0``, a message sent in parts), or that comes while another one waits, waits
        in this Sender's worker thread instead, so the loop never waits for the receiver.
        Messages go out in the order of the calls.

        Cancelling it stops the wait, not the message: it is still sent, in its turn.
        """
        tag, pointer = self._prepare(data, tag)
        if not self._worker_busy() and self._lock.acquire(blocking=False):
            try:
                if self._add(tag, pointer, wait=False):
                    return
            finally:
                self._lock.release()
        await self._in_worker(self._send_prepared, tag, pointer)

    async def aflush(self) -> None:
        """:meth:`flush` for asyncio, in this Sender's worker thread. Cancelling it stops the
        wait, not the flush: what was pending is still sent."""
        await self._in_worker(self.flush)

    async def aclose(self) -> None:
        """:meth:`close` for asyncio, in this Sender's worker thread (after what waits there)."""
        if not self._closed:
            await self._in_worker(self.close)

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<copydata.Sender to {self._hwnd:#x}{' closed' if self._closed else ''}>"

    # --- adding a message -----------------------------------------------------------------

    def _prepare(self, data: Any, tag: int) -> tuple[int, Any]:
        """The tag checked and the message encoded, as a pointer to its bytes."""
        # The common case (an int tag, bytes for the bytes codec) checks inline: this runs per message.
        if type(tag) is not int or not 0 <= tag <= _MAX_TAG:
            tag = _checks.tag(tag)
        pointer = _native.pointer(data if not self._encodes and type(data) is not str
                                  else encode_body(data, self._codec))
        return tag, pointer

    def _send_prepared(self, tag: int, pointer: Any) -> None:
        with self._lock:
            self._add(tag, pointer, wait=True)

    def _worker_busy(self) -> bool:
        with self._worker_lock:
            return self._worker_backlog > 0

    async def _in_worker(self, function: Any, *args: Any) -> None:
        """Runs ``function(*args)`` in this Sender's one worker thread, after the calls before
        it: a single thread keeps asyncio calls in order, even those cancelled meanwhile."""
        with self._worker_lock:
            if self._closed:
                self._raise_if_unusable()
            if self._worker is None:
                self._worker = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"copydata-sender-async-{self._hwnd:#x}")

            def run() -> None:
                try:
                    function(*args)
                finally:
                    with self._worker_lock:
                        self._worker_backlog -= 1

            done = self._worker.submit(run)  # under the lock: close() cannot shut the worker in between
            self._worker_backlog += 1
        # Shielded: cancelling the wait must not cancel a call that has not started yet.
        await asyncio.shield(asyncio.wrap_future(done))

    # --- with the lock held ---------------------------------------------------------------

    def _add(self, tag: int, pointer: Any, wait: bool) -> bool:
        """Adds the message to the frame, sending frames (and parts) as needed. With ``wait``
        False, only where that sends nothing: otherwise it adds nothing and returns False."""
        size = len(pointer)
        if self._closed or self._background_error is not None:
            self._raise_if_unusable()
        transport = self._transport
        if size > _MAX_RECORD and isinstance(transport, SectionTransport):
            raise ValueError(f"a message of {size} bytes is larger than a frame can hold ({_MAX_RECORD})")
        in_parts = transport.in_parts(size)
        if not wait and (in_parts or self._linger == 0):
            return False
        if in_parts:
            self._flush_frame()  # what came before goes first
            if transport.send_parts(tag, pointer, size):
                return True
        transport.make_room(size)
        if not self._batch.add(tag, pointer, transport.frame_limit):
            if not wait:
                return False
            self._flush_frame()
            transport.make_room_alone(size)
            if not self._batch.add(tag, pointer, transport.frame_limit):
                raise MemoryError(f"could not add {size} bytes to an empty batch frame")
        if self._linger == 0:
            self._flush_frame()
        elif self._first_waiting_since is None:
            self._first_waiting_since = time.monotonic()
            # Woken only from its wait without a deadline: a frame that starts while it waits
            # for an earlier one's deadline has a later one, and waking it for each frame made
            # send() wait for the lock (21 ms a GiB in 1 MiB messages).
            if self._lingerer_idle:
                self._lock.notify_all()
        return True

    def _raise_if_unusable(self) -> None:
        if self._closed:
            raise ValueError("this Sender is closed")
        error, self._background_error = self._background_error, None
        if error is not None:
            raise error

    def _flush_frame(self, last: bool = False) -> None:
        """Sends the frame, then starts the next one (``last``: none follows)."""
        count = self._batch.records
        if count == 0:
            return
        try:
            self._transport.flush(count, last)
        finally:
            if self._batch.records == 0:
                self._first_waiting_since = None

    def _linger_loop(self) -> None:
        with self._lock:
            while not self._closed:
                if self._first_waiting_since is None or self._background_error is not None:
                    self._lingerer_idle = True
                    self._lock.wait()
                    self._lingerer_idle = False
                    continue
                remaining = self._first_waiting_since + self._linger - time.monotonic()
                if remaining > 0:
                    self._lock.wait(remaining)
                    continue
                try:
                    self._flush_frame()
                except CopyDataError as error:
                    self._background_error = error
