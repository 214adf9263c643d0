"""Messages larger than one WM_COPYDATA: split by Sender, put together in C, hostile parts refused."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

import copydata
from copydata._core import lib
from frames import part, wait_for
from peer import payload


def test_large_messages_from_another_process_arrive_whole_in_order(tmp_path):
    sizes = [16 << 20, 100, 3 * (1 << 20) + 7, 1]
    script = tmp_path / "large_sender.py"
    script.write_text(
        "import sys, copydata\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from peer import payload\n"
        f"sizes = {sizes!r}\n"
        "with copydata.Sender(int(sys.argv[1]), timeout=30) as sender:\n"
        "    for tag, size in enumerate(sizes):\n"
        "        sender.send(payload(size, tag), tag=tag)\n")
    with copydata.Receiver(max_transfer_size=32 << 20) as receiver:
        tests_dir = str(__import__("pathlib").Path(__file__).parent)
        result = subprocess.run([sys.executable, str(script), str(receiver.hwnd), tests_dir],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        received = [receiver.recv(timeout=30) for _ in sizes]
        assert [(m.tag, len(m.data)) for m in received] == list(enumerate(sizes))
        assert [hashlib.sha256(m.data).digest() for m in received] == [
            hashlib.sha256(payload(size, tag)).digest() for tag, size in enumerate(sizes)]
        stats = receiver.stats
        assert (stats.assembling_messages, stats.assembling_bytes, stats.dropped_incomplete) == (0, 0, 0)


def test_split_messages_keep_their_codec():
    with copydata.Receiver() as receiver, copydata.Sender(receiver, codec="text", chunk_size=1000) as sender:
        text = "ünïcode " * 1000
        sender.send(text, tag=4)
        sender.flush()
        assert receiver.recv(timeout=5) == copydata.Message(4, text, 0, "text", None)


def test_a_sender_that_dies_mid_transfer_leaves_nothing_behind(tmp_path):
    script = tmp_path / "half_sender.py"
    script.write_text(
        "import sys, copydata\n"
        "from copydata import _envelope\n"
        "import struct\n"
        "frame = struct.pack('<4sBBBBQQQ', _envelope.MAGIC, 1, 0, 5, 0, 77, 3000000, 0) + bytes(1000000)\n"
        "print(copydata.send(int(sys.argv[1]), frame), flush=True)\n")
    with copydata.Receiver(part_timeout=0.5) as receiver:
        result = subprocess.run([sys.executable, str(script), str(receiver.hwnd)],
                                capture_output=True, text=True, timeout=60)
        assert result.stdout.strip() == "1", result.stderr
        # Memory is held as parts arrive (1,000,000 bytes came: 1 MiB held), not as they claim.
        assert (receiver.stats.assembling_messages, receiver.stats.assembling_bytes) == (1, 1 << 20)
        wait_for(lambda: receiver.stats.dropped_incomplete == 1)  # swept once the part is late
        stats = receiver.stats
        assert (stats.assembling_messages, stats.assembling_bytes) == (0, 0)
        assert (stats.dropped_messages, stats.dropped_bytes) == (1, 1000000)
        with pytest.raises(copydata.RecvTimeout):
            receiver.recv(timeout=0.1)


def test_close_drops_incomplete_transfers():
    receiver = copydata.Receiver()
    copydata.send(receiver, part(9, 100, 0, bytes(40)))
    receiver.close()
    assert (receiver.stats.dropped_incomplete, receiver.stats.assembling_bytes) == (1, 0)


@pytest.mark.parametrize("frames, refused", [
    ([part(1, 100, 0, bytes(40)), part(1, 100, 50, bytes(50))], "refused_malformed"),   # a gap
    ([part(1, 100, 0, bytes(40)), part(1, 100, 20, bytes(20))], "refused_malformed"),   # an overlap
    ([part(1, 100, 0, bytes(40)), part(1, 200, 40, bytes(60))], "refused_malformed"),   # total changes
    ([part(1, 100, 0, bytes(40)), part(1, 100, 40, bytes(60), codec=1)], "refused_malformed"),
    ([part(1, 100, 40, bytes(60))], "refused_malformed"),                               # no first part
    ([part(0, 100, 0, bytes(40))], "refused_malformed"),                                # no transfer id
    ([part(1, 100, 0, b"")], "refused_malformed"),                                      # empty part
    ([part(1, 100, 90, bytes(20))], "refused_malformed"),                               # past the total
    ([part(1, (1 << 64) - 1, 0, bytes(10))], "refused_too_large"),                      # absurd total
    ([part(1, (64 << 20) + 1, 0, bytes(10))], "refused_too_large"),                     # above the limit
])
def test_hostile_parts_are_refused_and_no_partial_message_is_delivered(frames, refused):
    with copydata.Receiver() as receiver:
        for frame in frames[:-1]:
            assert copydata.send(receiver, frame) == 1
        if refused == "refused_too_large":  # refused for its size alone: a Sender gives up at once
            assert copydata.send(receiver, frames[-1]) == lib.CD_ANSWER_NEVER_FITS
        else:
            with pytest.raises(copydata.Rejected):
                copydata.send(receiver, frames[-1])
        assert getattr(receiver.stats, refused) == 1
        assert receiver.stats.assembling_bytes == 0  # a broken transfer is dropped at once
        copydata.send(receiver, b"after", tag=3)
        assert receiver.recv(timeout=5).data == b"after"
        with pytest.raises(copydata.RecvTimeout):
            receiver.recv(timeout=0.1)


def test_parts_of_two_transfers_interleave_and_a_restart_replaces_the_first_attempt():
    with copydata.Receiver() as receiver:
        copydata.send(receiver, part(1, 6, 0, b"abc"), tag=1)
        copydata.send(receiver, part(2, 4, 0, b"wx"), tag=2)
        copydata.send(receiver, part(1, 6, 0, b"ABC"), tag=1)  # begun again: the first try is dropped
        copydata.send(receiver, part(2, 4, 2, b"yz"), tag=2)
        copydata.send(receiver, part(1, 6, 3, b"DEF"), tag=1)
        assert [(m.tag, m.data) for m in receiver.recv_many(2, timeout=5)] == [(2, b"wxyz"), (1, b"ABCDEF")]
        assert receiver.stats.dropped_incomplete == 1


def test_the_last_part_waits_for_room_and_is_offered_again():
    with copydata.Receiver(max_queue_messages=1) as receiver, copydata.Sender(receiver, chunk_size=100, timeout=10) as sender:
        copydata.send(receiver, b"fills the queue")
        done = __import__("threading").Thread(target=lambda: (sender.send(bytes(250), tag=5), sender.flush()))
        done.start()
        time.sleep(0.3)
        assert receiver.stats.refused_queue_full >= 1  # the last part was refused, not lost
        assert receiver.recv(timeout=5).data == b"fills the queue"
        done.join(10)
        message = receiver.recv(timeout=5)
        assert (message.tag, message.data) == (5, bytes(250))


def test_a_raw_receiver_sees_part_frames_as_they_are():
    with copydata.Receiver(raw=True) as receiver:
        frame = part(3, 10, 0, bytes(10))
        copydata.send(receiver, frame)
        assert receiver.recv(timeout=5).data == frame


DRIPPER = """
import sys, time, copydata
sys.path.insert(0, sys.argv[3])
from frames import part
target, transfers = int(sys.argv[1]), int(sys.argv[2])
total = (64 << 20) if transfers == 1 else 1 << 20
for transfer in range(1, transfers + 1):  # each claims its total, and brings one byte
    copydata.send(target, part(transfer, total, 0, b"x"))
