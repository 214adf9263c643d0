"""How a Sender's frames reach its receiver: in WM_COPYDATA itself, or through shared memory.

A Sender picks one transport when it is made, as multiprocessing.connection.Listener picks its
family, and then only batches, lingers and serves asyncio: the transport decides where the frame
being built lies, when a message goes in parts, and how a full frame is offered. The handshakes
of the shared-memory transport (halves and the early answer, leases, rings) are specified in
docs/protocol.md and model-checked in model/.
"""

from __future__ import annotations

import os
import secrets
import struct
import time
from typing import Any

from . import _envelope, _native, _seal
from ._constants import (KIND_PART, KIND_SECTION, PART_HEADER_SIZE, RING_IDLE_MS, SECTION_DATA_OFFSET,
                         SECTION_PREFIX, SECTION_SECRET_SIZE, SMTO_ABORTIFHUNG, Answer)
from ._errors import Rejected, SendTimeout, TargetNotFound

# What follows the envelope header in a part frame (the transfer id is in the header's
# request-id field): the message's total size and this part's offset.
_PART_FIELDS = struct.Struct("<QQ")
# ... and in a section descriptor (the lease id in the request-id field): offset, length, release
# offset, ring offset, the section's secret, the name's length in characters (then the name in
# UTF-16). The range holds a frame.
_SECTION_FIELDS = struct.Struct(f"<QQQQ{SECTION_SECRET_SIZE}sI")
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
_HALVES = SECTION_DATA_OFFSET
# How long a Sender announces frames in the ring block after the receiver last answered: half
# as long as a receiver remembers a ring.
_RING_IDLE = RING_IDLE_MS / 2000
# After that, frames are copied for a while before leases are offered again: first this long,
# doubling each time the receiver holds on again, up to the maximum.
_NO_LEASES_FIRST = 1.0
_NO_LEASES_MAX = 60.0
# How long a Sender waits before it offers a refused frame again, doubling up to the maximum.
_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.01
_PAGE = 4096


