"""Sender: many messages to one receiver, packed into few WM_COPYDATA frames."""

from __future__ import annotations

import array
import asyncio
import concurrent.futures
import threading
import time
from typing import Any, Iterable, NamedTuple

from . import _checks, _codecs, _native, _seal
from ._constants import (DEFAULT_CHUNK_SIZE, DEFAULT_LINGER, DEFAULT_MAX_BATCH_BYTES, DEFAULT_SHM_THRESHOLD,
                         DEFAULT_TIMEOUT, MAX_MESSAGE_SIZE, PART_HEADER_SIZE, SECTION_PREFIX)
from ._errors import CopyDataError, MessageTooLarge
from ._send import Target, encode_body, resolve
from ._transports import InlineTransport, Link, SectionTransport

__all__ = ["Sender", "SECTION_PREFIX"]

_MAX_TAG = (1 << 64) - 1
# A record's length is a u32.
_MAX_RECORD = (1 << 32) - 1
# send_many joins messages up to this size into one buffer, for C to take in one call; a larger
# one is handed over where it lies, as send hands it over.
_SMALL = 64 << 10


class _Many(NamedTuple):
    """send_many's messages, checked and ready for C."""

    items: list[Any]
    sizes: array.array       # each one's size in bytes ('Q')
    tags: array.array | None  # each one's tag ('Q'), or None: all have ``tag``
    tag: int
    data: bytes              # the small ones, back to back
    small: list[bool] | None  # which ones are in ``data`` (None: all)


def _byte_sizes(items: list[Any]) -> array.array:
    """Each item's size in bytes; TypeError naming the first that is not a bytes-like object."""
    sizes = array.array("Q")
    for index, item in enumerate(items):
        if type(item) is bytes:
            sizes.append(len(item))
            continue
        if isinstance(item, str):
            raise TypeError(f"payloads[{index}] is a str, not bytes-like: encode it first, or use a text codec; "
                            f"nothing was sent")
        try:
            view = memoryview(item)
        except TypeError:
            raise TypeError(f"payloads[{index}] is a {type(item).__name__}, not a bytes-like object; "
                            f"nothing was sent") from None
        if not view.c_contiguous:
            raise TypeError(f"payloads[{index}] is not a contiguous buffer; nothing was sent")
        sizes.append(view.nbytes)
    return sizes


def _tags_for(tag: int | Iterable[int], count: int) -> array.array | None:
    """The tags of ``count`` messages as one array, or None when ``tag`` is one int for all."""
    if isinstance(tag, int) and not isinstance(tag, bool):
        _checks.tag(tag)
        return None
    if isinstance(tag, (str, bytes)):
        raise TypeError(f"tag must be an int or an iterable of ints, not {type(tag).__name__}")
    tags = list(tag)  # type: ignore[arg-type]
    if len(tags) != count:
        raise ValueError(f"{len(tags)} tags for {count} payloads: give one tag, or one per payload; "
                         f"nothing was sent")
    try:
        return array.array("Q", tags)
    except (TypeError, OverflowError):
        for index, value in enumerate(tags):
            try:
                _checks.tag(value)
            except (TypeError, ValueError) as error:
                raise type(error)(f"tag[{index}]: {error}; nothing was sent") from None
        raise


