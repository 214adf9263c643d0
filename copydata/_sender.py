"""Sender: many messages to one receiver, packed into few WM_COPYDATA frames."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import struct
import threading
import time
from typing import Any

from . import _checks, _codecs, _envelope, _seal
from ._core import ffi, lib
from ._errors import CopyDataError, Rejected
from ._receiver import MAX_MESSAGE_SIZE
from ._win32 import describe_error
from ._send import DEFAULT_TIMEOUT, SMTO_ABORTIFHUNG, Target, encode_body, resolve, send_error

DEFAULT_MAX_BATCH_BYTES = 8 << 20
DEFAULT_LINGER = 0.005
DEFAULT_CHUNK_SIZE = 1 << 20
DEFAULT_SHM_THRESHOLD = 64 << 10
SECTION_PREFIX = "Local\\copydata.v1.shm."
# What follows the envelope header in a part frame (see csrc/copydata.h; the transfer id is in
# the header's request-id field): the message's total size and this part's offset.
_PART_FIELDS = struct.Struct("<QQ")
# ... and in a section descriptor (the lease id in the request-id field): offset, length, release
# offset, ring offset, the section's secret, the name's length in characters (then the name in
# UTF-16). The range holds a frame.
_SECTION_FIELDS = struct.Struct(f"<QQQQ{lib.CD_SECTION_SECRET_SIZE}sI")
# A message larger than max_batch_bytes travels whole, alone in its frame, up to this many
# times max_batch_bytes and at most _LARGEST_WHOLE: a queue-mode receiver reads it in place,
# where parts are copied out and put back together (under Wine, 1.5 times the rate at 16 MiB,
# 1.25 times at 64 MiB, where the receiver rose 134 MB above idle instead of 218). The halves
# grow to fit it, so a section holds at most twice the larger of max_batch_bytes and that
# bound; larger messages go in parts, through the halves as they are.
_WHOLE_FACTOR = 8
_LARGEST_WHOLE = 64 << 20
# How long a Sender waits for the receiver to release a frame it keeps in place (see
# _switch_half) before it gives up on that section, and on leases: a moment, and the time a
# reader at _LEASE_GRACE_RATE bytes/s takes to go through a half (82 ms for halves of 8 MiB,
# 318 ms for 64 MiB): an application that reads its messages is waited for, not one that keeps them.
_LEASE_GRACE = 0.05
_LEASE_GRACE_RATE = 250e6
_LEASE_SPIN = 0.002
_LEASE_PAUSE = 0.0005
# A section starts with its header (cd_section_header: the secret, a release word per half,
# the ring block), and its halves follow, from the next page on.
_RELEASE_WORDS = ffi.offsetof("cd_section_header", "release_words")
_RING_BLOCK = ffi.offsetof("cd_section_header", "ring")
_HALVES = lib.CD_SECTION_DATA_OFFSET
# How long a Sender announces frames in the ring block after the receiver last answered: half
# as long as a receiver remembers a ring.
_RING_IDLE = lib.CD_RING_IDLE_MS / 2000
# After that, frames are copied for a while before leases are offered again: first this long,
# doubling each time the receiver holds on again, up to the maximum.
_NO_LEASES_FIRST = 1.0
_NO_LEASES_MAX = 60.0
# How long a Sender waits before it offers a refused frame again, doubling up to the maximum.
_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.01
_MAX_TAG = (1 << 64) - 1
# A frame of one message: the envelope header and one record header around it.
_FRAME_OVERHEAD = lib.CD_ENVELOPE_HEADER_SIZE + lib.CD_BATCH_RECORD_HEADER_SIZE
_PAGE = 4096
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
    :meth:`flush` block meanwhile. A frame it could never take (more messages or bytes than
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
        self._hwnd = resolve(target)
        self._sealer = None if key is None else _seal.Sealer(key)
        largest = MAX_MESSAGE_SIZE - (0 if key is None else _seal.HEADER_SIZE)
        self._codec = _codecs.resolve(codec)
        self._codec_id = _codecs.codec_id(self._codec)
        _checks.positive_size(max_batch_bytes, "max_batch_bytes")
        if max_batch_bytes < _FRAME_OVERHEAD:
            raise ValueError(f"max_batch_bytes must be at least {_FRAME_OVERHEAD} (one empty message)")
        if isinstance(linger, bool) or not isinstance(linger, (int, float)) or not 0 <= linger < 3600:
            raise ValueError(f"linger must be a number of seconds from 0 to 3600; got {linger!r}")
        self._linger = float(linger)
        self._chunk_size = _checks.positive_size(chunk_size, "chunk_size",
                                                 most=largest - lib.CD_PART_HEADER_SIZE)
        self._shm_threshold = None if shm_threshold is None else _checks.positive_size(shm_threshold, "shm_threshold")
        # Frames in WM_COPYDATA itself stay within its limit; in a section, within max_batch_bytes.
        if self._shm_threshold is None:
            self._frame_limit = self._inline_limit = min(max_batch_bytes, largest)
        else:
            self._frame_limit, self._inline_limit = max_batch_bytes, min(self._shm_threshold, largest)
        # The largest message sent whole that does not fit a batch frame.
        self._largest_whole = min(_WHOLE_FACTOR * self._frame_limit, _LARGEST_WHOLE)
        self._section: Any = None  # cd_section *, created when a frame first outgrows inline_limit
        self._section_name = b""  # UTF-16, as a descriptor carries it
        self._section_secret = b""  # what proves to the receiver that the section is ours
        self._half_size = 0        # the section holds two halves of this size ...
        self._half = 0             # ... and the frame is built in this one
        self._release_words: Any = None  # in the section's header: the receiver's release word of each half
        self._leases = [0, 0]      # per half: the lease id a frame there is held under, or 0
        self._next_lease = 1
        self._leases_from = 0.0    # time.monotonic() from which leases are offered (again)
        self._no_leases_for = _NO_LEASES_FIRST  # how long they stop next time the receiver holds on
        self._whole_messages = False  # the receiver takes no parts (sync mode)
        # The ring block (see CD_RING_SIZE in csrc/copydata.h): frames announced there, with a
        # posted message, while the receiver reads them in place; no round trip each.
        self._ring: Any = None           # cd_ring_block * in the section's header
        self._ring_id = 0
        self._ring_message = 0
        self._ring_armed = False         # the receiver answered the last frame CD_ANSWER_LEASED_RING ...
        self._ring_used = 0.0            # ... at this time.monotonic()
        self._announced: tuple[int, int, int, int] | None = None  # lease, half, size, messages: unanswered
        self._timeout = timeout
        self._timeout_ms = _checks.timeout_ms(timeout)
        self._encodes = not isinstance(self._codec, _codecs.BytesCodec)
        self._batch = ffi.gc(ffi.new("cd_batch *"), lib.cd_batch_release)
        self._start_frame()
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
        return int(self._batch.records)

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
            self._await_announced()

    def close(self) -> None:
        """Flush, then stop. Closing twice is harmless."""
        try:
            with self._lock:
                if self._closed:
                    return
                try:
                    self._raise_if_unusable()
                    self._flush_frame(last=True)
                    self._await_announced()
                finally:
                    self._closed = True
                    self._lock.notify_all()
                    self._end_ring()
                    if self._section is not None:
                        lib.cd_section_close(self._section)
                        self._section = None
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
        """The tag checked and the message encoded, as a cffi pointer to its bytes."""
        # The common case (an int tag, bytes for the bytes codec) checks inline: this runs per message.
        if type(tag) is not int or not 0 <= tag <= _MAX_TAG:
            tag = _checks.tag(tag)
        pointer = ffi.from_buffer(data if not self._encodes and type(data) is not str
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
        if size > _MAX_RECORD and self._shm_threshold is not None:
            raise ValueError(f"a message of {size} bytes is larger than a frame can hold ({_MAX_RECORD})")
        in_parts = (size > self._chunk_size if self._shm_threshold is None
                    else _FRAME_OVERHEAD + size > self._frame_limit and size > self._largest_whole
                    and not self._whole_messages)
        if not wait and (in_parts or self._linger == 0):
            return False
        if self._shm_threshold is None and in_parts:
            self._flush_frame()  # what came before goes first
            self._send_parts(tag, pointer, size)
            return True
        if in_parts:
            self._flush_frame()
            if self._send_section_parts(tag, pointer, size):
                return True
        if (self._shm_threshold is not None and not self._batch.borrowed
                and lib.CD_BATCH_RECORD_HEADER_SIZE + size > self._inline_limit - self._batch.size):
            # The frame outgrows WM_COPYDATA: into shared memory, before this message is copied in.
            self._open_section(self._batch.size + lib.CD_BATCH_RECORD_HEADER_SIZE + size)
        status = lib.cd_batch_add(self._batch, tag, pointer, size, self._frame_limit)
        if status == lib.CD_FULL:
            if not wait:
                return False
            self._flush_frame()
            if self._batch.borrowed and _FRAME_OVERHEAD + size > self._batch.capacity:
                self._open_section(_FRAME_OVERHEAD + size)
            status = lib.cd_batch_add(self._batch, tag, pointer, size, self._frame_limit)
        if status != lib.CD_OK:
            raise MemoryError(f"could not add {size} bytes to the batch frame")
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

    def _start_frame(self) -> None:
        if lib.cd_batch_start(self._batch, self._codec_id) != lib.CD_OK:
            raise MemoryError("could not start a batch frame")

    def _raise_if_unusable(self) -> None:
        if self._closed:
            raise ValueError("this Sender is closed")
        error, self._background_error = self._background_error, None
        if error is not None:
            raise error

    def _flush_frame(self, last: bool = False) -> None:
        """Sends the frame, then starts the next one (``last``: where it is, as none follows;
        only its header is written, which the receiver has read already)."""
        count = self._batch.records
        if count == 0:
            return
        what = f"a frame of {count} messages; they are still pending"
        in_section = self._batch.borrowed and self._batch.size > self._inline_limit
        if in_section:
            lease = self._next_lease if time.monotonic() >= self._leases_from else 0
            announced = lease and self._ring_armed and time.monotonic() - self._ring_used < _RING_IDLE
            answer = self._announce(lease, self._batch.size, count) if announced else None
            if answer is None:
                answer = self._deliver_section_frame(0, self._batch.size, what + " in shared memory", lease)
                self._note_answer(answer, lease, self._half)
        else:
            answer = self._deliver(0, self._batch.data, self._batch.size, what)
        self._start_frame()
        if answer == lib.CD_ANSWER_NEVER_FITS:
            # Never taken, so never read: the next frame starts where this one was, and the Sender stays usable.
            self._first_waiting_since = None
            raise self._never_fits(f"a frame of {count} messages, which are lost")
        if not last and in_section and answer == lib.CD_ANSWER_SECTION_KEPT:
            # The receiver still reads this section (views kept past sync-mode callbacks).
            self._leave_section()
        elif not last and self._batch.borrowed:
            self._switch_half()
        self._first_waiting_since = None

    def _deliver_section_frame(self, tag: int, size: int, what: str, lease: int = 0, half: int | None = None) -> int:
        """Offers the frame of ``size`` bytes in ``half`` (by default the current one). With
        ``lease``, the receiver may keep its records there until it writes the lease id into the
        half's release word, and may take the next frame as announced in the ring block."""
        half = self._half if half is None else half
        release_offset = _RELEASE_WORDS + 8 * half if lease else 0
        ring_offset = _RING_BLOCK if lease and self._sealer is None else 0
        descriptor = (_envelope.header(self._codec_id, lib.CD_KIND_SECTION, lease)
                      + _SECTION_FIELDS.pack(self._half_offset(half), size, release_offset, ring_offset,
                                             self._section_secret, len(self._section_name) // 2)
                      + self._section_name)
        return self._deliver(tag, ffi.from_buffer(descriptor), len(descriptor), what)

    def _note_answer(self, answer: int, lease: int, half: int) -> None:
        """What a section frame's answer says: held under its lease, and whether the receiver
        takes the next frame as announced in the ring block."""
        if lease and answer in (lib.CD_ANSWER_LEASED, lib.CD_ANSWER_LEASED_RING):
            self._leases[half], self._next_lease = lease, max(self._next_lease, lease + 1)
        self._ring_armed = answer == lib.CD_ANSWER_LEASED_RING
        self._ring_used = time.monotonic()

    def _announce(self, lease: int, size: int, count: int) -> int | None:
        """Announces the frame in the current half in the ring block, with a posted message: no
        round trip; its answer is awaited before anything else goes to the receiver. Returns
        CD_ANSWER_LEASED_RING, for the frame is the receiver's to take now, or None when the post
        failed (its message queue is full, say): the frame is then to be offered as a descriptor."""
        self._await_announced()  # one at a time: its lease must be known before its half is written again
        ring = self._ring
        ring.offset, ring.length = self._half_offset(self._half), size
        ring.release_offset = _RELEASE_WORDS + 8 * self._half
        ring.lease_id = lease  # last: the receiver reads the others only for this lease
        error = ffi.new("uint32_t *")
        status = lib.cd_post_ring(self._hwnd, self._ring_message, self._ring_id, lease, error)
        if status == lib.CD_TARGET_GONE:
            raise send_error(status, error[0], self._hwnd, self._timeout)
        if status != lib.CD_OK:
            self._ring_armed = False
            return None
        self._announced = (lease, self._half, size, count)
        self._next_lease = lease + 1
        return lib.CD_ANSWER_LEASED_RING

    def _await_announced(self) -> None:
        """Waits for the receiver's answer to the frame announced last (if any), and offers it
        as a descriptor should the receiver have refused it (its queue was full)."""
        if self._announced is None:
            return
        lease, half, size, count = self._announced
        ring = self._ring
        start = time.monotonic()
        look_for_window = start + 0.05
        while ring.answer >> 8 != lease:
            now = time.monotonic()
            if self._timeout is not None and now - start > self._timeout:
                self._announced, self._ring_armed = None, False
                raise send_error(lib.CD_TIMEOUT, 0, self._hwnd, self._timeout)
            if now > look_for_window:
                if not lib.cd_window_exists(self._hwnd):
                    self._announced, self._ring_armed = None, False
                    raise send_error(lib.CD_TARGET_GONE, 0, self._hwnd, self._timeout)
                look_for_window = now + 0.05
            # The receiver's window thread takes it as soon as it runs: at first only yield.
            time.sleep(0 if now - start < _LEASE_SPIN else _LEASE_PAUSE)
        self._announced = None
        answer = ring.answer & 0xFF
        if answer == 0:
            answer = self._deliver_section_frame(0, size, f"a frame of {count} messages announced in shared "
                                                 f"memory, which are lost", lease, half)
        if answer == lib.CD_ANSWER_NEVER_FITS:
            self._ring_armed = False
            raise self._never_fits(f"a frame of {count} messages, which are lost")
        self._note_answer(answer, lease, half)

    def _end_ring(self) -> None:
        """Tells the receiver it may forget this section's ring (it would after a minute)."""
        if self._ring_armed:
            self._ring_armed = False
            lib.cd_post_ring(self._hwnd, self._ring_message, self._ring_id, 0, ffi.new("uint32_t *"))

    def _switch_half(self) -> None:
        """Moves the (empty) frame to the other half. The receiver may still be copying the
        frame just answered out of this one; it is done once it has answered the next one.
        A frame it leased in the other half must be released first: should that take longer
        than the grace (the receiver holds on to the messages), the frame moves to a new
        section instead, and the next frames are copied out, not leased, for a while."""
        other = self._half ^ 1
        if not self._released(other):
            self._leases_from = time.monotonic() + self._no_leases_for
            self._no_leases_for = min(2 * self._no_leases_for, _NO_LEASES_MAX)
            self._leave_section()
            return
        self._half = other
        view = ffi.cast("char *", lib.cd_section_view(self._section)) + self._half_offset(other)
        lib.cd_batch_move(self._batch, view, self._half_size)

    def _leave_section(self) -> None:
        """Moves the (empty) frame to a new section: the receiver still reads this one. Should
        no section be made, the frame moves to private memory instead (and to a new section
        once it outgrows WM_COPYDATA), never staying where the receiver reads."""
        try:
            self._open_section(self._half_size)
        except BaseException:
            lib.cd_batch_release(self._batch)
            self._start_frame()
            raise

    def _released(self, half: int) -> bool:
        """Whether the frame leased in ``half`` (if any) is released, waiting up to the grace."""
        lease = self._leases[half]
        start = time.monotonic()
        grace = _LEASE_GRACE + self._half_size / _LEASE_GRACE_RATE
        while lease and self._release_words[half] != lease:
            waited = time.monotonic() - start
            if waited > grace:
                return False
            # At first only yield: the receiver is usually about to release it.
            time.sleep(0 if waited < _LEASE_SPIN else _LEASE_PAUSE)
        self._leases[half] = 0
        return True

    def _send_section_parts(self, tag: int, pointer: Any, size: int) -> bool:
        """Sends one message in parts through the halves of the section; False (nothing sent)
        when the receiver takes no parts."""
        if not self._batch.borrowed:  # no section yet, or the frame had to leave it
            self._open_section(self._frame_limit)
        transfer_id = secrets.randbits(64) | 1  # unguessable, so nobody can slip parts into it
        chunk_size = self._half_size - lib.CD_PART_HEADER_SIZE
        for offset in range(0, size, chunk_size):
            length = min(chunk_size, size - offset)
            frame = ffi.cast("char *", self._batch.data)  # the empty frame's half, overwritten
            header = self._part_header(transfer_id, size, offset)
            ffi.memmove(frame, header, len(header))
            ffi.memmove(frame + len(header), pointer + offset, length)
            what = f"part {offset // chunk_size + 1} of a {size}-byte message, which is lost"
            try:
                answer = self._deliver_section_frame(tag, len(header) + length, what)
            finally:
                self._start_frame()  # the part took the empty frame's place: write its header again
            if answer == lib.CD_ANSWER_NEVER_FITS:
                raise self._never_fits(what)
            if answer == lib.CD_ANSWER_NO_PARTS:
                if offset:
                    raise Rejected(f"window {self._hwnd:#x} took the first parts of a {size}-byte message "
                                   f"and refused the next one; the message is lost")
                self._whole_messages = True
                return False
            self._switch_half()
        return True

    def _part_header(self, transfer_id: int, size: int, offset: int) -> bytes:
        return _envelope.header(self._codec_id, lib.CD_KIND_PART, transfer_id) + _PART_FIELDS.pack(size, offset)

    def _send_parts(self, tag: int, pointer: Any, size: int) -> None:
        transfer_id = secrets.randbits(64) | 1  # unguessable, so nobody can slip parts into it
        view = ffi.buffer(pointer, size)
        for offset in range(0, size, self._chunk_size):
            chunk = view[offset:offset + self._chunk_size]
            frame = self._part_header(transfer_id, size, offset) + chunk
            what = f"part {offset // self._chunk_size + 1} of a {size}-byte message, which is lost"
            answer = self._deliver(tag, ffi.from_buffer(frame), len(frame), what)
            if answer == lib.CD_ANSWER_NEVER_FITS:
                raise self._never_fits(what)
            if answer == lib.CD_ANSWER_NO_PARTS:
                raise Rejected(f"window {self._hwnd:#x} takes no parts in sync mode, and a message of {size} "
                               f"bytes is larger than chunk_size ({self._chunk_size}) with shm_threshold=None")

    def _open_section(self, least: int) -> None:
        """Moves the frame into the first half of a new section whose halves hold at least
        ``least`` bytes (and max_batch_bytes)."""
        self._await_announced()  # in the section left behind
        # A part of max_batch_bytes fits a half with its header; halves start on a page.
        half = -(-max(least, self._frame_limit + lib.CD_PART_HEADER_SIZE) // _PAGE) * _PAGE
        capacity = _HALVES + 2 * half  # the header's page, then the halves
        name = f"{SECTION_PREFIX}{os.getpid()}.{secrets.token_hex(16)}"
        section = ffi.new("cd_section **")
        error = ffi.new("uint32_t *")
        status = lib.cd_section_create(name, capacity, section, error)
        if status != lib.CD_OK:
            raise CopyDataError(f"could not create a shared-memory section of {capacity} bytes: "
                                f"{describe_error(status, error[0])}")
        view = ffi.cast("char *", lib.cd_section_view(section[0]))
        if lib.cd_batch_move(self._batch, view + _HALVES, half) != lib.CD_OK:
            lib.cd_section_close(section[0])
            raise MemoryError(f"a frame of {self._batch.size} bytes does not fit a section of {capacity}")
        self._end_ring()
        if self._section is not None:
            lib.cd_section_close(self._section)
        header = ffi.cast("cd_section_header *", view)
        self._section, self._section_name = section[0], name.encode("utf-16-le")
        self._section_secret = bytes(ffi.buffer(header.secret))
        self._half_size, self._half = half, 0
        self._release_words = header.release_words
        self._leases = [0, 0]
        self._ring = ffi.addressof(header.ring)
        self._ring_id = secrets.randbits(64) | 1
        self._ring.ring_id = self._ring_id
        if not self._ring_message:
            self._ring_message = lib.cd_ring_message()

    def _half_offset(self, half: int) -> int:
        return _HALVES + half * self._half_size

    def _never_fits(self, what: str) -> Rejected:
        return Rejected(f"window {self._hwnd:#x} refused {what}: it holds more messages or bytes than the "
                        f"receiver's max_queue_messages, max_message_size or max_transfer_size allow, so "
                        f"offering it again would not help (a smaller max_batch_bytes or shm_threshold "
                        f"makes smaller frames)")

    def _deliver(self, tag: int, data: Any, size: int, what: str) -> int:
        """One WM_COPYDATA, offered again (with back-off) while the receiver refuses it; the answer."""
        self._await_announced()  # first: a window takes sent messages before posted ones
        result = ffi.new("intptr_t *")
        error = ffi.new("uint32_t *")
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        backoff = _FIRST_BACKOFF
        unsealed = ffi.buffer(data, size) if self._sealer is not None else None
        while True:
            if unsealed is not None:
                # Sealed afresh each time: a refused frame was never taken, and a seal ages.
                sealed = self._sealer.seal(unsealed, self._hwnd, tag)  # type: ignore[union-attr]
                data, size = ffi.from_buffer(sealed), len(sealed)
            status = lib.cd_send(self._hwnd, tag, 0, data, size, self._timeout_ms, SMTO_ABORTIFHUNG, result, error)
            if status != lib.CD_OK:
                raise send_error(status, error[0], self._hwnd, self._timeout)
            if result[0] != 0:
                return int(result[0])
            if deadline is not None and time.monotonic() + backoff > deadline:
                raise Rejected(f"window {self._hwnd:#x} refused {what} for {self._timeout} s (its queue "
                               f"stayed full, it takes no parts in sync mode, or it is not a copydata receiver)")
            # Keep the lock while waiting: producers block (back-pressure), and no other thread
            # can send this same frame meanwhile.
            time.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

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
