"""The benchmark's payloads and their check on arrival, shared by every Python sender and receiver.

The payload of message ``sequence`` is ``size`` bytes: the sequence number (8 bytes, little
endian), then a body that depends only on ``size``: a pseudo-random pattern of ``PERIOD``
bytes, repeated. A receiver compares every byte of every message with the bytes expected
(length, sequence, then the body with memcmp, piece by piece), so no mechanism can look fast
by losing, reordering or damaging data.

The receiver keeps at most ``2 * PERIOD`` expected bytes, whatever the size. The period is
not a multiple of any chunk size (a power of two), so a chunk lost, repeated or moved changes
the bytes compared. An exact comparison runs at memcmp's speed: about 13 GB/s in this
Windows Python, where zlib.crc32 managed 2.4 GB/s and capped every mechanism below a fifth
of memcpy's bandwidth.
"""

from __future__ import annotations

import random
from typing import Iterator

try:  # the bulk check of many small messages at once; without numpy it checks them one by one
    import numpy
except ImportError:  # pragma: no cover - numpy is in tools/windows-bench-requirements.txt
    numpy = None

HEADER_SIZE = 8
#: Wine 8.0 breaks on cross-process WM_COPYDATA of 2 MiB or more (and copydata's default
#: limit is 2,000,000 bytes), so the WM_COPYDATA mechanisms send bigger payloads in chunks of
#: at most this size. The native programs use the same bound.
CHUNK_SIZE = 1 << 20
#: The body repeats with this period (the native programs use the same).
PERIOD = (1 << 20) + 64


def _pattern(size: int) -> bytes:
    return random.Random(size).randbytes(min(PERIOD, size - HEADER_SIZE))


def _repeat(pattern: bytes, length: int, target: bytearray, offset: int) -> None:
    """Fill ``target[offset:offset + length]`` with ``pattern`` repeated, by doubling."""
    filled = min(len(pattern), length)
    target[offset:offset + filled] = pattern[:filled]
    while filled < length:  # ``filled`` is a multiple of the period: the copy stays in phase
        step = min(filled, length - filled)
        target[offset + filled:offset + filled + step] = target[offset:offset + step]
        filled += step


def make_payload(size: int) -> bytearray:
    """A payload to send: stamp each message's sequence number with :func:`stamp`."""
    if size < HEADER_SIZE:
        raise ValueError(f"payloads have at least {HEADER_SIZE} bytes, not {size}")
    payload = bytearray(size)
    _repeat(_pattern(size), size - HEADER_SIZE, payload, HEADER_SIZE)
    return payload


def _expected_body(size: int) -> bytes:
    """The body's first ``min(body, 2 * PERIOD)`` bytes: every piece of at most ``PERIOD``
    bytes at body offset ``b`` equals the piece of the same length at ``b % PERIOD`` here."""
    length = min(size - HEADER_SIZE, 2 * PERIOD)
    expected = bytearray(length)
    _repeat(_pattern(size), length, expected, 0)
    return bytes(expected)


def stamp(payload: memoryview, sequence: int) -> None:
    payload[:HEADER_SIZE] = sequence.to_bytes(HEADER_SIZE, "little")


def chunks(message: memoryview, chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """``message`` in consecutive slices of at most ``chunk_size`` bytes (no copy)."""
    for offset in range(0, len(message), chunk_size):
        yield message[offset:offset + chunk_size]


class PayloadCheck:
    """Checks a stream of messages of ``size`` bytes, fed whole or in chunks, as they arrive."""

    def __init__(self, size: int) -> None:
        if size < HEADER_SIZE:
            raise ValueError(f"payloads have at least {HEADER_SIZE} bytes, not {size}")
        self.size = size
        self.expected_body = _expected_body(size)
        self.messages = 0
        self.intact = 0
        self.chunks = 0
        self.bytes = 0
        self._filled = 0
        self._header = b""
        self._same = True

    @property
    def missing(self) -> int:
        """Bytes still to come for the current message (so a stream reader never reads past it)."""
        return self.size - self._filled

    def feed(self, chunk: bytes | memoryview) -> bool:
        """Take one chunk; True when it completed a message. A chunk that overruns the current
        message counts the message as damaged (its bytes beyond are dropped)."""
        view = memoryview(chunk).cast("B")
        self.chunks += 1
        self.bytes += len(view)
        overrun = len(view) > self.missing
        if overrun:
            view = view[:self.missing]
        if self._filled < HEADER_SIZE:
            head = view[:HEADER_SIZE - self._filled]
            self._header += head
            view = view[len(head):]
            self._filled += len(head)
        if view:
            self._same = self._same and self._matches(view, self._filled - HEADER_SIZE)
            self._filled += len(view)
        if self._filled < self.size:
            return False
        good = (not overrun and self._same
                and self._header == self.messages.to_bytes(HEADER_SIZE, "little"))
        self.intact += good
        self.messages += 1
        self._filled, self._header, self._same = 0, b"", True
        return True

    def feed_run(self, block: bytes | memoryview, count: int) -> None:
        """Take ``count`` whole messages lying back to back in ``block`` (a batch received at
        once), checked as :meth:`feed` checks each: their sequence numbers and every byte of
        their bodies, in bulk (numpy) when they fit a period."""
        view = memoryview(block).cast("B")
        if len(view) != count * self.size:
            raise ValueError(f"{count} messages of {self.size} bytes take {count * self.size} bytes, not {len(view)}")
        if numpy is None or self._filled or self.size - HEADER_SIZE > PERIOD:
            for start in range(0, len(view), self.size):
                self.feed(view[start:start + self.size])
            return
        rows = numpy.frombuffer(view, dtype=numpy.uint8).reshape(count, self.size)
        sequences = rows[:, :HEADER_SIZE].copy().view("<u8").ravel()
        expected_sequences = numpy.arange(self.messages, self.messages + count, dtype="<u8")
        body = numpy.frombuffer(self.expected_body, dtype=numpy.uint8)[:self.size - HEADER_SIZE]
        intact = (sequences == expected_sequences) & (rows[:, HEADER_SIZE:] == body).all(axis=1)
        self.intact += int(intact.sum())
        self.messages += count
        self.chunks += count
        self.bytes += len(view)

    def _matches(self, view: memoryview, body_offset: int) -> bool:
        expected = self.expected_body
        if len(view) <= PERIOD:  # the usual case: one comparison
            return expected.startswith(view, body_offset % PERIOD)
        for start in range(0, len(view), PERIOD):
            piece = view[start:start + PERIOD]
            if not expected.startswith(piece, (body_offset + start) % PERIOD):
                return False
        return True
