"""A hostile sender in its own shared memory: a process of the receiver's user, which may write
its own section at any moment.

    python section_rewriter.py HWND SEED

It makes a section as a Sender does (its owner, access list, magic and secret all right, so the
receiver maps it and reads it) with five frames at fixed places (LAYOUT), offers them by
descriptor with leases and the ring block, and announces frames in the ring block with posted
messages, while a second thread rewrites, in a tight loop, the section's header (magic, secret,
release words, reserved words), its ring block, and every header of its frames (envelopes,
record lengths and tags, part totals and offsets), with random and extreme values. Before most
offers it writes the headers back, so that frames are also taken and the receiver reads some
while they change under it; in about a third it first makes one header wrong on purpose
(``corrupt``: lengths past the frame's end and past the section's), so that the same seed
makes the same wrong frames.

Nothing else in the section is ever written: each 8-byte word of it holds ``filler()`` (its
offset and a mark), so bytes a receiver delivers from anywhere else are caught
(``foreign_bytes``). Every message it sends or announces names HOSTILE as its sender (wParam).

Reports {"ready": NAME} once the section exists, then runs until its stdin closes, then
reports {"offers", "answers", "posts", "ring_answers", "writes", "errors"}.
"""

from __future__ import annotations

import collections
import json
import random
import struct
import sys
import threading
import time
from array import array
from typing import NamedTuple

from copydata import _envelope, _native
from copydata._constants import SECTION_PREFIX, SMTO_ABORTIFHUNG
from copydata._core import ffi

MiB = 1 << 20
DATA = 4096  # where a Sender's halves begin: the header's page before
HALF = 2 * MiB
SECTION_SIZE = DATA + 2 * HALF
RELEASE_WORDS = (24, 32)  # one per half
RING = 64  # the ring block: ring id, lease id, offset, length, release offset, answer
HOSTILE = 0x0BAD5EC7  # the window it names as its own (fits a 32-bit wParam)
MARK = 0x48535452
HEADER_END = RING + 48  # the section header as the receiver reads it: magic to ring block


