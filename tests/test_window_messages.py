"""Every window message another process can send a receiver, not only WM_COPYDATA.

The receiver runs in a peer process, so that a crash shows as a peer that ended; a foreign
process (tests/intruder.py) sends it what Windows marshals across processes, and an honest
sender checks afterwards (or meanwhile) that it still takes every message, intact and in order,
and that it closes on time.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peer import payload, sequence

INTRUDER = Path(__file__).with_name("intruder.py")
CLOSE_WITHIN = 10.0


def intrude(hwnd: int, *attacks: str) -> dict:
    done = subprocess.run([sys.executable, str(INTRUDER), str(hwnd), *attacks], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def expect(receiver, specs: list[str], within: float = 60.0) -> None:
    """The receiver (a serving peer) reports exactly these messages, in order, byte for byte,
    all of them within ``within`` seconds."""
    deadline = time.monotonic() + within
    for spec in specs:
        tag, size, seed = map(int, spec.split(":"))
        report = receiver.read(timeout=max(0.1, deadline - time.monotonic()))
        assert (report["tag"], report["size"], report["sha256"]) == (
            tag, size, hashlib.sha256(payload(size, seed)).hexdigest()), f"expected message {spec}"


def close_in_time(receiver) -> dict:
    started = time.monotonic()
    rest = receiver.finish(timeout=CLOSE_WITHIN)
    assert time.monotonic() - started < CLOSE_WITHIN
    return rest[-1]["stats"]


@pytest.mark.parametrize("attack", [
    "nccreate-null", "nccreate-wild", "create", "userdata-wild", "quit-posted", "destroy", "close",
    "settext", "timer-wild", "copydata-null",
])
def test_a_foreign_window_message_neither_crashes_nor_ends_nor_hijacks_a_receiver(start_peer, attack):
    receiver = start_peer("serve")
    hwnd = receiver.wait_ready()
    intrude(hwnd, attack)
    sender = start_peer("send", str(hwnd), "5:100:5", "6:70000:6")
    assert [sender.read(), sender.read()] == [{"result": 1}, {"result": 1}]
    expect(receiver, ["5:100:5", "6:70000:6"])
    stats = close_in_time(receiver)
    assert stats["received_messages"] == 2


STREAMED = 3000


def test_a_sweep_of_every_system_message_while_an_honest_sender_streams_loses_nothing(start_peer):
    receiver = start_peer("serve")
    hwnd = receiver.wait_ready()
    specs = [":".join(map(str, spec)) for spec in sequence(STREAMED)]
    honest = start_peer("stream", str(hwnd), "--sequence", str(STREAMED), "--shm-threshold", "4096",
                        "--max-batch-bytes", "8192")
    report = intrude(hwnd, "sweep", "nccreate-null", "nccreate-wild", "userdata-wild", "quit-posted", "destroy",
                     "close", "timer-wild", "copydata-null", "sweep")
    expect(receiver, specs)
    assert honest.read(timeout=60) == {"sent": STREAMED}
    honest.finish()
    stats = close_in_time(receiver)
    assert stats["received_messages"] == STREAMED
    assert report["sent"] > 8 * 1024