class Link:
    """The window a Sender sends to, and the WM_COPYDATA round trip: a refused frame is offered
    again, with back-off, until ``timeout``; with a key, each offer is sealed afresh."""

    def __init__(self, hwnd: int, timeout: float | None, timeout_ms: int, sealer: _seal.Sealer | None) -> None:
        self.hwnd = hwnd
        self.timeout = timeout
        self._timeout_ms = timeout_ms
        self.sealer = sealer

    def deliver(self, tag: int, data: Any, size: int, what: str) -> int:
        """One frame (``data``, a pointer), offered until taken: the receiver's answer."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        backoff = _FIRST_BACKOFF
        unsealed = _native.buffer(data, size) if self.sealer is not None else None
        while True:
            if unsealed is not None:
                # Sealed afresh each time: a refused frame was never taken, and a seal ages.
                sealed = self.sealer.seal(unsealed, self.hwnd, tag)  # type: ignore[union-attr]
                data, size = _native.pointer(sealed), len(sealed)
            answer = _native.send(self.hwnd, tag, 0, data, size, self._timeout_ms, SMTO_ABORTIFHUNG, self.timeout)
            if answer != Answer.REFUSED:
                return answer
            if deadline is not None and time.monotonic() + backoff > deadline:
                raise Rejected(f"window {self.hwnd:#x} refused {what} for {self.timeout} s (its queue "
                               f"stayed full, it takes no parts in sync mode, or it is not a copydata receiver)")
            # The caller keeps its lock while waiting: producers block (back-pressure), and no
            # other thread can send this same frame meanwhile.
            time.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def unanswered(self, error: Exception, count: int) -> SendTimeout:
        """The error for a frame of ``count`` messages offered and not answered in time: the
        receiver may have begun it, and may still take it, so it is never offered again (that
        would deliver it twice)."""
        return SendTimeout(f"{error}; the frame of {count} messages may or may not have arrived, and is not "
                           f"offered again")

    def never_fits(self, what: str) -> Rejected:
        return Rejected(f"window {self.hwnd:#x} refused {what}: it holds more messages or bytes than the "
                        f"receiver's max_queue_messages, max_message_size or max_transfer_size allow, so "
                        f"offering it again would not help (a smaller max_batch_bytes or shm_threshold "
                        f"makes smaller frames)")

    def part_header(self, codec_id: int, transfer_id: int, size: int, offset: int) -> bytes:
        return _envelope.header(codec_id, KIND_PART, transfer_id) + _PART_FIELDS.pack(size, offset)


class InlineTransport:
    """Frames in WM_COPYDATA itself (``shm_threshold=None``): each at most the largest one
    WM_COPYDATA carries; a message larger than ``chunk_size`` goes in parts of that size, each a
    WM_COPYDATA, which the receiver puts back together."""

    def __init__(self, link: Link, batch: _native.Batch, codec_id: int, frame_limit: int, chunk_size: int) -> None:
        self._link = link
        self._batch = batch
        self._codec_id = codec_id
        self.frame_limit = frame_limit
        self._chunk_size = chunk_size

    def in_parts(self, size: int) -> bool:
        return size > self._chunk_size

    @property
    def fill_limits(self) -> tuple[int, int, int]:
        """How far a message may fill the frame in send's common case (nothing moved, nothing in
        parts): in lent memory, in the frame's own (the same here: WM_COPYDATA's bound), and the
        largest such message (larger ones go in parts)."""
        return self.frame_limit, self.frame_limit, self._chunk_size

    def send_parts(self, tag: int, data: Any, size: int) -> bool:
        """Sends one message (``data``, a pointer) in parts; True: it went."""
        transfer_id = secrets.randbits(64) | 1  # unguessable, so nobody can slip parts into it
        view = _native.buffer(data, size)
        for offset in range(0, size, self._chunk_size):
            chunk = view[offset:offset + self._chunk_size]
            frame = self._link.part_header(self._codec_id, transfer_id, size, offset) + chunk
            what = f"part {offset // self._chunk_size + 1} of a {size}-byte message, which is lost"
            answer = self._link.deliver(tag, _native.pointer(frame), len(frame), what)
            if answer == Answer.NEVER_FITS:
                raise self._link.never_fits(what)
            if answer == Answer.NO_PARTS:
                raise Rejected(f"window {self._link.hwnd:#x} takes no parts in sync mode, and a message of {size} "
                               f"bytes is larger than chunk_size ({self._chunk_size}) with shm_threshold=None")
        return True

    def make_room(self, size: int) -> None:
        """Before a message of ``size`` bytes joins the frame: WM_COPYDATA needs nothing moved."""

    def make_room_alone(self, size: int) -> None:
        """Before a message that did not fit joins an empty frame: nothing either."""

    def flush(self, count: int, last: bool) -> None:
        """Offers the frame of ``count`` messages, and starts the next one."""
        try:
            answer = self._link.deliver(0, self._batch.data, self._batch.size,
                                        f"a frame of {count} messages; they are still pending")
        except SendTimeout as error:
            self._batch.start()
            raise self._link.unanswered(error, count) from None
        self._batch.start()
        if answer == Answer.NEVER_FITS:
            raise self._link.never_fits(f"a frame of {count} messages, which are lost")

    def settle(self) -> None:
        """Waits for what is still in flight: nothing, here."""

    def close(self) -> None:
        """Releases what the transport holds: nothing, here."""


class SectionTransport:
    """Frames beyond ``shm_threshold`` are built in a shared-memory section of the sender's
    (owned by and open only to its user, under an unguessable name, proven by a secret in its
    header) and only a small descriptor travels as WM_COPYDATA; smaller frames go in WM_COPYDATA
    itself. The section has two halves: the receiver answers a frame before it copies it out,
    and the frame after is built in the other half meanwhile. A queue-mode receiver reads
    messages of 1 MiB and more in place, under a lease, and each next frame is then announced
    in the section's ring block, with a posted message, not sent. See docs/protocol.md."""

    def __init__(self, link: Link, batch: _native.Batch, codec_id: int, frame_limit: int, inline_limit: int) -> None:
        self._link = link
        self._batch = batch
        self._codec_id = codec_id
        self.frame_limit = frame_limit
        self._inline_limit = inline_limit
        # The largest message sent whole that does not fit a batch frame.
        self._largest_whole = min(_WHOLE_FACTOR * frame_limit, _LARGEST_WHOLE)
        self._section: _native.Section | None = None  # made when a frame first outgrows inline_limit
        self._section_name = b""  # UTF-16, as a descriptor carries it
        self._half_size = 0        # the section holds two halves of this size ...
        self._half = 0             # ... and the frame is built in this one
        self._leases = [0, 0]      # per half: the lease id a frame there is held under, or 0
        self._next_lease = 1
        self._leases_from = 0.0    # time.monotonic() from which leases are offered (again)
        self._no_leases_for = _NO_LEASES_FIRST  # how long they stop next time the receiver holds on
        self._whole_messages = False  # the receiver takes no parts (sync mode)
        # The ring block: frames announced there, with a posted message, while the receiver
        # reads them in place; no round trip each.
        self._ring: Any = None           # the section's cd_ring_block
        self._ring_id = 0
        self._ring_message = 0
        self._ring_armed = False         # the receiver answered the last frame LEASED_RING ...
        self._ring_used = 0.0            # ... at this time.monotonic()
        # The frame announced last and not yet answered: lease, half, size, messages, and when it
        # was posted (the receiver used the ring no earlier than that).
        self._announced: tuple[int, int, int, int, float] | None = None

    def in_parts(self, size: int) -> bool:
        return (self._batch.OVERHEAD + size > self.frame_limit and size > self._largest_whole
                and not self._whole_messages)

    @property
    def fill_limits(self) -> tuple[int, int, int]:
        """How far a message may fill the frame in send's common case (nothing moved, nothing in
        parts): in a section's half, max_batch_bytes; in the frame's own memory, what
        WM_COPYDATA carries (beyond it, make_room moves the frame into a section); and the
        largest such message (one that fits a frame is never sent in parts)."""
        return self.frame_limit, min(self.frame_limit, self._inline_limit), self.frame_limit

    def make_room(self, size: int) -> None:
        """Before a message of ``size`` bytes joins the frame: a frame that outgrows WM_COPYDATA
        moves into shared memory, before the message is copied in."""
        if not self._batch.borrowed and self._batch.RECORD_HEADER + size > self._inline_limit - self._batch.size:
            self._open_section(self._batch.size + self._batch.RECORD_HEADER + size)

    def make_room_alone(self, size: int) -> None:
        """Before a message that did not fit joins an empty frame: halves that are too small grow."""
        if self._batch.borrowed and self._batch.OVERHEAD + size > self._batch.capacity:
            self._open_section(self._batch.OVERHEAD + size)

    def flush(self, count: int, last: bool) -> None:
        """Offers the frame of ``count`` messages, and starts the next one (``last``: none follows)."""
        what = f"a frame of {count} messages; they are still pending"
        in_section = self._batch.borrowed and self._batch.size > self._inline_limit
        half = self._half
        try:
            if in_section:
                lease = self._next_lease if time.monotonic() >= self._leases_from else 0
                announced = lease and self._ring_armed and time.monotonic() - self._ring_used < _RING_IDLE
                answer = self._announce(lease, self._batch.size, count) if announced else None
                if answer is None:
                    asked = time.monotonic()
                    answer = self._deliver_section_frame(0, self._batch.size, what + " in shared memory", lease)
                    self._note_answer(answer, lease, half, asked)
            else:
                answer = self._deliver(0, self._batch.data, self._batch.size, what)
        except SendTimeout as error:
            self._batch.abandon()
            if in_section:  # the receiver may read that half still: the next frame goes elsewhere
                self._leave_section()
            self._batch.start()
            raise self._link.unanswered(error, count) from None
        if answer == Answer.NEVER_FITS:
            # Never taken, so never read: the next frame starts where this one was, and the Sender stays usable.
            self._batch.start()
            raise self._link.never_fits(f"a frame of {count} messages, which are lost")
        # The frame is the receiver's now, and an announced one is read only later: the next frame
        # starts in the other half (or a new section), never over it, not even its header.
        self._batch.abandon()
        if last:
            return
        if in_section and answer == Answer.SECTION_KEPT:
            # The receiver still reads this section (views kept past sync-mode callbacks).
            self._leave_section()
        elif self._batch.borrowed:
            self._switch_half()
        self._batch.start()

    def settle(self) -> None:
        """Waits for the receiver's answer to the frame announced last (if any), and offers it
        as a descriptor should the receiver have refused it (its queue was full)."""
        if self._announced is None:
            return
        lease, half, size, count, posted = self._announced
        ring = self._ring
        start = time.monotonic()
        look_for_window = start + 0.05
        while ring.answer >> 8 != lease:
            now = time.monotonic()
            if self._link.timeout is not None and now - start > self._link.timeout:
                # The post cannot be taken back, and the receiver may still take the frame: its
                # half counts as leased, so that it is written again only once released (or the
                # Sender moves to a new section, after the grace).
                self._announced, self._ring_armed = None, False
                self._leases[half] = lease
                error = _native.error(_native.TIMEOUT, 0, "send to", hwnd=self._link.hwnd, timeout=self._link.timeout)
                raise self._link.unanswered(error, count)
            if now > look_for_window:
                if not _native.window_exists(self._link.hwnd):
                    self._announced, self._ring_armed = None, False
                    raise _native.error(_native.TARGET_GONE, 0, "send to", hwnd=self._link.hwnd)
                look_for_window = now + 0.05
            # The receiver's window thread takes it as soon as it runs: at first only yield.
            time.sleep(0 if now - start < _LEASE_SPIN else _LEASE_PAUSE)
        self._announced = None
        answer = ring.answer & 0xFF
        if answer == Answer.REFUSED:
            posted = time.monotonic()
            try:
                answer = self._deliver_section_frame(0, size, f"a frame of {count} messages announced in shared "
                                                     f"memory, which are lost", lease, half)
            except SendTimeout as error:
                self._ring_armed = False
                self._leases[half] = lease  # as above: it may be taken still
                raise self._link.unanswered(error, count) from None
        if answer == Answer.NEVER_FITS:
            self._ring_armed = False
            raise self._link.never_fits(f"a frame of {count} messages, which are lost")
        self._note_answer(answer, lease, half, posted)

    def close(self) -> None:
        self._end_ring()
        if self._section is not None:
            self._section.close()
            self._section = None

    # --- offering frames --------------------------------------------------------------------

    def _deliver(self, tag: int, data: Any, size: int, what: str) -> int:
        self.settle()  # first: a window takes sent messages before posted ones
        return self._link.deliver(tag, data, size, what)

    def _deliver_section_frame(self, tag: int, size: int, what: str, lease: int = 0, half: int | None = None) -> int:
        """Offers the frame of ``size`` bytes in ``half`` (by default the current one). With
        ``lease``, the receiver may keep its records there until it writes the lease id into the
        half's release word, and may take the next frame as announced in the ring block."""
        half = self._half if half is None else half
        release_offset = _native.RELEASE_WORDS_OFFSET + 8 * half if lease else 0
        ring_offset = _native.RING_BLOCK_OFFSET if lease and self._link.sealer is None else 0
        secret = self._section.secret if self._section is not None else b""
        descriptor = (_envelope.header(self._codec_id, KIND_SECTION, lease)
                      + _SECTION_FIELDS.pack(self._half_offset(half), size, release_offset, ring_offset,
                                             secret, len(self._section_name) // 2)
                      + self._section_name)
        return self._deliver(tag, _native.pointer(descriptor), len(descriptor), what)

    def _note_answer(self, answer: int, lease: int, half: int, asked: float) -> None:
        """What a section frame's answer says: held under its lease, and whether the receiver
        takes the next frame as announced in the ring block. ``asked``: when the frame was sent
        or posted; the receiver used the ring then or later, never earlier, so the ring counts
        as used then (its answer may be read much later, by a flush)."""
        if lease and answer in (Answer.LEASED, Answer.LEASED_RING):
            self._leases[half], self._next_lease = lease, max(self._next_lease, lease + 1)
        self._ring_armed = answer == Answer.LEASED_RING
        self._ring_used = asked

    def _announce(self, lease: int, size: int, count: int) -> int | None:
        """Announces the frame in the current half in the ring block, with a posted message: no
        round trip; its answer is awaited before anything else goes to the receiver. Returns
        LEASED_RING, for the frame is the receiver's to take now, or None when the post failed
        (its message queue is full, say): the frame is then to be offered as a descriptor."""
        self.settle()  # one at a time: its lease must be known before its half is written again
        if not self._ring_armed:
            return None  # the answer just awaited ended the ring: the receiver would ignore a post
        ring = self._ring
        ring.offset, ring.length = self._half_offset(self._half), size
        ring.release_offset = _native.RELEASE_WORDS_OFFSET + 8 * self._half
        ring.lease_id = lease  # last: the receiver reads the others only for this lease
        posted = time.monotonic()
        if not _native.post_ring(self._link.hwnd, self._ring_message, self._ring_id, lease):
            self._ring_armed = False
            return None
        self._announced = (lease, self._half, size, count, posted)
        self._next_lease = lease + 1
        return Answer.LEASED_RING

    def _end_ring(self) -> None:
        """Tells the receiver it may forget this section's ring (it would after a minute)."""
        if self._ring_armed:
            self._ring_armed = False
            try:
                _native.post_ring(self._link.hwnd, self._ring_message, self._ring_id, 0)
            except TargetNotFound:
                pass

    # --- the section and its halves -------------------------------------------------------

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
        self._batch.move(self._section.at(self._half_offset(other)), self._half_size)  # type: ignore[union-attr]

    def _leave_section(self) -> None:
        """Moves the (empty) frame to a new section: the receiver still reads this one. Should
        no section be made, the frame moves to private memory instead (and to a new section
        once it outgrows WM_COPYDATA), never staying where the receiver reads."""
        try:
            self._open_section(self._half_size)
        except BaseException:
            self._batch.release()
            raise

    def _released(self, half: int) -> bool:
        """Whether the frame leased in ``half`` (if any) is released, waiting up to the grace."""
        lease = self._leases[half]
        start = time.monotonic()
        grace = _LEASE_GRACE + self._half_size / _LEASE_GRACE_RATE
        release_words = self._section.release_words if self._section is not None else None
        while lease and release_words[half] != lease:  # type: ignore[index]
            waited = time.monotonic() - start
            if waited > grace:
                return False
            # At first only yield: the receiver is usually about to release it.
            time.sleep(0 if waited < _LEASE_SPIN else _LEASE_PAUSE)
        self._leases[half] = 0
        return True

    def send_parts(self, tag: int, data: Any, size: int) -> bool:
        """Sends one message (``data``, a pointer) in parts through the halves of the section;
        False (nothing sent) when the receiver takes no parts, which then get whole messages."""
        if not self._batch.borrowed:  # no section yet, or the frame had to leave it
            self._open_section(self.frame_limit)
        transfer_id = secrets.randbits(64) | 1  # unguessable, so nobody can slip parts into it
        chunk_size = self._half_size - PART_HEADER_SIZE
        for offset in range(0, size, chunk_size):
            length = min(chunk_size, size - offset)
            header = self._link.part_header(self._codec_id, transfer_id, size, offset)
            self._batch.write(0, header, len(header))  # over the empty frame, in its half
            self._batch.write(len(header), _native.offset(data, offset), length)
            what = f"part {offset // chunk_size + 1} of a {size}-byte message, which is lost"
            try:
                answer = self._deliver_section_frame(tag, len(header) + length, what)
            finally:
                self._batch.start()  # the part took the empty frame's place: write its header again
            if answer == Answer.NEVER_FITS:
                raise self._link.never_fits(what)
            if answer == Answer.NO_PARTS:
                if offset:
                    raise Rejected(f"window {self._link.hwnd:#x} took the first parts of a {size}-byte message "
                                   f"and refused the next one; the message is lost")
                self._whole_messages = True
                return False
            self._switch_half()
        return True

    def _open_section(self, least: int) -> None:
        """Moves the frame into the first half of a new section whose halves hold at least
        ``least`` bytes (and max_batch_bytes)."""
        self.settle()  # in the section left behind
        # A part of max_batch_bytes fits a half with its header; halves start on a page.
        half = -(-max(least, self.frame_limit + PART_HEADER_SIZE) // _PAGE) * _PAGE
        capacity = _HALVES + 2 * half  # the header's page, then the halves
        section = _native.Section(f"{SECTION_PREFIX}{os.getpid()}.{secrets.token_hex(16)}", capacity)
        if not self._batch.move(section.at(_HALVES), half):
            section.close()
            raise MemoryError(f"a frame of {self._batch.size} bytes does not fit a section of {capacity}")
        self._end_ring()
        if self._section is not None:
            self._section.close()
        self._section, self._section_name = section, section.name.encode("utf-16-le")
        self._half_size, self._half = half, 0
        self._leases = [0, 0]
        self._ring = section.ring
        # 32 bits: a posted wParam is as wide as a pointer, so a 32-bit process at either end
        # would see a 64-bit id cut, and no announcement would match its ring.
        self._ring_id = secrets.randbits(32) | 1
        self._ring.ring_id = self._ring_id
        if not self._ring_message:
            self._ring_message = _native.ring_message()

    def _half_offset(self, half: int) -> int:
        return _HALVES + half * self._half_size