class Sender:
    """Sends many messages to one receiver, packed into batch frames.

    Each [`send`][copydata.Sender.send] appends the message (its tag and encoded bytes) to a frame built in C;
    the frame goes out when the next message would take it past ``max_batch_bytes``, when its
    first message has waited ``linger`` seconds (0: at once), on [`flush`][copydata.Sender.flush]
    and on [`close`][copydata.Sender.close]. A message larger than ``max_batch_bytes`` goes in a frame of its own. A
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
    [`MAX_MESSAGE_SIZE`][copydata.MAX_MESSAGE_SIZE] bytes each), and a message larger than ``chunk_size``
    goes in parts of at most ``chunk_size`` bytes, which the receiver puts back together.
    Either way messages arrive in order.

    When the receiver refuses a frame (its queue is full), the sender waits and offers it
    again, for up to ``timeout`` seconds, so nothing it accepted is lost: ``send`` and
    ``flush`` block meanwhile. A frame the receiver does not answer at all within
    ``timeout`` (it is hung, or slow in sync mode) raises [`SendTimeout`][copydata.SendTimeout]: the receiver may
    have begun it and take it still, so its messages may or may not arrive, and it is never
    offered again (that could deliver them twice); the Sender goes on with the next frame. A frame it could never take (more messages or bytes than
    its limits allow) raises [`Rejected`][copydata.Rejected] at once instead, and its messages are lost; a
    frame holds at most 65,536 messages. An error in a background (linger) send is raised by
    the next call. Only copydata receivers understand these frames. One in sync mode takes a
    frame's messages one at a time (those in shared memory in place, with ``copy=False``),
    but refuses parts.

    In asyncio, [`asend`][copydata.Sender.asend], [`asend_many`][copydata.Sender.asend_many],
    [`aflush`][copydata.Sender.aflush], [`aclose`][copydata.Sender.aclose] and ``async with`` do
    the same without blocking the event loop.

    Parameters
    ----------
    target
        The receiver: its window handle, its name, or the [`Receiver`][copydata.Receiver].
    codec
        How each message is encoded (a name or an object with ``encode`` and ``decode``); a
        copydata receiver decodes it by itself.
    max_batch_bytes
        The largest frame, and the size of each half of the shared-memory section.
    linger
        Seconds the first message of a frame may wait for others before the frame goes
        (0: every send sends at once; at most 3600).
    chunk_size
        With ``shm_threshold=None``, a message larger than this goes in parts of this size.
    shm_threshold
        A frame larger than this goes through shared memory (None: never; frames then travel
        in WM_COPYDATA, each within its limit).
    timeout
        Seconds a refused frame is offered again, and an answer awaited (None: no limit).
    key
        Seals every frame for a receiver created with that key (see
        [`Receiver`][copydata.Receiver]).

    Raises
    ------
    TargetNotFound
        No live receiver has that name, or no window that handle.
    ValueError
        A size, ``linger`` or ``key`` out of range.
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
        # send's common case takes the lock itself (a Condition's own __enter__ is a Python call).
        self._mutex = threading.Lock()
        self._lock = threading.Condition(self._mutex)
        self._plain = not self._encodes and self._linger > 0
        self._fill_limits = self._transport.fill_limits  # fixed once the transport is chosen
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
        """Add one message; it goes out with the next frame.

        Parameters
        ----------
        data
            The message: a bytes-like object for the bytes codec (copied into the frame at
            once), or what the Sender's codec encodes.
        tag
            Its tag (``dwData`` to the receiver), 0 to 2**64-1.

        Raises
        ------
        Rejected
            A frame that went out meanwhile was refused for good (the receiver could never
            take it), or a split message was refused by a receiver in sync mode.
        SendTimeout
            A frame that went out meanwhile was neither taken nor answered within ``timeout``.
        TargetNotFound
            The receiver's window is gone.
        ValueError
            The Sender is closed, or the tag is out of range.
        TypeError
            ``data`` is not what the codec takes (a str for the bytes codec, say).
        """
        # The common case first, with nothing it does not need: an int tag, bytes for the bytes
        # codec, a frame with room for it (copied in by C straight from the bytes object).
        if type(tag) is not int or not 0 <= tag <= _MAX_TAG:
            tag = _checks.tag(tag)
        if type(data) is bytes and self._plain:
            with self._mutex:
                limit_lent, limit_own, largest = self._fill_limits
                if len(data) <= largest and not self._closed and self._background_error is None \
                        and self._batch.add_within(tag, data, limit_lent, limit_own):
                    if self._first_waiting_since is None:
                        self._frame_started()
                    return
        tag, pointer = self._prepare(data, tag)
        with self._lock:
            self._add(tag, pointer, wait=True)

    def send_many(self, payloads: Iterable[Any], tag: int | Iterable[int] = 0) -> None:
        """Add many messages at once: what a loop of [`send`][copydata.Sender.send] does, with
        one call into C for all those that join a frame as they are.

        Messages go out in order, in frames cut at ``max_batch_bytes``, large ones through
        shared memory or in parts, exactly as ``send`` would send them. Returns once every
        message is in a frame ([`flush`][copydata.Sender.flush] for delivery); with
        ``linger=0``, the last frame is sent before it returns.

        Parameters
        ----------
        payloads
            Any iterable of bytes-like objects (encoded first with the Sender's codec, if it is
            not "bytes").
        tag
            One tag for every message, or an iterable of as many tags as there are payloads.

        Raises
        ------
        TypeError
            A payload that is not bytes-like (or a tag that is not an int), naming its index;
            nothing of the call was sent.
        MessageTooLarge
            A payload larger than a frame can hold (4 GiB - 1 through shared memory), naming
            its index; nothing of the call was sent.
        ValueError
            A tag out of range, or a number of tags other than of payloads; nothing was sent.
        Rejected, SendTimeout, TargetNotFound
            As [`send`][copydata.Sender.send], for a frame that went out meanwhile.
        """
        batch = self._prepare_many(payloads, tag)
        with self._lock:
            self._add_many(batch)

    def flush(self) -> None:
        """Send what is pending; returns once the receiver has accepted all of it.

        Raises
        ------
        Rejected, SendTimeout, TargetNotFound
            As [`send`][copydata.Sender.send]; also an error of a background (linger) send.
        ValueError
            The Sender is closed.
        """
        with self._lock:
            self._raise_if_unusable()
            self._flush_frame()
            self._transport.settle()

    def close(self) -> None:
        """Flush, then stop: the shared-memory section and the threads are released. Closing
        twice is harmless.

        Raises
        ------
        Rejected, SendTimeout, TargetNotFound
            As [`flush`][copydata.Sender.flush]; the Sender is closed all the same.
        """
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
        """[`send`][copydata.Sender.send] for asyncio. A message that joins the frame being built is copied in at
        once, in the event loop's thread; one that would send a frame (the frame is full,
        ``linger=0``, a message sent in parts), or that comes while another one waits, waits
        in this Sender's worker thread instead, so the loop never waits for the receiver.
        Messages go out in the order of the calls.

        Cancelling it stops the wait, not the message: it is still sent, in its turn.

        Parameters
        ----------
        data
            The message, as for ``send``.
        tag
            Its tag, 0 to 2**64-1.

        Raises
        ------
        Rejected, SendTimeout, TargetNotFound, ValueError, TypeError
            As [`send`][copydata.Sender.send].
        """
        tag, pointer = self._prepare(data, tag)
        if not self._worker_busy() and self._lock.acquire(blocking=False):
            try:
                if self._add(tag, pointer, wait=False):
                    return
            finally:
                self._lock.release()
        await self._in_worker(self._send_prepared, tag, pointer)

    async def asend_many(self, payloads: Iterable[Any], tag: int | Iterable[int] = 0) -> None:
        """[`send_many`][copydata.Sender.send_many] for asyncio: the payloads are checked (and
        encoded) at once, in the event loop's thread, so a bad one raises here and nothing is
        sent; they are added in this Sender's worker thread, after the calls before, so the loop
        never waits for the receiver. Cancelling it stops the wait, not the messages: they are
        still sent, in turn.

        Parameters
        ----------
        payloads
            Any iterable of bytes-like objects (encoded first with the Sender's codec).
        tag
            One tag for every message, or an iterable of as many tags as there are payloads.

        Raises
        ------
        TypeError, MessageTooLarge, ValueError, Rejected, SendTimeout, TargetNotFound
            As [`send_many`][copydata.Sender.send_many].
        """
        batch = self._prepare_many(payloads, tag)
        await self._in_worker(self._send_prepared_many, batch)

    async def aflush(self) -> None:
        """[`flush`][copydata.Sender.flush] for asyncio, in this Sender's worker thread.
        Cancelling it stops the wait, not the flush: what was pending is still sent."""
        await self._in_worker(self.flush)

    async def aclose(self) -> None:
        """[`close`][copydata.Sender.close] for asyncio, in this Sender's worker thread (after
        what waits there)."""
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

    def _send_prepared_many(self, batch: _Many) -> None:
        with self._lock:
            self._add_many(batch)

    def _prepare_many(self, payloads: Iterable[Any], tag: int | Iterable[int]) -> _Many:
        """The payloads encoded, checked and laid out back to back, with their sizes and tags;
        TypeError, ValueError or MessageTooLarge naming the first bad one, before anything is sent."""
        items = payloads if type(payloads) is list else list(payloads)
        if self._encodes:
            items = [encode_body(item, self._codec) for item in items]
        try:
            sizes = array.array("Q", map(len, items))
            if max(sizes, default=0) <= _SMALL:
                data = b"".join(items)  # checks every item is a contiguous bytes-like object, in C
                if sum(sizes) != len(data):  # an item of wider elements (an array of 'H', say)
                    sizes = _byte_sizes(items)
            else:  # not joined: the large ones are handed over where they lie (below)
                sizes = _byte_sizes(items)
        except (TypeError, BufferError):
            _byte_sizes(items)  # raises, naming the first one that is not
            raise
        largest = max(sizes, default=0)
        if largest > _MAX_RECORD and isinstance(self._transport, SectionTransport):
            index = next(index for index, size in enumerate(sizes) if size > _MAX_RECORD)
            raise MessageTooLarge(f"payloads[{index}] has {sizes[index]} bytes, more than a frame can hold "
                                  f"({_MAX_RECORD}); nothing was sent")
        tags = _tags_for(tag, len(items))
        small = None
        if largest > _SMALL:
            # Each large one (it goes alone in a frame, or in parts) is handed over where it lies.
            small = [size <= _SMALL for size in sizes]
            data = b"".join([item for item, is_small in zip(items, small) if is_small])
        return _Many(items, sizes, tags, tag if isinstance(tag, int) else 0, data, small)

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
            self._frame_started()
        return True

    def _add_many(self, batch: _Many) -> None:
        """Adds every message of ``batch``, in order, sending frames (and parts) as needed."""
        if self._closed or self._background_error is not None:
            self._raise_if_unusable()
        count, index, offset = len(batch.items), 0, 0
        small = batch.small
        while index < count:
            if small is None or small[index]:
                limit_lent, limit_own, largest = self._fill_limits
                added, offset = self._batch.add_many(batch.tags, batch.tag, batch.data, batch.sizes, index, count,
                                                     min(largest, _SMALL), offset, limit_lent, limit_own)
                index += added
                if index == count:
                    break
                if small is None or small[index]:  # the frame is full: the next one goes through send's own path
                    pointer = _native.pointer(memoryview(batch.data)[offset:offset + batch.sizes[index]])
                    offset += batch.sizes[index]
                else:
                    pointer = _native.pointer(batch.items[index])
            else:
                pointer = _native.pointer(batch.items[index])
            self._add(batch.tag if batch.tags is None else batch.tags[index], pointer, wait=True)
            index += 1
        if self._linger == 0:
            self._flush_frame()
        elif self._first_waiting_since is None and self._batch.records:
            self._frame_started()

    def _frame_started(self) -> None:
        """A first message joined an empty frame: the linger's clock starts."""
        self._first_waiting_since = time.monotonic()
        # Woken only from its wait without a deadline: a frame that starts while it waits for
        # an earlier one's deadline has a later one, and waking it for each frame made send()
        # wait for the lock (21 ms a GiB in 1 MiB messages).
        if self._lingerer_idle:
            self._lock.notify_all()

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
