"""Payloads arrive byte-exact, with their tags, in order: across processes both ways, and in one."""

from __future__ import annotations

import hashlib
import struct
import threading

import pytest


import copydata
from copydata import _envelope
from peer import payload

# (tag, size, seed): 0 B, 1 B, 64 B, 64 KiB and 1 MiB, with tags that 32-bit peers see whole
SPECS = [(0, 0, 1), (1, 1, 2), (0xFFFFFFFF, 64, 3), (7, 65536, 4), (123456, 1 << 20, 5)]


def spec_args() -> list[str]:
    return [f"{tag}:{size}:{seed}" for tag, size, seed in SPECS]


@pytest.mark.smoke
def test_peer_receives_every_size_byte_exact(start_peer, unique_name):
    peer = start_peer("serve", unique_name)
    hwnd = peer.wait_ready()
    for tag, size, seed in SPECS:
        assert copydata.send(unique_name, payload(size, seed), tag=tag) == 1
    for tag, size, seed in SPECS:
        assert peer.read() == {"tag": tag, "size": size, "sender": 0,
                               "sha256": hashlib.sha256(payload(size, seed)).hexdigest()}
    stats = peer.finish()[-1]["stats"]
    assert stats["received_messages"] == len(SPECS)
    assert stats["received_bytes"] == sum(size for _, size, _ in SPECS)
    assert stats["refused_messages"] == 0
    assert copydata.find(unique_name) is None, f"{hwnd:#x} still published after the peer closed"


@pytest.mark.smoke
def test_peer_sends_every_size_byte_exact(start_peer):
    with copydata.Receiver() as receiver:
        peer = start_peer("send", str(receiver.hwnd), *spec_args())
        for tag, size, seed in SPECS:
            assert peer.read() == {"result": 1}
            message = receiver.recv(timeout=30)
            assert (message.tag, message.sender) == (tag, 0)
            assert message.data == payload(size, seed)
        peer.finish()
        assert receiver.stats.received_messages == len(SPECS)


def test_one_process_every_size_byte_exact_with_callback():
    received: list[copydata.Message] = []
    all_arrived = threading.Event()

    def on_message(message: copydata.Message) -> None:
        received.append(message)
        if len(received) == len(SPECS):
            all_arrived.set()

    with copydata.Receiver(on_message=on_message) as receiver:
        for tag, size, seed in SPECS:
            assert copydata.send(receiver, payload(size, seed), tag=tag, sender=receiver) == 1
        assert all_arrived.wait(30)
    assert [(m.tag, m.data, m.sender) for m in received] == [
        (tag, payload(size, seed), receiver.hwnd) for tag, size, seed in SPECS]


def test_bytearray_and_memoryview_payloads_arrive_equal():
    with copydata.Receiver() as receiver:
        data = payload(1000, 9)
        copydata.send(receiver, bytearray(data), tag=1)
        copydata.send(receiver, memoryview(data)[100:900], tag=2)
        assert receiver.recv(timeout=5).data == data
        assert receiver.recv(timeout=5).data == data[100:900]


def test_burst_of_10000_from_another_process_arrives_exactly_once_in_order(start_peer):
    count = 10_000
    with copydata.Receiver() as receiver:
        peer = start_peer("burst", str(receiver.hwnd), str(count))
        sequences = []
        while len(sequences) < count:
            for message in receiver.recv_many(1000, timeout=60):
                (sequence,) = struct.unpack_from("<Q", message.data)
                assert message.data == struct.pack("<Q", sequence) * 8
                assert message.tag == sequence
                sequences.append(sequence)
        assert peer.read()["sent"] == count
        peer.finish()
        assert sequences == list(range(count))
        with pytest.raises(copydata.RecvTimeout):
            receiver.recv(timeout=0.2)
        assert receiver.stats.received_messages == count
        assert receiver.stats.refused_messages == 0


def test_copy_false_hands_over_the_receivers_buffer_as_a_read_only_view(start_peer):
    with copydata.Receiver(copy=False, codec="bytes") as receiver:
        peer = start_peer("stream", str(receiver.hwnd), "1:100:1", "2:3000000:2", "3:0:3")
        assert peer.read(timeout=60) == {"sent": 3}
        copydata.send(receiver, _envelope.wrap(b'{"a": 1}', 3), tag=4)  # json: decoded as usual
        copydata.send(receiver, b"plain", tag=5)
        messages = receiver.recv_many(10, timeout=10)
        while len(messages) < 5:
            messages += receiver.recv_many(10, timeout=10)
    views = [m.data for m in messages[:3]] + [messages[4].data]
    assert all(isinstance(view, memoryview) and view.readonly for view in views)
    # Still valid after close: each view owns its buffer.
    assert [bytes(view) for view in views] == [payload(100, 1), payload(3_000_000, 2), b"", b"plain"]
    assert messages[3].data == {"a": 1}
    with pytest.raises(TypeError):
        views[0][0] = 1  # type: ignore[index]
    middle = views[1][1000:2000]
    del views, messages
    assert bytes(middle) == payload(3_000_000, 2)[1000:2000]  # a slice keeps the buffer alive
