"""Many messages at once: Sender.send_many (and asend_many) and Receiver.recv_batch."""

from __future__ import annotations

import array
import asyncio
import hashlib
import subprocess
import sys
import time

import pytest

import copydata
from conftest import receive_from_script
from peer import payload

# A mix a Sender handles in every way: small ones joined in frames, one alone in a frame (above
# max_batch_bytes), one in parts (above eight times max_batch_bytes), in shared memory or not.
MANY_SENDER = """
import random, sys, copydata
def payload(size, seed):  # as tests/peer.py makes them
    return random.Random(seed).randbytes(size)
small = [payload(16 + n % 200, n) for n in range({count})]
with copydata.Sender(int(sys.argv[1]), max_batch_bytes=256 << 10, timeout=60{options}) as sender:
    sender.send_many(small[:{count} // 2], tag=range({count} // 2))
    sender.send_many([payload(3 << 20, 7), payload(100 << 10, 8)], tag=[{count}, {count} + 1])
    sender.send_many(small[{count} // 2:], tag=range({count} // 2, {count}))
    sender.send_many([b"last"] * 3, tag=99)
print("done")
"""


@pytest.mark.parametrize("options", ["", ", shm_threshold=None, chunk_size=500_000"], ids=["shared-memory", "inline"])
def test_send_many_from_another_process_arrives_in_order_byte_for_byte(tmp_path, options):
    count = 20_000
    source = MANY_SENDER.format(count=count, options=options)
    with copydata.Receiver(max_queue_bytes=256 << 20, max_transfer_size=64 << 20) as receiver:
        received = receive_from_script(receiver, tmp_path / "many_sender.py", source, count + 5)
    expected = [(n, payload(16 + n % 200, n)) for n in range(count // 2)]
    expected += [(count, payload(3 << 20, 7)), (count + 1, payload(100 << 10, 8))]
    expected += [(n, payload(16 + n % 200, n)) for n in range(count // 2, count)]
    expected += [(99, b"last")] * 3
    assert len(received) == len(expected)
    for position, (message, (tag, data)) in enumerate(zip(received, expected)):
        assert (message.tag, message.data) == (tag, data), f"message {position} differs"


BURST_SENDER = """
import sys, copydata
with copydata.Sender(int(sys.argv[1]), max_batch_bytes=16 << 10, timeout=60) as sender:
    for first in range(0, {count}, 5000):
        sender.send_many([b"%08d" % n for n in range(first, first + 5000)], tag=range(first, first + 5000))
print("done")
"""


def test_send_many_into_a_full_queue_waits_and_loses_nothing(tmp_path):
    # A queue of 2,000 messages read slowly: frames of some 800 messages (16 KiB) are refused
    # as "queue full" many times, and offered again, until every one has arrived, in order.
    count = 40_000
    with copydata.Receiver(max_queue_messages=2000) as receiver:
        script = tmp_path / "burst_sender.py"
        script.write_text(BURST_SENDER.format(count=count))
        process = subprocess.Popen([sys.executable, str(script), str(receiver.hwnd)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        received: list = []
        while len(received) < count:
            received += receiver.recv_many(500, timeout=60)
            time.sleep(0.002)
        out, err = process.communicate(timeout=60)
        assert (process.returncode, out.strip()) == (0, "done"), err
        assert receiver.stats.refused_queue_full > 0
    assert [(m.tag, m.data) for m in received] == [(n, b"%08d" % n) for n in range(count)]


def test_send_many_checks_every_payload_before_it_sends_any():
    with copydata.Receiver() as receiver, copydata.Sender(receiver, linger=60) as sender:
        with pytest.raises(TypeError, match=r"payloads\[2\] is a int"):
            sender.send_many([b"a", bytearray(b"b"), 3, b"d"])
        with pytest.raises(TypeError, match=r"payloads\[1\] is a str"):
            sender.send_many([b"a", "b"])
        with pytest.raises(ValueError, match="2 tags for 3 payloads"):
            sender.send_many([b"a", b"b", b"c"], tag=[1, 2])
        with pytest.raises(ValueError, match=r"tag\[1\]"):
            sender.send_many([b"a", b"b"], tag=[1, -1])
        with pytest.raises(TypeError, match=r"tag\[0\]"):
            sender.send_many([b"a"], tag=["x"])
        assert sender.pending == 0
        sender.send_many([b"a", bytearray(b"b"), memoryview(b"cc"), array.array("H", [1, 2])], tag=[1, 2, 3, 4])
        assert sender.pending == 4
        sender.flush()
        messages = receiver.recv_many(10, timeout=5)
    assert [(m.tag, bytes(m.data)) for m in messages] == [
        (1, b"a"), (2, b"b"), (3, b"cc"), (4, array.array("H", [1, 2]).tobytes())]


def test_a_payload_too_large_for_a_frame_is_refused_by_index_and_nothing_is_sent(monkeypatch):
    from copydata import _sender

    monkeypatch.setattr(_sender, "_MAX_RECORD", 1000)  # 4 GiB would take a while to allocate
    with copydata.Receiver() as receiver, copydata.Sender(receiver, linger=60) as sender:
        with pytest.raises(copydata.MessageTooLarge, match=r"payloads\[1\] has 1001 bytes"):
            sender.send_many([b"x" * 10, b"y" * 1001, b"z"])
        assert sender.pending == 0
        with pytest.raises(copydata.RecvTimeout):
            receiver.recv(timeout=0.2)


def test_send_many_with_a_codec_and_with_linger_0_sends_before_it_returns():
    with copydata.Receiver() as receiver:
        with copydata.Sender(receiver, codec="json", linger=0) as sender:
            sender.send_many([{"n": n} for n in range(1000)], tag=7)
            assert sender.pending == 0
            messages = receiver.recv_many(1000, timeout=5)
    assert [(m.tag, m.data, m.codec) for m in messages] == [(7, {"n": n}, "json") for n in range(1000)]


def test_send_many_with_a_key_reaches_a_receiver_with_that_key():
    key = bytes(range(32))
    with copydata.Receiver(key=key) as receiver, copydata.Sender(receiver, key=key) as sender:
        sender.send_many([payload(64, n) for n in range(5000)], tag=range(5000))
        sender.flush()
        got: list = []
        while len(got) < 5000:
            got += receiver.recv_many(5000, timeout=5)
    assert [(m.tag, m.data) for m in got] == [(n, payload(64, n)) for n in range(5000)]
    assert receiver.stats.refused_messages == 0


def test_asend_many_adds_in_call_order_without_blocking_the_loop():
    async def main(receiver: copydata.Receiver) -> None:
        async with copydata.Sender(receiver, linger=0.01) as sender:
            await sender.asend(b"first", tag=0)
            await sender.asend_many([b"a", b"b", b"c"], tag=[1, 2, 3])
            with pytest.raises(TypeError, match=r"payloads\[0\]"):
                await sender.asend_many([None])
            await sender.asend(b"last", tag=4)

    with copydata.Receiver() as receiver:
        asyncio.run(main(receiver))
        messages = receiver.recv_many(10, timeout=5)
    assert [(m.tag, m.data) for m in messages] == [(0, b"first"), (1, b"a"), (2, b"b"), (3, b"c"), (4, b"last")]


STREAM_OF_SMALL = """
import random, sys, copydata
def payload(size, seed):  # as tests/peer.py makes them
    return random.Random(seed).randbytes(size)
with copydata.Sender(int(sys.argv[1]), timeout=60) as sender:
    sender.send_many([payload(8 + n % 100, n) for n in range({count})], tag=range({count}))
    sender.send(payload(2 << 20, 5), tag={count})  # read in place under a lease: copied into the batch
print("done")
"""


@pytest.mark.parametrize("copy", [True, False], ids=["bytes", "views"])
def test_recv_batch_hands_over_columns_and_one_block(tmp_path, copy):
    count = 30_000
    script = tmp_path / "small_sender.py"
    script.write_text(STREAM_OF_SMALL.format(count=count))
    with copydata.Receiver(copy=copy) as receiver:
        process = subprocess.Popen([sys.executable, str(script), str(receiver.hwnd)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        batches = []
        taken = 0
        while taken < count + 1:
            batch = receiver.recv_batch(timeout=60)
            batches.append(batch)
            taken += len(batch)
        out, err = process.communicate(timeout=60)
        assert (process.returncode, out.strip()) == (0, "done"), err
        assert receiver.stats.leased_messages == 1
    tags = [tag for batch in batches for tag in batch.tags]
    assert tags == list(range(count + 1))
    payloads = [bytes(data) for batch in batches for data in batch]
    assert payloads == [payload(8 + n % 100, n) for n in range(count)] + [payload(2 << 20, 5)]
    first = batches[0]
    assert first.tags.format == first.sizes.format == "Q" and first.tags.readonly
    assert all(type(data) is (bytes if copy else memoryview) for data in first)
    assert bytes(first.data) == b"".join(bytes(data) for data in first)
    assert list(first.offsets) == [sum(first.sizes[:n]) for n in range(len(first))]
    assert list(first.items())[0] == (0, first[0])
    assert first[-1] == first[len(first) - 1]
    with pytest.raises(IndexError):
        first[len(first)]
    assert hashlib.sha256(bytes(batches[-1][-1])).digest() == hashlib.sha256(payload(2 << 20, 5)).digest()


def test_recv_batch_waits_and_refuses_as_recv_does():
    with copydata.Receiver() as receiver:
        with pytest.raises(copydata.RecvTimeout):
            receiver.recv_batch(timeout=0.2)
        copydata.send(receiver, b"one", tag=1)
        batch = receiver.recv_batch(10, timeout=5)
        assert (len(batch), list(batch.tags), list(batch), list(batch.codec_ids)) == (1, [1], [b"one"], [-1])
    with pytest.raises(copydata.ReceiverClosed):
        receiver.recv_batch(timeout=0)
    with copydata.Receiver(on_message=lambda message: None) as receiver:
        with pytest.raises(RuntimeError, match="on_message"):
            receiver.recv_batch()
