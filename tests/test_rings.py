"""Rings: once a queue-mode receiver without a key reads a Sender's frames in place, the Sender
announces each next frame in a ring block of its section and posts a message, with no
WM_COPYDATA round trip. The receiver reads what is announced as it reads a descriptor, and
writes its answer into the block (csrc/copydata.h, CD_RING_SIZE).
"""

from __future__ import annotations

import ctypes
import struct
import time

import pytest

import copydata
from copydata._core import ffi, lib
from copydata._sender import SECTION_PREFIX
from peer import payload
from frames import DATA, MiB, USER, Section, batch_frame, descriptor, read_section, section_view, wait_for

user32 = ctypes.WinDLL("user32", use_last_error=True)
user32.RegisterWindowMessageW.restype = ctypes.c_uint
user32.PostMessageW.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_size_t, ctypes.c_ssize_t]
RING_MESSAGE = user32.RegisterWindowMessageW("copydata.v1.ring")
RING = struct.Struct("<QQQQQQ")  # ring id, lease id, offset, length, release offset, answer


def post(receiver: copydata.Receiver, ring_id: int, lease: int) -> None:
    assert user32.PostMessageW(receiver.hwnd, RING_MESSAGE, ring_id, lease)


def write_section(name: str, offset: int, data: bytes) -> None:
    with section_view(name, 0x2) as view:  # FILE_MAP_WRITE
        ctypes.memmove(view + offset, data, len(data))


def answer_word(name: str, ring_offset: int) -> tuple[int, int]:
    """The lease id and answer the receiver last wrote into the ring block."""
    (word,) = struct.unpack("<Q", read_section(name, ring_offset + 40, 8))
    return word >> 8, word & 0xFF


def test_a_stream_of_large_messages_is_announced_rather_than_sent_and_arrives_whole(start_peer):
    """40 messages of about 1 MiB (frames of 7): the first frame goes as a descriptor, and the
    receiver's answer lets the Sender announce every later one."""
    specs = [(n, MiB + n, n) for n in range(40)]
    with copydata.Receiver(copy=False) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs))
        for tag, size, seed in specs:
            message = receiver.recv(timeout=60)
            assert (message.tag, len(message.data)) == (tag, size)
            assert message.data == payload(size, seed), f"message {tag} arrived changed"
            del message
        assert peer.read(timeout=60) == {"sent": len(specs)}
        stats = receiver.stats
    assert stats.refused_messages == 0
    assert stats.leased_messages == len(specs)
    assert stats.ring_frames >= 5  # at least 6 frames (7 messages at most each): all but the first announced


def test_an_announced_frame_refused_for_a_full_queue_is_offered_again_in_order(start_peer):
    """Frames of one message of 1 MiB, and a queue that holds one: the frame announced behind
    it is refused, and the Sender offers it again (as a descriptor, with back-off) until it fits."""
    specs = [(n, MiB + n, n + 7) for n in range(40)]
    with copydata.Receiver(copy=False, max_queue_bytes=MiB + MiB // 2, max_message_size=4096) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs),
                          "--max-batch-bytes", str(2 * MiB))
        for tag, size, seed in specs:
            time.sleep(0.03)  # a slow reader: the next frame comes while this one is queued
            message = receiver.recv(timeout=60)
            assert (message.tag, message.data) == (tag, payload(size, seed))
            del message
        assert peer.read(timeout=60) == {"sent": len(specs)}
        stats = receiver.stats
    assert stats.refused_queue_full >= 1
    assert stats.ring_frames >= 1
    assert stats.received_messages == len(specs)


# A section laid out as a Sender lays out its own: the header (release words at 24 and 32, the ring
# block at 64), then two halves from DATA on.
HALF = 2 * MiB
FIRST, SECOND, END = DATA, DATA + HALF, DATA + 2 * HALF
RELEASE = 24
RING_OFFSET = 64


def ring_section(name: str, ring_id: int) -> Section:
    """Two frames of one 1 MiB record each, in two halves; release words and a ring block before."""
    section = Section(name, END, f"O:{USER}D:P(A;;GA;;;{USER})")
    write_section(name, FIRST, batch_frame((1, payload(MiB, 1))))
    write_section(name, SECOND, batch_frame((2, payload(MiB, 2))))
    write_section(name, RING_OFFSET, RING.pack(ring_id, 0, 0, 0, 0, 0))
    return section