print("holding", flush=True)
for offset in range(1, 5):  # a byte more to each, every 3 s: each lives on, well within part_timeout
    time.sleep(3)
    for transfer in range(1, transfers + 1):
        copydata.send(target, part(transfer, total, offset, b"x"), check=False)
"""


@pytest.mark.parametrize("transfers", [1, 64], ids=["one-claiming-64-MiB", "every-slot"])
def test_split_messages_that_barely_move_do_not_starve_the_others(start_peer, tmp_path, transfers):
    """A first part that claims 64 MiB (or first parts in every one of the 64 slots), kept alive
    with a byte every few seconds: the receiver holds memory only for what arrived, and a
    transfer that waits a second for its next part gives way to one whose parts keep coming."""
    script = tmp_path / "dripper.py"
    script.write_text(DRIPPER)
    with copydata.Receiver() as receiver:
        dripper = subprocess.Popen([sys.executable, str(script), str(receiver.hwnd), str(transfers),
                                    str(Path(__file__).parent)], stdout=subprocess.PIPE, text=True)
        try:
            assert dripper.stdout.readline().strip() == "holding"
            assert receiver.stats.assembling_messages == transfers
            started = time.monotonic()
            honest = start_peer("stream", str(receiver.hwnd), "9:1048576:9", "--no-shm", "--chunk-size", "262144")
            message = receiver.recv(timeout=30)
            assert (message.tag, message.data) == (9, payload(1 << 20, 9))
            assert time.monotonic() - started < 5, "the honest split message waited on the dripping ones"
            assert honest.read(timeout=30) == {"sent": 1}
        finally:
            dripper.kill()
            dripper.wait(timeout=30)
