"""Load: many processes into one receiver at once; nothing lost, nothing twice, each in order."""

from __future__ import annotations

import collections
import struct
import subprocess
import sys

import copydata

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
