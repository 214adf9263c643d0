"""Leases: large messages in a Sender's shared memory, read where they lie (queue mode).

A frame offered with a lease may stay in the sender's section after the receiver answers it:
its records of 1 MiB and more are queued as views of that memory, and the receiver writes the
lease id into the sender's release word once the last of them is freed. The sender writes
into that half again only after that, or moves to a new section (and stops offering leases)
when the receiver holds on to them.
"""

from __future__ import annotations

import gc
import struct
import threading
import time

import pytest

import copydata
from copydata import _transports
from copydata._core import lib
from copydata._sender import SECTION_PREFIX
from frames import DATA, MiB, UNWRITTEN, USER, Section, batch_frame, descriptor, failing_once, read_section
from peer import payload

RELEASE_WORD = struct.Struct("<Q")


def test_large_messages_are_read_in_place_and_every_byte_arrives(start_peer):
    """More frames than the two halves hold, each released as its messages go: the halves are
    written again and again, and no message changes before it is read."""
    sizes = [MiB, 2_500_000, 100, (4 << 20) + 3, 70_000, MiB + 1]
    specs = [(n, size, n + 1) for n, size in enumerate(sizes * 4)]
    # Made before: a reader that holds each message only as long as a comparison takes, so that
    # the Sender's grace for a release (about 80 ms here) is never what the test measures.
    expected = {seed: payload(size, seed) for _, size, seed in specs}
    with copydata.Receiver(copy=False) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs))
        for tag, size, seed in specs:
            message = receiver.recv(timeout=60)
            assert (message.tag, len(message.data)) == (tag, size)
            assert isinstance(message.data, memoryview)
            assert message.data == expected[seed], f"message {tag} ({size} bytes) arrived changed"
            del message
        assert peer.read(timeout=60) == {"sent": len(specs)}
        stats = receiver.stats
    assert stats.refused_messages == 0
    # Every message of 1 MiB and more, and only those, was read in place.
    assert stats.leased_messages == sum(size >= MiB for _, size, _ in specs)


@pytest.mark.parametrize("max_batch_bytes, largest_whole", [(MiB, 8 * MiB), (16 * MiB, 64 * MiB)],
                         ids=["eight-times-max_batch_bytes", "at-most-64-MiB"])
def test_a_message_above_max_batch_bytes_goes_whole_and_is_read_in_place_up_to_a_bound(
        start_peer, max_batch_bytes, largest_whole):
    """A message too large for a batch frame travels whole, alone in a frame whose half grows to
    fit it, and is read in place; above eight times max_batch_bytes (at most 64 MiB), it goes
    in parts, which the receiver copies and puts together."""
    whole = [max_batch_bytes + 1, largest_whole]
    in_parts = [largest_whole + 1]
    sizes = [whole[0], 100, whole[1], in_parts[0], 2 * MiB]
    specs = [(n, size, n + 1) for n, size in enumerate(sizes)]
    expected = [payload(size, seed) for _, size, seed in specs]  # made before: each view is let go at once
    limits = {"max_queue_bytes": 2 * largest_whole, "max_transfer_size": 2 * largest_whole}
    with copydata.Receiver(copy=False, **limits) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs),
                          "--max-batch-bytes", str(max_batch_bytes))
        for (tag, size, _), data in zip(specs, expected):
            message = receiver.recv(timeout=60)
            assert (message.tag, len(message.data)) == (tag, size)
            assert message.data == data, f"message {tag} ({size} bytes) arrived changed"
            del message
        assert peer.read(timeout=60) == {"sent": len(specs)}
        stats = receiver.stats
    assert stats.refused_messages == 0
    # Read in place: the whole ones and the 2 MiB one (whole too, with max_batch_bytes 1 MiB, or
    # in a batch frame); the one in parts was copied.
    assert stats.leased_messages == len(specs) - 2


def test_a_copying_receiver_takes_leases_too(start_peer):
    """copy=True: Python copies each leased message into bytes and frees it at once."""
    specs = [(n, 3 * MiB, n) for n in range(8)]
    with copydata.Receiver() as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs))
        for tag, size, seed in specs:
            message = receiver.recv(timeout=60)
            assert type(message.data) is bytes
            assert (message.tag, message.data) == (tag, payload(size, seed))
        assert peer.read(timeout=60) == {"sent": len(specs)}
        assert receiver.stats.leased_messages == len(specs)


