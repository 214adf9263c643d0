"""A hostile process: sends COUNT frames that claim to be copydata frames and are all wrong.

    python attacker.py HWND COUNT SEED [--forge-seals]

Batch frames whose lengths overflow or point past the end, parts that never complete, overlap
or lie about their total, section descriptors naming sections that do not exist or are outside
copydata's namespace, with random dwData, a few at the largest allowed size. Reports JSON:
{"sent": COUNT, "accepted": N}: the well-formed first parts that were taken (and never complete);
the receiver holds at most 64 incomplete messages at a time and refuses more.

With --forge-seals, for a receiver with a key: every frame is sealed, around a valid or a
malformed inner frame, but with a MAC made without the key (random, zero, or keyed with a
guess), and every one must be refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import struct
import sys

import copydata
from copydata._core import lib

MAGIC = b"\x89CDE"


def header(random_: random.Random, kind: int, request_id: int = 0, flags: int = 0, codec: int | None = None) -> bytes:
    codec = random_.choice([0, 1, 2, 3, 4, 255]) if codec is None else codec
    return struct.pack("<4sBBBBQ", MAGIC, 1, codec, kind, flags, request_id)


def bad_batch(r: random.Random) -> bytes:
    records = b"".join(struct.pack("<QI", r.getrandbits(64), n) + bytes(n) for n in range(r.randrange(0, 4)))
    choice = r.randrange(6)
    if choice == 0:  # a record length past the end, or one that overflows
        return header(r, 4) + records + struct.pack("<QI", 1, r.choice([10, 0xFFFFFFFF, 1 << 31])) + b"abc"
    if choice == 1:  # a truncated record header
        return header(r, 4) + records + bytes(r.randrange(1, 12))
    if choice == 2:  # no record at all
        return header(r, 4)
    if choice == 3:
        return header(r, 4, flags=r.randrange(1, 256)) + records + struct.pack("<QI", 1, 0)
    if choice == 4:
        return header(r, 4, request_id=r.getrandbits(64) | 1) + records + struct.pack("<QI", 1, 0)
    return header(r, 4, codec=r.choice([6, 7, 100, 254])) + records + struct.pack("<QI", 1, 0)


def bad_part(r: random.Random) -> tuple[bytes, bool]:
    """A part frame, and whether the receiver should accept it (a first part that never ends)."""
    transfer = r.getrandbits(64) | 1
    choice = r.randrange(6)
    if choice == 0:  # a well-formed first part whose rest never comes
        total = r.randrange(2, 4096)
        return header(r, 5, transfer) + struct.pack("<QQ", total, 0) + bytes(r.randrange(1, total)), True
    if choice == 1:  # a later part of a transfer that never began
        return header(r, 5, transfer) + struct.pack("<QQ", 100, r.randrange(1, 100)) + b"x", False
    if choice == 2:  # no transfer id
        return header(r, 5, 0) + struct.pack("<QQ", 10, 0) + b"x", False
    if choice == 3:  # an empty part
        return header(r, 5, transfer) + struct.pack("<QQ", 10, 0), False
    if choice == 4:  # past its own total
        return header(r, 5, transfer) + struct.pack("<QQ", 10, r.randrange(5, 1 << 62)) + bytes(8), False
    return header(r, 5, transfer) + struct.pack("<QQ", r.choice([(64 << 20) + 1, (1 << 64) - 1]), 0) + b"x", False


def bad_section(r: random.Random) -> bytes:
    choice = r.randrange(5)
    name = r.choice(["Local\\copydata.v1.shm.nobody-" + str(r.getrandbits(32)),
                     "Local\\some-other-program", "Global\\copydata.v1.shm.x", "Local\\copydata.v1.shm.a\\b"])
    offset, length, characters = 0, r.randrange(1, 1 << 20), len(name)
    if choice == 1:
        characters += r.choice([-1, 1, 1000])
    elif choice == 2:
        length = 0
    elif choice == 3:
        offset = (1 << 64) - r.randrange(1, 100)
    encoded = name.encode("utf-16-le")
    lease = r.choice([0, 0, r.getrandbits(64)])
    release_offset = r.choice([0, r.randrange(0, 1 << 21) * 8, r.getrandbits(64)])
    ring_offset = r.choice([0, r.randrange(0, 1 << 21) * 8, r.getrandbits(64)])
    secret = r.choice([bytes(16), r.randbytes(16)])  # no section of ours has it
    return header(r, 6, request_id=lease) + struct.pack("<QQQQ16sI", offset, length, release_offset, ring_offset,
                                                         secret, max(characters, 0)) + encoded


def forged_seal(r: random.Random, hwnd: int, tag: int, inner: bytes) -> bytes:
    signed = header(r, 7, codec=0) + struct.pack("<QQQ", r.getrandbits(64) | 1, r.randrange(1, 1 << 20),
                                                 r.getrandbits(64))
    choice = r.randrange(3)
    if choice == 0:
        mac = r.randbytes(32)
    elif choice == 1:
        mac = bytes(32)
    else:  # a key guessed wrong
        mac = hmac.new(r.randbytes(32), struct.pack("<QQ", hwnd & 0xFFFFFFFF, tag) + signed + inner,
                       hashlib.sha256).digest()
    return signed + mac + inner


def main() -> None:
    hwnd, count, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    forge = "--forge-seals" in sys.argv[4:]
    r = random.Random(seed)
    accepted = 0
    for n in range(count):
        if forge:
            tag = r.getrandbits(64)
            inner = r.choice([bad_batch(r), bad_section(r), header(r, 0) + r.randbytes(r.randrange(100)),
                              r.randbytes(r.randrange(200))])
            if copydata.send(hwnd, forged_seal(r, hwnd, tag, inner), tag=tag, check=False, timeout=10):
                raise SystemExit(f"forged seal {n} was accepted")
            continue
        kind = r.randrange(3)
        expect_accept = False
        if n % 20000 == 0:  # now and then, malformed at the largest size a message may have
            frame = header(r, 4) + struct.pack("<QI", 1, 0xFFFFFFF0) + bytes(copydata.MAX_MESSAGE_SIZE - 28)
        elif kind == 0:
            frame = bad_batch(r)
        elif kind == 1:
            frame, expect_accept = bad_part(r)
        else:
            frame = bad_section(r)
        result = copydata.send(hwnd, frame, tag=r.getrandbits(64), check=False, timeout=10)
        # A malformed frame must be refused (0, or CD_ANSWER_NEVER_FITS for a part whose total
        # is above the limits). A well-formed first part is taken while the receiver has room
        # for one more incomplete message (64 at a time), refused after that.
        taken = result not in (0, lib.CD_ANSWER_NEVER_FITS)
        if taken and not expect_accept:
            raise SystemExit(f"frame {n} ({frame[:40].hex()}...) was accepted (answer {result})")
        accepted += taken
    print(json.dumps({"sent": count, "accepted": accepted}), flush=True)


if __name__ == "__main__":
    main()