class Frame(NamedTuple):
    offset: int
    records: tuple[int, ...]  # a batch frame's record sizes; () for a part frame
    part: int = 0  # a part frame's total (one part: the whole message)

    @property
    def length(self) -> int:
        return 32 + self.part if not self.records else 16 + sum(12 + size for size in self.records)

    @property
    def release_offset(self) -> int:
        return RELEASE_WORDS[(self.offset - DATA) // HALF]

    def header_spans(self) -> list[tuple[int, int]]:
        """Where its headers lie: the envelope, then each record's (or the part's fields)."""
        if not self.records:
            return [(self.offset, self.offset + 32)]
        spans, at = [(self.offset, self.offset + 16)], self.offset + 16
        for size in self.records:
            spans.append((at, at + 12))
            at += 12 + size
        return spans


# Records below 1 MiB are copied out, those of 1 MiB or more kept in place under a lease (and
# only those arm a ring); a part frame in a section is copied too.
LAYOUT = (
    Frame(DATA, (200, 5000, 64)),
    Frame(DATA + (64 << 10), (MiB + 3,)),
    Frame(DATA + HALF, (), part=3000),
    Frame(DATA + HALF + (64 << 10), (MiB + 11, 70_000)),
    Frame(SECTION_SIZE - (16 + 12 + 100 + 12 + 40_000), (100, 40_000)),  # ends where the section ends
)
#: Every byte it ever writes something other than FILLER into (the receiver writes there too).
HEADER_SPANS = [(0, HEADER_END)] + [span for frame in LAYOUT for span in frame.header_spans()]
assert all(frame.offset + frame.length <= DATA + HALF * (1 + (frame.offset - DATA) // HALF) for frame in LAYOUT)


def filler(size: int = SECTION_SIZE) -> bytes:
    """What lies outside HEADER_SPANS: at each multiple of 8, its offset (u32), then MARK."""
    words = array("I", bytes(size))
    words[0::2] = array("I", range(0, size, 8))
    words[1::2] = array("I", [MARK]) * (size // 8)
    return words.tobytes()


def _run_at(data: bytes, base: int, at: int, section: bytes) -> int:
    """How many bytes of ``data`` from ``at`` on are the section's from ``base`` on."""
    size = min(len(data) - at, len(section) - base)
    if size <= 0:
        return 0
    expected = bytearray(section[base:base + size])
    for low, high in HEADER_SPANS:
        low, high = max(low, base), min(high, base + size)
        if low < high:
            expected[low - base:high - base] = data[at + low - base:at + high - base]
    if expected == data[at:at + size]:
        return size
    short, long = 0, size  # the longest equal prefix: equal up to short, not up to long
    while long - short > 1:
        middle = (short + long) // 2
        if expected[:middle] == data[at:at + middle]:
            short = middle
        else:
            long = middle
    return short


def foreign_bytes(data: bytes, section: bytes) -> str | None:
    """Why ``data`` cannot be bytes of the hostile section (``section``: ``filler()``), or None.
    It must be runs of the section (more than one for a message put together from parts), each
    placed by a word of FILLER in its first 256 bytes, anything allowed only in HEADER_SPANS; a
    last run under 15 bytes, too short to hold a whole word of FILLER, is not placed."""
    at = 0
    while len(data) - at >= 15:
        for start in range(at, min(len(data) - 7, at + 256)):
            position, mark = struct.unpack_from("<II", data, start)
            base = position - (start - at)
            if mark == MARK and position % 8 == 0 and base >= 0:
                run = _run_at(data, base, at, section)
                if run >= start + 8 - at:  # the run holds the word that placed it
                    at += run
                    break
        else:
            return (f"{len(data)} bytes of which those from {at} on are no run of the section "
                    f"(they start {data[at:at + 24].hex()})")
    return None


U32_EXTREMES = (0, 1, 11, 12, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFF3, 0xFFFF_FFFF, MiB, SECTION_SIZE)
U64_EXTREMES = (0, 1, 8, 64, DATA, HALF, SECTION_SIZE - 48, SECTION_SIZE - 8, SECTION_SIZE, SECTION_SIZE + 8,
                1 << 32, 1 << 63, (1 << 64) - 48, (1 << 64) - 8, (1 << 64) - 1)


def rewritable() -> list[tuple[int, int]]:
    """(offset, width) of everything the rewriter rewrites: 1 is a byte, 4 and 8 numbers."""
    chosen = [(at, 1) for at in range(24)]  # magic and secret
    chosen += [(at, 8) for at in range(24, HEADER_END, 8)]  # release words, reserved, ring block
    for frame in LAYOUT:
        chosen += [(frame.offset + at, 1) for at in range(8)] + [(frame.offset + 8, 8)]  # envelope
        if not frame.records:
            chosen += [(frame.offset + 16, 8), (frame.offset + 24, 8)]  # total, offset
        for low, _ in frame.header_spans()[1:]:
            chosen += [(low, 8), (low + 8, 4)]  # tag, size
    return chosen


def value(rng: random.Random, width: int) -> int:
    if width == 1:
        return rng.getrandbits(8)
    extremes = U32_EXTREMES if width == 4 else U64_EXTREMES
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(extremes)
    if roll < 0.7:  # near a real length or place
        near = rng.choice([f.length for f in LAYOUT] + [f.offset for f in LAYOUT] + list(LAYOUT[0].records))
        return (near + rng.randrange(-16, 17)) % (1 << (8 * width))
    return rng.getrandbits(8 * width)


class Rewriter:
    def __init__(self, hwnd: int, seed: int) -> None:
        self.hwnd = hwnd
        self.rng = random.Random(seed)
        self.section = _native.Section(f"{SECTION_PREFIX}{self.rng.getrandbits(128):032x}", SECTION_SIZE)
        self.view = ffi.buffer(self.section.at(0), SECTION_SIZE)
        self.view[HEADER_END:] = filler()[HEADER_END:]
        self.ring_id = self.rng.getrandbits(64) | 1
        self.ring_message = _native.ring_message()
        self.name = self.section.name.encode("utf-16-le")
        self.stop = threading.Event()
        self.writes = 0
        self.counts: dict[str, collections.Counter[str]] = {
            "answers": collections.Counter(), "ring_answers": collections.Counter()}
        self.offers = self.posts = self.errors = 0
        self.lease = 0
        self.armed: int | None = None  # the lease the receiver last answered 6 for

    # --- the section's own headers, as a Sender writes them ------------------------------

    def restore(self) -> None:
        header = b"cd.shm.1" + self.section.secret
        self.view[0:24] = header
        struct.pack_into("<Q", self.view, RING, self.ring_id)
        for frame in LAYOUT:
            if frame.records:
                self.view[frame.offset:frame.offset + 16] = _envelope.HEADER.pack(_envelope.MAGIC, 1, 0, 4, 0, 0)
                for (low, _), size in zip(frame.header_spans()[1:], frame.records):
                    struct.pack_into("<QI", self.view, low, 0x4854_0000 + low, size)
            else:  # a fresh transfer each time: its parts are never put together with another's
                transfer = self.rng.getrandbits(64) | 1
                envelope = _envelope.HEADER.pack(_envelope.MAGIC, 1, 0, 5, 0, transfer)
                self.view[frame.offset:frame.offset + 32] = envelope + struct.pack("<QQ", frame.part, 0)

    def rewrite(self, seed: int) -> None:
        """The second thread: bursts of writes in a tight loop, and single writes, forever."""
        rng, targets = random.Random(seed), rewritable()
        while not self.stop.is_set():
            burst = rng.choice([1, 1, 10, 200, 5000])
            for _ in range(burst):
                at, width = rng.choice(targets)
                number = value(rng, width)
                if width == 1:
                    self.view[at:at + 1] = bytes((number,))
                else:
                    struct.pack_into("<I" if width == 4 else "<Q", self.view, at, number)
            self.writes += burst
            time.sleep(rng.choice([0, 0, 0.0005, 0.002]))

    # --- offering and announcing --------------------------------------------------------

    def send(self, payload: bytes) -> int | None:
        try:
            answer = _native.send(self.hwnd, self.rng.getrandbits(32), HOSTILE, payload, len(payload), 2000,
                                  SMTO_ABORTIFHUNG, 2.0)
        except Exception as error:  # noqa: BLE001 - a time-out or a gone receiver ends nothing here
            if type(error).__name__ == "TargetNotFound":
                self.stop.set()
            self.errors += 1
            return None
        self.counts["answers"][str(answer)] += 1
        self.offers += 1
        return answer

    def descriptor(self, offset: int, length: int, lease: int, release: int, ring: int,
                   secret: bytes | None = None) -> bytes:
        return (_envelope.HEADER.pack(_envelope.MAGIC, 1, 0, 6, 0, lease)
                + struct.pack("<QQQQ16sI", offset, length, release, ring,
                              self.section.secret if secret is None else secret, len(self.name) // 2) + self.name)

    def corrupt(self, frame: Frame) -> int:
        """One wrong header, chosen, in the frame about to be offered (the rewriting thread adds
        more at random while the receiver reads): a record running past the frame's end, to the
        section's end or past it; a part beyond its total; an envelope that is not one. Or the
        last record grown, the bytes after it in the frame: returns by how much, for the range
        to grow too (past the section's end, for the frame that ends there)."""
        rng = self.rng
        if frame.records and rng.random() < 0.3:
            grow = rng.choice([1, 8, 4096, MiB])
            struct.pack_into("<I", self.view, frame.header_spans()[-1][0] + 8, frame.records[-1] + grow)
            return grow
        if rng.random() < 0.2:
            at, byte = rng.choice([(4, 2), (5, 6), (5, 254), (6, 0), (6, 7), (6, 99), (7, 1)])
            self.view[frame.offset + at:frame.offset + at + 1] = bytes((byte,))
        elif frame.records:
            low = rng.choice(frame.header_spans()[1:])[0]
            data, end = low + 12, frame.offset + frame.length
            size = rng.choice([end - data + rng.choice([1, 4, 12, 4096]),
                               SECTION_SIZE - data + rng.choice([0, 1, 8, 4096, MiB]), 0xFFFF_FFFF])
            struct.pack_into("<I", self.view, low + 8, size)
        else:
            struct.pack_into("<QQ", self.view, frame.offset + 16,
                             *rng.choice([(frame.part - 1, 0), (frame.part, 1), ((1 << 64) - 1, 0),
                                          (frame.part, frame.part), (0, 0), (SECTION_SIZE, 0)]))
        return 0

    def offer(self) -> None:
        frame = self.rng.choice(LAYOUT)
        grow = self.corrupt(frame) if self.rng.random() < 0.35 else 0
        self.lease += 1
        lease = self.lease if self.rng.random() < 0.85 else 0
        answer = self.send(self.descriptor(frame.offset, frame.length + grow, lease,
                                           frame.release_offset if lease else 0,
                                           RING if lease and self.rng.random() < 0.9 else 0))
        if answer == 6:
            self.armed = lease

    def announce(self) -> None:
        assert self.armed is not None
        lease, frame = self.armed + 1, self.rng.choice(LAYOUT)
        release = frame.release_offset
        announced = (frame.offset, frame.length, release)
        if self.rng.random() < 0.25:  # a range past the section's end, a release word inside it or past the end
            announced = self.rng.choice([(SECTION_SIZE - 100, 200, release), (frame.offset, SECTION_SIZE, release),
                                         (SECTION_SIZE, 1, release), ((1 << 64) - 8, 16, release),
                                         (frame.offset, frame.length, frame.offset + 8),
                                         (frame.offset, frame.length, SECTION_SIZE - 4)])
        elif self.rng.random() < 0.35:
            announced = (frame.offset, frame.length + self.corrupt(frame), release)
        struct.pack_into("<QQQ", self.view, RING + 16, *announced)
        struct.pack_into("<Q", self.view, RING + 8, lease)
        self.post(self.ring_id, lease)
        self.armed = None
        deadline = time.monotonic() + 0.02
        while time.monotonic() < deadline:
            (word,) = struct.unpack_from("<Q", self.view, RING + 40)
            if word >> 8 == lease:
                self.counts["ring_answers"][str(word & 0xFF)] += 1
                self.armed = lease if word & 0xFF == 6 else None
                self.lease = max(self.lease, lease)
                return
            time.sleep(0.0005)
        self.counts["ring_answers"]["none"] += 1  # not (yet) answered, or the answer rewritten

    def post(self, ring_id: int, lease: int) -> None:
        try:
            _native.post_ring(self.hwnd, self.ring_message, ring_id, lease)
        except Exception:  # noqa: BLE001 - the receiver is gone
            self.stop.set()
        self.posts += 1

    def forge(self) -> None:
        """A descriptor or a post with extreme fields: past the end, overlapping, unaligned."""
        rng = self.rng
        if rng.random() < 0.3:
            self.post(rng.choice([self.ring_id, self.ring_id ^ 1, rng.getrandbits(64)]),
                      rng.choice([0, (self.armed or 0) + 2, rng.getrandbits(64), 1 << 63]))
            return
        self.send(self.descriptor(value(rng, 8), value(rng, 8), rng.choice([0, 1, self.lease + 1, value(rng, 8)]),
                                  value(rng, 8), rng.choice([0, RING, value(rng, 8)]),
                                  secret=rng.choice([None, None, bytes(16), rng.randbytes(16)])))

    def run(self) -> None:
        rewriter = threading.Thread(target=self.rewrite, args=(self.rng.getrandbits(64),), daemon=True)
        rewriter.start()
        while not self.stop.is_set():
            if self.rng.random() < 0.6:
                self.restore()
            roll = self.rng.random()
            if self.armed is not None and roll < 0.4:
                self.announce()
            elif roll < 0.85:
                self.offer()
            else:
                self.forge()
            time.sleep(self.rng.random() * 0.003)
        rewriter.join()


def main() -> None:
    hwnd, seed = int(sys.argv[1]), int(sys.argv[2])
    sys.setswitchinterval(0.0002)  # the rewriting thread holds the GIL in its loop: let offers in often
    rewriter = Rewriter(hwnd, seed)
    rewriter.restore()
    print(json.dumps({"ready": rewriter.section.name}), flush=True)

    def until_stdin_closes() -> None:
        sys.stdin.read()
        rewriter.stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    rewriter.run()
    if rewriter.armed is not None:
        rewriter.post(rewriter.ring_id, 0)
    print(json.dumps({"offers": rewriter.offers, "posts": rewriter.posts, "writes": rewriter.writes,
                      "errors": rewriter.errors, **{k: dict(v) for k, v in rewriter.counts.items()}}), flush=True)
    rewriter.section.close()


if __name__ == "__main__":
    main()
