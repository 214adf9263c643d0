"""The benchmark's check on arrival (bench/payload.py): every benchmark figure relies on it to
count only messages that arrived whole, in order and unchanged."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from payload import CHUNK_SIZE, HEADER_SIZE, PERIOD, PayloadCheck, chunks, make_payload, stamp  # noqa: E402

SIZES = [HEADER_SIZE, HEADER_SIZE + 1, 64, 4096, PERIOD + HEADER_SIZE, 3 * CHUNK_SIZE + 12345]


def messages(size: int, count: int) -> list[bytes]:
    payload = memoryview(make_payload(size))
    result = []
    for sequence in range(count):
        stamp(payload, sequence)
        result.append(bytes(payload))
    return result


@pytest.mark.parametrize("size", SIZES)
def test_intact_messages_pass_in_any_chunking(size):
    check = PayloadCheck(size)
    pieces = random.Random(size)
    for message in messages(size, 3):
        offset = 0
        while offset < size:
            step = pieces.choice([1, 7, 4096, CHUNK_SIZE, PERIOD + 1, 3 * CHUNK_SIZE])
            check.feed(message[offset:offset + step])
            offset += step
    assert (check.messages, check.intact, check.bytes) == (3, 3, 3 * size)


def test_the_body_repeats_with_the_period_and_differs_within_it():
    body = make_payload(3 * PERIOD)[HEADER_SIZE:]
    assert body[:PERIOD] == body[PERIOD:2 * PERIOD]
    assert body[:CHUNK_SIZE] != body[CHUNK_SIZE:2 * CHUNK_SIZE]


@pytest.mark.parametrize("position", [HEADER_SIZE, 5000, PERIOD + HEADER_SIZE, -1])
def test_one_changed_byte_fails_its_message_only(position):
    size = 2 * PERIOD + 100
    first, second, third = messages(size, 3)
    damaged = bytearray(second)
    damaged[position] ^= 0x01
    check = PayloadCheck(size)
    for message in (first, damaged, third):
        for chunk in chunks(memoryview(message)):
            check.feed(chunk)
    assert (check.messages, check.intact) == (3, 2)


def test_chunks_swapped_repeated_or_lost_are_caught():
    size = 4 * CHUNK_SIZE
    (message,) = messages(size, 1)
    whole = list(chunks(memoryview(message)))
    variants = {
        "swapped": [whole[0], whole[2], whole[1], whole[3]],
        "repeated": [whole[0], whole[1], whole[1], whole[3]],
        "lost, then the next message's first chunk": [whole[0], whole[1], whole[3], whole[0]],
    }
    for name, sequence in variants.items():
        check = PayloadCheck(size)
        for chunk in sequence:
            check.feed(chunk)
        assert (check.messages, check.intact) == (1, 0), name


def test_a_message_out_of_sequence_fails():
    size = 64
    first, second = messages(size, 2)
    check = PayloadCheck(size)
    check.feed(second)
    check.feed(first)
    assert (check.messages, check.intact) == (2, 0)


def test_a_chunk_that_overruns_its_message_fails_it():
    size = 64
    first, second = messages(size, 2)
    check = PayloadCheck(size)
    check.feed(first + second[:10])
    assert (check.messages, check.intact) == (1, 0)


def test_payloads_smaller_than_the_header_are_refused():
    with pytest.raises(ValueError):
        make_payload(HEADER_SIZE - 1)
    with pytest.raises(ValueError):
        PayloadCheck(HEADER_SIZE - 1)


def test_the_native_receiver_counts_only_intact_messages(bench_program):
    """The C floor's receiver (bench/native/) gets the C sender's chunks through a relay that
    damages two of four messages: it must count four messages, two of them intact."""
    import copydata

    size, count = 2 * CHUNK_SIZE + 100, 4  # three chunks a message, the last one of 100 bytes
    receiver = subprocess.Popen([bench_program("wm_copydata_recv"), str(size), str(count), "60"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        receiver_hwnd = int(json.loads(receiver.stdout.readline())["ready"])
        with copydata.Receiver() as relay:
            sender = subprocess.run([bench_program("wm_copydata_send"), str(size), str(count)],
                                    input=f"{relay.hwnd}\n", capture_output=True, text=True, timeout=60)
            assert "error" not in json.loads(sender.stdout), sender.stdout
            arrived = [bytearray(relay.recv(timeout=10).data) for _ in range(3 * count)]
        assert [len(chunk) for chunk in arrived] == [CHUNK_SIZE, CHUNK_SIZE, 100] * count
        arrived[3 + 1][1000] ^= 0x40                        # message 1: one byte changed
        arrived[6 + 1], arrived[6 + 2] = arrived[6 + 2], arrived[6 + 1]  # message 2: its last chunks swapped
        for chunk in arrived:
            copydata.send(receiver_hwnd, chunk, timeout=10)
        receiver.stdin.write("sender finished\n")
        receiver.stdin.flush()
        report = json.loads(receiver.stdout.readline())
    finally:
        receiver.stdin.close()
        receiver.wait(timeout=30)
    assert (report["messages"], report["intact"], report["bytes"]) == (count, count - 2, count * size)
