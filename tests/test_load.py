"""Load: many processes into one receiver at once; nothing lost, nothing twice, each in order."""

from __future__ import annotations

import collections
import struct
import subprocess
import sys

import copydata
from conftest import private_bytes

SENDERS = 8
MESSAGES = 20_000


def test_eight_sender_processes_20000_messages_each(tmp_path):
    script = tmp_path / "load_sender.py"
    script.write_text(
        "import struct, sys, copydata\n"
        "hwnd, me = int(sys.argv[1]), int(sys.argv[2])\n"
        "with copydata.Sender(hwnd, timeout=60) as sender:\n"
        f"    for sequence in range({MESSAGES}):\n"
        "        sender.send(struct.pack('<II', me, sequence) + bytes(sequence % 50), tag=me)\n")
    with copydata.Receiver(max_queue_messages=20_000) as receiver:
        processes = [subprocess.Popen([sys.executable, str(script), str(receiver.hwnd), str(me)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for me in range(SENDERS)]
        sequences: dict[int, list[int]] = collections.defaultdict(list)
        total = 0
        while total < SENDERS * MESSAGES:
            for message in receiver.recv_many(10_000, timeout=120):
                me, sequence = struct.unpack_from("<II", message.data)
                assert message.tag == me and len(message.data) == 8 + sequence % 50
                sequences[me].append(sequence)
                total += 1
        for process in processes:
            _, errors = process.communicate(timeout=60)
            assert process.returncode == 0, errors
        assert {me: sequences[me] for me in range(SENDERS)} == {me: list(range(MESSAGES)) for me in range(SENDERS)}
        stats = receiver.stats
        assert stats.received_messages == SENDERS * MESSAGES
        assert (stats.queued_messages, stats.dropped_messages) == (0, 0)


def test_private_bytes_sees_memory_come():
    before = private_bytes()
    block = bytearray(32 << 20)
    assert private_bytes() - before >= 30 << 20
    del block


def test_10000_receivers_and_a_million_messages_leave_handles_threads_and_memory_flat():
    import gc
    import threading

    from conftest import os_thread_count, process_handle_count

    def cycles(count):
        for index in range(count):
            receiver = copydata.Receiver(on_message=(lambda m: None) if index % 2 else None)
            copydata.send(receiver, b"x", tag=index)
            receiver.close()

    def a_million_messages():
        with copydata.Receiver() as receiver, copydata.Sender(receiver, timeout=60) as sender:
            received = 0
            for block in range(100):
                for n in range(10_000):
                    sender.send(b"m" * 32, tag=n)
                sender.flush()
                while received < (block + 1) * 10_000:
                    received += len(receiver.recv_many(10_000, timeout=30))
            assert received == 1_000_000

    cycles(100)
    a_million_messages()
    gc.collect()
    before = (process_handle_count(), os_thread_count(), threading.active_count(), private_bytes())
    cycles(10_000)
    a_million_messages()
    gc.collect()
    after = (process_handle_count(), os_thread_count(), threading.active_count(), private_bytes())
    print(f"handles, OS threads, Python threads, private bytes: before {before}, after {after}")
    assert after[1:3] == before[1:3], (before, after)
    assert after[0] - before[0] < 10, (before, after)          # handles: none per receiver
    assert after[3] - before[3] < 16 << 20, (before, after)   # private memory: flat, give or take the allocator


def test_buffers_handed_over_with_copy_false_are_freed_with_their_views():
    chunk = bytes(1 << 20)
    with copydata.Receiver(copy=False) as receiver:
        before = private_bytes()
        for round_number in range(300):
            copydata.send(receiver, chunk, tag=round_number)
            view = receiver.recv(timeout=10).data
            assert len(view) == len(chunk) and isinstance(view, memoryview)
            del view
        grown = private_bytes() - before
    assert grown < 64 << 20, f"300 MiB passed through, and {grown} bytes stayed"