def test_messages_held_by_the_receiver_are_never_written_over(start_peer):
    """The receiver keeps every view: the sender cannot reuse its halves, moves to a new section
    after a short wait, and copies from then on. Every view kept still holds its bytes."""
    specs = [(n, 3 * MiB, n + 100) for n in range(10)]
    with copydata.Receiver(copy=False) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs))
        kept = [receiver.recv(timeout=60) for _ in specs]
        assert peer.read(timeout=60) == {"sent": len(specs)}
        stats = receiver.stats
    for message, (tag, size, seed) in zip(kept, specs):
        assert (message.tag, message.data) == (tag, payload(size, seed)), f"message {tag} was written over"
    # Some were leased before the sender gave up on leases; the rest were copied.
    assert 2 <= stats.leased_messages < len(specs)
    assert stats.refused_messages == 0


def lease_frame_section(name: str, sddl: str, big: bytes) -> tuple[Section, bytes, int]:
    """A section holding a batch frame of a large record and a small one; the frame and the
    offset of an 8-byte release word behind it."""
    frame = batch_frame((1, big), (2, b"small"))
    release_offset = DATA + -(-len(frame) // 8) * 8
    return Section(name, release_offset + 4096, sddl, frame), frame, release_offset


def test_the_release_word_is_written_once_the_last_leased_message_goes(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    big = bytes(range(256)) * (MiB // 256)
    ours, frame, release_offset = lease_frame_section(name, f"O:{USER}D:P(A;;GA;;;{USER})", big)
    try:
        receiver = copydata.Receiver(copy=False)
        offer = descriptor(name, DATA, len(frame), request_id=77, release_offset=release_offset)
        assert copydata.send(receiver, offer, tag=9) == lib.CD_ANSWER_LEASED
        large, small = receiver.recv(timeout=5), receiver.recv(timeout=5)
        assert (large.tag, large.data, small.tag, small.data) == (1, big, 2, b"small")
        assert receiver.stats.leased_messages == 1  # the small record was copied
        assert read_section(name, release_offset, 8) == UNWRITTEN  # still held
        receiver.close()
        assert large.data == big  # outlives its receiver
        del large
        assert RELEASE_WORD.unpack(read_section(name, release_offset, 8)) == (77,)
    finally:
        ours.close()


def test_a_frame_without_large_records_is_copied_and_its_release_word_left_alone(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    ours, frame, release_offset = lease_frame_section(name, f"O:{USER}D:P(A;;GA;;;{USER})", b"x" * (MiB - 1))
    try:
        with copydata.Receiver(copy=False) as receiver:
            offer = descriptor(name, DATA, len(frame), request_id=77, release_offset=release_offset)
            assert copydata.send(receiver, offer, tag=9) == 1
            assert [m.data for m in receiver.recv_many(2, timeout=5)] == [b"x" * (MiB - 1), b"small"]
            assert receiver.stats.leased_messages == 0
        assert read_section(name, release_offset, 8) == UNWRITTEN
    finally:
        ours.close()


def test_a_release_word_outside_the_section_is_refused(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    ours, frame, release_offset = lease_frame_section(name, f"O:{USER}D:P(A;;GA;;;{USER})", b"y" * MiB)
    try:
        with copydata.Receiver(copy=False) as receiver:
            past_the_end = descriptor(name, DATA, len(frame), request_id=5, release_offset=release_offset + (1 << 30))
            with pytest.raises(copydata.Rejected):
                copydata.send(receiver, past_the_end, tag=9)
            assert receiver.stats.refused_section == 1
            with pytest.raises(copydata.RecvTimeout):
                receiver.recv(timeout=0.2)
    finally:
        ours.close()


def test_a_sync_receiver_answers_a_lease_offer_as_it_answers_any_frame(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    ours, frame, release_offset = lease_frame_section(name, f"O:{USER}D:P(A;;GA;;;{USER})", b"z" * MiB)
    seen = []
    try:
        with copydata.Receiver(sync=True, on_message=lambda m: seen.append(len(m.data))) as receiver:
            offer = descriptor(name, DATA, len(frame), request_id=5, release_offset=release_offset)
            assert copydata.send(receiver, offer, tag=9) == 1
            assert receiver.stats.leased_messages == 0
        assert seen == [MiB, 5]
        assert read_section(name, release_offset, 8) == UNWRITTEN
    finally:
        ours.close()


def test_a_sender_that_cannot_move_to_a_new_section_never_writes_over_held_messages():
    """The first message stays queued (held) past the lease's grace, so the Sender must leave
    its section, and cannot: the next frame goes to private memory, then to a new section,
    not into the half the receiver still reads."""
    with copydata.Receiver(copy=False) as receiver:
        sender = copydata.Sender(receiver, linger=60, timeout=10)
        sender.send(b"a" * (3 * MiB), tag=1)
        sender.flush()
        calls = failing_once(sender)
        sender.send(b"b" * (3 * MiB), tag=2)
        with pytest.raises(copydata.CopyDataError, match="no section this time"):
            sender.flush()  # b was accepted; then the move to a new section failed
        sender.send(b"c" * (9 * MiB), tag=3)  # in parts, which need a section too
        sender.send(b"d" * (3 * MiB), tag=4)
        sender.send(b"e" * 100, tag=5)
        sender.close()
        messages = receiver.recv_many(5, timeout=5)
        while len(messages) < 5:
            messages += receiver.recv_many(5, timeout=5)
    assert [(m.tag, bytes(m.data)) for m in messages] == [
        (1, b"a" * (3 * MiB)), (2, b"b" * (3 * MiB)), (3, b"c" * (9 * MiB)), (4, b"d" * (3 * MiB)),
        (5, b"e" * 100)]
    assert len(calls) == 2  # the failure, then the section the parts went through


def test_closing_waits_for_no_release_and_makes_no_section():
    """The last frame needs no half after it: close() neither waits for the receiver to let go
    of what it holds nor moves to a new section meanwhile."""
    with copydata.Receiver(copy=False) as receiver:
        sender = copydata.Sender(receiver, linger=60)
        sections = []
        real = sender._transport._open_section
        sender._transport._open_section = lambda least: (sections.append(least), real(least))[1]  # type: ignore[method-assign]
        sender.send(b"a" * (3 * MiB), tag=1)
        sender.flush()  # leased, in the first half, and held in the queue
        sender.send(b"b" * (3 * MiB), tag=2)
        sender.close()
        assert len(sections) == 1
        assert [(m.tag, bytes(m.data)) for m in receiver.recv_many(2, timeout=5)] == [
            (1, b"a" * (3 * MiB)), (2, b"b" * (3 * MiB))]
        assert receiver.stats.leased_messages == 2


def test_a_sender_offers_leases_again_after_a_pause_that_doubles():
    """A receiver that held a leased message past the grace gets copies for a while, then leases
    again once it lets go: one slow moment does not cost it reads in place for good."""
    assert (_transports._NO_LEASES_FIRST, _transports._NO_LEASES_MAX) == (1.0, 60.0)
    sent: list[tuple[int, bytes]] = []
    with copydata.Receiver(copy=False) as receiver, copydata.Sender(receiver, linger=0, timeout=10) as sender:

        def send(tag: int) -> copydata.Message:
            data = payload(3 * MiB, tag)
            sender.send(data, tag=tag)
            sent.append((tag, data))
            return receiver.recv(timeout=10)

        def leased_after(*tags: int) -> int:
            for tag in tags:
                message = send(tag)
                assert (message.tag, message.data) == sent[-1]
                del message
            return receiver.stats.leased_messages

        held = [send(0), send(1)]  # both halves leased, and held
        assert receiver.stats.leased_messages == 2
        held.append(send(2))  # no half is released in time: a new section, a copy
        assert receiver.stats.leased_messages == 2
        del held
        gc.collect()
        assert leased_after(3) == 2  # still within the pause
        time.sleep(1.3)
        assert leased_after(4, 5) == 4  # leases again
        held = [send(6), send(7)]
        assert receiver.stats.leased_messages == 6
        held.append(send(8))  # held on again: the pause is 2 s this time
        del held
        gc.collect()
        time.sleep(1.3)
        assert leased_after(9) == 6
        time.sleep(1.0)
        assert leased_after(10) == 7


def test_the_grace_for_a_release_grows_with_the_half():
    """Halves of 32 MiB: the Sender waits 50 ms and 4 ms per MiB (184 ms) for the receiver to
    let go of a leased frame. One let go after 100 ms keeps the Sender in its section, leasing."""
    with copydata.Receiver(copy=False) as receiver:
        sender = copydata.Sender(receiver, linger=60, max_batch_bytes=32 * MiB, timeout=10)
        sections = []
        real = sender._transport._open_section
        sender._transport._open_section = lambda least: (sections.append(least), real(least))[1]  # type: ignore[method-assign]
        sender.send(b"a" * (3 * MiB), tag=1)
        sender.flush()  # leased, in the first half
        held = [receiver.recv(timeout=5)]
        letting_go = threading.Timer(0.1, held.clear)
        letting_go.start()
        sender.send(b"b" * (3 * MiB), tag=2)
        sender.flush()  # the second half; then the first must be released before it is written again
        letting_go.join()
        sender.send(b"c" * (3 * MiB), tag=3)
        sender.close()
        later = [receiver.recv(timeout=5) for _ in range(2)]
        assert [(m.tag, bytes(m.data)) for m in later] == [(2, b"b" * (3 * MiB)), (3, b"c" * (3 * MiB))]
        assert len(sections) == 1
        assert receiver.stats.leased_messages == 3
