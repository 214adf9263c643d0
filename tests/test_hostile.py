"""100,000 malformed frames from one process while another sends valid messages."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import copydata
from conftest import private_bytes

ATTACKS = 100_000
VALID = 20_000


def test_malformed_frames_never_pass_and_valid_messages_all_arrive_in_order(tmp_path):
    valid_sender = tmp_path / "valid_sender.py"
    valid_sender.write_text(
        "import struct, sys, zlib, copydata\n"
        "with copydata.Sender(int(sys.argv[1]), linger=0.001, timeout=60) as sender:\n"
        f"    for n in range({VALID}):\n"
        "        body = struct.pack('<I', n) * (1 + n % 16)\n"
        "        sender.send(struct.pack('<I', zlib.crc32(body)) + body, tag=n)\n")
    attacker = Path(__file__).with_name("attacker.py")
    with copydata.Receiver(part_timeout=1.0) as receiver:
        baseline = private_bytes()
        started = time.monotonic()
        attack = subprocess.Popen([sys.executable, str(attacker), str(receiver.hwnd), str(ATTACKS), "7"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        valid = subprocess.Popen([sys.executable, str(valid_sender), str(receiver.hwnd)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        delivered = []
        while len(delivered) < VALID:
            delivered.extend(receiver.recv_many(5000, timeout=120))
        out, errors = attack.communicate(timeout=300)
        assert attack.returncode == 0, errors
        report = json.loads(out)
        _, errors = valid.communicate(timeout=60)
        assert valid.returncode == 0, errors

        # Exactly the valid messages, intact and in order; nothing from the attacker.
        for n, message in enumerate(delivered):
            (crc,) = struct.unpack_from("<I", message.data)
            assert message.tag == n and zlib.crc32(message.data[4:]) == crc, f"message {n} is not a valid one"
        time.sleep(2.5)  # the abandoned first parts expire (part_timeout 1 s, swept every second)
        try:
            extra = receiver.recv_many(100, timeout=0)
        except copydata.RecvTimeout:
            extra = []
        assert extra == []
        stats = receiver.stats
        assert stats.received_messages == VALID
        assert stats.refused_messages == ATTACKS - report["accepted"]
        assert (stats.dropped_incomplete, stats.assembling_messages, stats.assembling_bytes) == (
            report["accepted"], 0, 0)
        assert stats.queued_messages == 0
        del delivered
        grown = private_bytes() - baseline
        assert grown < 8 << 20, f"{grown} bytes more than before the attack"
        print(f"{ATTACKS} attacks ({report['accepted']} abandoned first parts) and {VALID} valid messages "
              f"in {time.monotonic() - started:.1f} s")


FORGED = 20_000


def test_forged_seals_never_pass_a_receiver_with_a_key_while_sealed_messages_all_arrive(tmp_path):
    key = bytes(range(100, 132))
    valid_sender = tmp_path / "sealed_sender.py"
    valid_sender.write_text(
        "import struct, sys, zlib, copydata\n"
        f"with copydata.Sender(int(sys.argv[1]), linger=0.001, timeout=60, key={key!r}) as sender:\n"
        f"    for n in range({VALID // 4}):\n"
        "        body = struct.pack('<I', n) * (1 + n % 16)\n"
        "        sender.send(struct.pack('<I', zlib.crc32(body)) + body, tag=n)\n")
    attacker = Path(__file__).with_name("attacker.py")
    with copydata.Receiver(key=key) as receiver:
        attack = subprocess.Popen([sys.executable, str(attacker), str(receiver.hwnd), str(FORGED), "11",
                                   "--forge-seals"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        valid = subprocess.Popen([sys.executable, str(valid_sender), str(receiver.hwnd)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        delivered = []
        while len(delivered) < VALID // 4:
            delivered.extend(receiver.recv_many(5000, timeout=120))
        out, errors = attack.communicate(timeout=300)
        assert attack.returncode == 0, errors
        _, errors = valid.communicate(timeout=60)
        assert valid.returncode == 0, errors
        for n, message in enumerate(delivered):
            (crc,) = struct.unpack_from("<I", message.data)
            assert message.tag == n and zlib.crc32(message.data[4:]) == crc, f"message {n} is not a valid one"
        with pytest.raises(copydata.RecvTimeout):
            receiver.recv(timeout=0.5)
        stats = receiver.stats
        assert stats.refused_unauthenticated == stats.refused_messages == FORGED
        assert stats.received_messages == VALID // 4
