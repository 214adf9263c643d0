"""The benchmark's payloads and their check on arrival, shared by every Python sender and receiver.

The payload of message ``sequence`` is ``size`` bytes: the sequence number (8 bytes, little
endian), then a pseudo-random body that depends only on ``size``. A receiver checks every
byte of every message (length, sequence, CRC-32 of the body) against a CRC it computes once,
so no mechanism can look fast by losing, reordering or damaging data.
"""

from __future__ import annotations

import random
import zlib
from typing import Iterator

HEADER_SIZE = 8
#: Wine 8.0 breaks on cross-process WM_COPYDATA of 2 MiB or more (and copydata's default
#: limit is 2,000,000 bytes), so the WM_COPYDATA mechanisms send bigger payloads in chunks of
#: at most this size. The native programs use the same bound.
CHUNK_SIZE = 1 << 20
_PIECE = 1 << 20


def _pattern_pieces(size: int) -> Iterator[bytes]:
    """The pattern's bytes a piece at a time, so that a receiver never holds a whole copy."""
    generator = random.Random(size)
    for offset in range(0, size, _PIECE):
        yield generator.randbytes(min(_PIECE, size - offset))


def _body_crc32(size: int) -> int:
    """CRC-32 of the body (the pattern after the header) of a ``size``-byte payload."""
    crc, offset = 0, 0
    for piece in _pattern_pieces(size):
        crc = zlib.crc32(memoryview(piece)[max(HEADER_SIZE - offset, 0):], crc)
        offset += len(piece)
    return crc


def make_payload(size: int) -> bytearray:
    """A payload to send: stamp each message's sequence number with :func:`stamp`."""
    if size < HEADER_SIZE:
        raise ValueError(f"payloads have at least {HEADER_SIZE} bytes, not {size}")
    return bytearray().join(_pattern_pieces(size))


def stamp(payload: memoryview, sequence: int) -> None:
    payload[:HEADER_SIZE] = sequence.to_bytes(HEADER_SIZE, "little")


def chunks(message: memoryview, chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """``message`` in consecutive slices of at most ``chunk_size`` bytes (no copy)."""
    for offset in range(0, len(message), chunk_size):
        yield message[offset:offset + chunk_size]


class PayloadCheck:
    """Checks a stream of messages of ``size`` bytes, fed whole or in chunks, as they arrive."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.expected_body_crc = _body_crc32(size)
        self.messages = 0
        self.intact = 0
        self.chunks = 0
        self.bytes = 0
        self._filled = 0
        self._header = b""
        self._crc = 0

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
        self._crc = zlib.crc32(view, self._crc)
        self._filled += len(view)
        if self._filled < self.size:
            return False
        good = (not overrun and self._crc == self.expected_body_crc
                and self._header == self.messages.to_bytes(HEADER_SIZE, "little"))
        self.intact += good
        self.messages += 1
        self._filled, self._header, self._crc = 0, b"", 0
        return True