#: Each frame of ring_section: a batch frame of one 1 MiB record.
FRAME_SIZE = len(batch_frame((1, payload(MiB, 1))))


def arming(name: str) -> bytes:
    """The descriptor of ring_section's first frame, with a lease and the ring block."""
    return descriptor(name, FIRST, FRAME_SIZE, request_id=1, release_offset=RELEASE, ring_offset=RING_OFFSET)


def announce(name: str, lease: int, offset: int, length: int, release_offset: int) -> None:
    write_section(name, RING_OFFSET + 8, struct.pack("<QQQQ", lease, offset, length, release_offset))


def test_announcements_are_checked_as_descriptors_are_and_forged_posts_do_nothing(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    ring_id = 0x1234_5678_9ABC_DEF1
    ours = ring_section(name, ring_id)
    try:
        with copydata.Receiver(copy=False) as receiver:
            assert copydata.send(receiver, arming(name)) == lib.CD_ANSWER_LEASED_RING
            first = receiver.recv(timeout=5)
            assert (first.tag, first.data) == (1, payload(MiB, 1))

            # Posts anyone could make: an unknown ring id, or a lease id other than the next one.
            announce(name, 2, SECOND, FRAME_SIZE, RELEASE + 8)
            post(receiver, ring_id ^ 1, 2)
            post(receiver, ring_id, 3)
            post(receiver, 0, 0)
            time.sleep(0.3)
            assert answer_word(name, RING_OFFSET) == (0, 0)
            assert receiver.stats.received_messages == 1

            # What the block announces is checked: here a range past the section's end.
            announce(name, 2, END, FRAME_SIZE, RELEASE + 8)
            post(receiver, ring_id, 2)
            wait_for(lambda: answer_word(name, RING_OFFSET) == (2, 0), timeout=5)
            assert receiver.stats.refused_section == 1
            # Refused, so the ring is forgotten: the sender must offer that frame again itself.
            announce(name, 2, SECOND, FRAME_SIZE, RELEASE + 8)
            post(receiver, ring_id, 2)
            time.sleep(0.3)
            assert answer_word(name, RING_OFFSET) == (2, 0)
            assert receiver.stats.received_messages == 1

            # Offered again as a descriptor, the ring is armed again, and the next one announced.
            again = descriptor(name, SECOND, FRAME_SIZE, request_id=2, release_offset=RELEASE + 8,
                               ring_offset=RING_OFFSET)
            assert copydata.send(receiver, again) == lib.CD_ANSWER_LEASED_RING
            write_section(name, FIRST, batch_frame((3, payload(MiB, 3))))
            announce(name, 3, FIRST, FRAME_SIZE, RELEASE)
            post(receiver, ring_id, 3)
            wait_for(lambda: answer_word(name, RING_OFFSET) == (3, lib.CD_ANSWER_LEASED_RING), timeout=5)
            second, third = receiver.recv(timeout=5), receiver.recv(timeout=5)
            assert [(m.tag, m.data) for m in (second, third)] == [(2, payload(MiB, 2)), (3, payload(MiB, 3))]
            assert receiver.stats.ring_frames == 1

            # A release word inside the announced range is malformed, as in a descriptor.
            del first, second, third
            announce(name, 4, SECOND, FRAME_SIZE, SECOND + 8)
            post(receiver, ring_id, 4)
            wait_for(lambda: answer_word(name, RING_OFFSET) == (4, 0), timeout=5)
            assert receiver.stats.refused_malformed == 1
            assert receiver.stats.received_messages == 3
    finally:
        ours.close()


@pytest.mark.parametrize("mode", ["key", "sync"])
def test_a_receiver_with_a_key_or_in_sync_mode_arms_no_ring(unique_name, mode):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    key = b"k" * 32
    ours = ring_section(name, 99)
    try:
        options = {"key": key} if mode == "key" else {"sync": True, "on_message": lambda m: True}
        with copydata.Receiver(copy=False, **options) as receiver:
            answer = copydata.send(receiver, arming(name), key=key if mode == "key" else None)
            assert answer == (lib.CD_ANSWER_LEASED if mode == "key" else 1)
            announce(name, 2, SECOND, FRAME_SIZE, RELEASE + 8)
            post(receiver, 99, 2)
            time.sleep(0.3)
            assert answer_word(name, RING_OFFSET) == (0, 0)
            assert receiver.stats.ring_frames == 0
    finally:
        ours.close()


def test_waiting_for_an_answer_that_never_comes_ends_in_a_typed_error_in_time():
    """A frame announced to a window that never answers (here, a receiver that knows no such
    ring): SendTimeout after the Sender's timeout; to a window that is gone, TargetNotFound."""
    block = ffi.new("cd_ring_block *")
    with copydata.Receiver() as receiver:
        sender = copydata.Sender(receiver, timeout=0.5)
        sender._transport._ring, sender._transport._announced = block, (5, 0, 100, 1, time.monotonic())
        started = time.monotonic()
        with pytest.raises(copydata.SendTimeout, match="may or may not have arrived"):
            sender._transport.settle()
        assert 0.5 <= time.monotonic() - started < 2
        # Model finding 4: the receiver may take the frame still, so its half counts as leased.
        assert sender._transport._leases[0] == 5
        hwnd = receiver.hwnd
    gone = copydata.Sender(hwnd, timeout=30)
    gone._transport._ring, gone._transport._announced = block, (5, 0, 100, 1, time.monotonic())
    started = time.monotonic()
    with pytest.raises(copydata.TargetNotFound):
        gone._transport.settle()
    assert time.monotonic() - started < 1


def test_a_ring_id_rewritten_by_its_sender_moves_the_ring_and_the_old_id_is_forgotten(unique_name):
    """The receiver reads the ring id from the block whenever it arms a ring: a sender that
    rewrites it between announcements ends up with one ring, under the new id, not two."""
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    old_id, new_id = 0x1111_2222_3333_4445, 0x5555_6666_7777_8889
    ours = ring_section(name, old_id)
    try:
        with copydata.Receiver(copy=False) as receiver:
            assert copydata.send(receiver, arming(name)) == lib.CD_ANSWER_LEASED_RING
            write_section(name, RING_OFFSET, struct.pack("<Q", new_id))
            announce(name, 2, SECOND, FRAME_SIZE, RELEASE + 8)
            post(receiver, old_id, 2)
            wait_for(lambda: answer_word(name, RING_OFFSET) == (2, lib.CD_ANSWER_LEASED_RING), timeout=5)
            write_section(name, FIRST, batch_frame((3, payload(MiB, 3))))
            announce(name, 3, FIRST, FRAME_SIZE, RELEASE)
            post(receiver, old_id, 3)  # forgotten
            time.sleep(0.3)
            assert answer_word(name, RING_OFFSET) == (2, lib.CD_ANSWER_LEASED_RING)
            post(receiver, new_id, 3)
            wait_for(lambda: answer_word(name, RING_OFFSET) == (3, lib.CD_ANSWER_LEASED_RING), timeout=5)
            post(receiver, old_id, 2)  # the old id's last lease: nothing is left to read under it
            time.sleep(0.3)
            assert answer_word(name, RING_OFFSET) == (3, lib.CD_ANSWER_LEASED_RING)
            assert [receiver.recv(timeout=5).tag for _ in range(3)] == [1, 2, 3]
            assert (receiver.stats.ring_frames, receiver.stats.refused_messages) == (2, 0)
    finally:
        ours.close()


def test_a_frame_after_one_that_ended_the_ring_is_sent_as_a_descriptor(start_peer):
    """Model finding 1 (model/README.md): an announced frame that the receiver copies (no record
    of 1 MiB) ends the ring, and the next frame, which the Sender had meant to announce, must go
    as a descriptor: a post would be ignored, and the frame lost after the Sender's time-out."""
    specs = [(1, 2 * MiB, 1), (2, 200 << 10, 2), (3, 2 * MiB, 3)]
    expected = [payload(size, seed) for _, size, seed in specs]
    with copydata.Receiver() as receiver:
        # Frames of 1 MiB: the 2 MiB messages go whole, each alone; the 200 KiB one alone between
        # them, in shared memory too (above 64 KiB).
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs),
                          "--max-batch-bytes", str(MiB), "--shm-threshold", str(64 << 10))
        started = time.monotonic()
        got = [receiver.recv(timeout=10) for _ in specs]
        assert [(m.tag, m.data) for m in got] == [(tag, data) for (tag, _, _), data in zip(specs, expected)]
        assert peer.read(timeout=30) == {"sent": len(specs)}
        assert time.monotonic() - started < 10
        stats = receiver.stats
    assert stats.ring_frames >= 1  # the 200 KiB frame was announced
    assert stats.refused_messages == 0
