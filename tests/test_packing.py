"""Small messages taken together (queue and callback modes): C packs their payloads into one
block, and Python hands them over as slices of it (copy=False) or as bytes (copy=True), in
order, each with its own tag. Larger messages still come in buffers of their own."""

from __future__ import annotations

import gc
import threading

import pytest

import copydata
from copydata import _native
from copydata._core import lib
from peer import payload

PACK_LIMIT = lib.CD_PACK_MESSAGE_LIMIT
BLOCK_LIMIT = lib.CD_PACK_BLOCK_LIMIT
MiB = 1 << 20
# Around each bound, and past the block limit more than once: 150 messages of 4000 bytes.
SIZES = [0, 1, 64, PACK_LIMIT - 1, PACK_LIMIT, PACK_LIMIT + 1, 70_000, MiB, 2 * MiB + 5] + [4000] * 150


def stream_all(start_peer, receiver: copydata.Receiver, sizes: list[int]) -> list[tuple[int, int, int]]:
    """Streams one message per size with a Sender in another process, and waits until it has
    sent them all, so that they are all queued."""
    specs = [(tag, size, tag + 7) for tag, size in enumerate(sizes)]
    peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs))
    assert peer.read(timeout=60) == {"sent": len(specs)}
    return specs


def take_all(receiver: copydata.Receiver, count: int) -> list[copydata.Message]:
    messages: list[copydata.Message] = []
    while len(messages) < count:
        messages += receiver.recv_many(100_000, timeout=30)
    assert len(messages) == count
    return messages


def test_small_messages_are_slices_of_shared_blocks_and_arrive_intact(start_peer):
    with copydata.Receiver(copy=False) as receiver:
        specs = stream_all(start_peer, receiver, SIZES)
        messages = take_all(receiver, len(specs))
    for message, (tag, size, seed) in zip(messages, specs):
        assert message.tag == tag
        assert isinstance(message.data, memoryview) and message.data.readonly
        assert message.data == payload(size, seed), f"message {tag} ({size} bytes) arrived changed"
    # The small ones share blocks, no block holds more than the limit, and the larger ones
    # (and any past a block's limit) have buffers of their own.
    blocks: dict[int, list[int]] = {}
    for message in messages:
        blocks.setdefault(id(message.data.obj), []).append(len(message.data))
    shared = [sizes for sizes in blocks.values() if len(sizes) > 1]
    assert shared, "no two small messages were packed together"
    assert all(size <= PACK_LIMIT and sum(sizes) <= BLOCK_LIMIT for sizes in shared for size in sizes)
    assert sum(len(sizes) for sizes in shared) >= 100
    alone = [sizes[0] for sizes in blocks.values() if len(sizes) == 1]
    assert {PACK_LIMIT + 1, 70_000, MiB, 2 * MiB + 5} <= set(alone)


def test_a_kept_small_view_stays_intact_after_its_block_mates_go(start_peer):
    with copydata.Receiver(copy=False) as receiver:
        specs = stream_all(start_peer, receiver, [64] * 500)
        messages = take_all(receiver, len(specs))
        kept = messages[250]
        del messages
        gc.collect()
        # More messages come and go meanwhile: new blocks, freed and allocated again.
        more = stream_all(start_peer, receiver, [64] * 500)
        for message in take_all(receiver, len(more)):
            assert message.data == payload(64, message.tag + 7)
        del message
        gc.collect()
        assert kept.tag == 250
        assert kept.data == payload(64, 257)


def test_a_copying_receiver_gets_bytes_in_order(start_peer):
    with copydata.Receiver() as receiver:
        specs = stream_all(start_peer, receiver, SIZES)
        messages = take_all(receiver, len(specs))
    assert [(m.tag, m.data) for m in messages] == [(tag, payload(size, seed)) for tag, size, seed in specs]
    assert all(type(m.data) is bytes for m in messages)


@pytest.mark.parametrize("copy", [False, True])
def test_on_message_gets_packed_messages_in_order(start_peer, copy):
    arrived: list[tuple[int, bytes]] = []
    done = threading.Event()

    def on_message(message: copydata.Message) -> None:
        arrived.append((message.tag, bytes(message.data)))
        if len(arrived) == len(SIZES):
            done.set()

    with copydata.Receiver(on_message=on_message, copy=copy) as receiver:
        specs = [(tag, size, tag + 7) for tag, size in enumerate(SIZES)]
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs))
        assert peer.read(timeout=60) == {"sent": len(specs)}
        assert done.wait(30)
    assert arrived == [(tag, payload(size, seed)) for tag, size, seed in specs]


class _NoMemoryToPack:
    """copydata's C library, but packing fails as when the block cannot be allocated."""

    def __init__(self) -> None:
        self.calls = 0

    def cd_messages_pack(self, *args: object) -> int:
        self.calls += 1
        return lib.CD_NO_MEMORY

    def __getattr__(self, name: str) -> object:
        return getattr(lib, name)


@pytest.mark.parametrize("copy", [False, True])
def test_when_no_block_can_be_allocated_messages_come_one_by_one(start_peer, monkeypatch, copy):
    failing = _NoMemoryToPack()
    monkeypatch.setattr(_native, "lib", failing)
    with copydata.Receiver(copy=copy) as receiver:
        specs = stream_all(start_peer, receiver, SIZES)
        messages = take_all(receiver, len(specs))
    assert failing.calls >= 1
    assert [(m.tag, bytes(m.data)) for m in messages] == [(tag, payload(size, seed)) for tag, size, seed in specs]
    if not copy:
        assert len({id(m.data.obj) for m in messages}) == len(messages)
