"""A hostile sender in its own shared memory: a process of the receiver's user proves its right
to its own section, and then rewrites that section while the receiver reads it (headers, record
lengths, part headers, release words, the ring block), offering and announcing frames the while
(tests/section_rewriter.py). Beside it an honest Sender streams to the same receiver."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import copydata
from peer import payload
from section_rewriter import HOSTILE, filler, foreign_bytes

MiB = 1 << 20
# Inline batch frames (below 64 KiB), section frames copied out, and records of 1 MiB and more
# kept in place under a lease, announced in the Sender's ring block once one was leased.
SIZES = [64, 1000, 20_000, 100_000, 300_000, MiB, 5_000, MiB + 7, 64 << 10, 700_000]
HONEST = 300
# The rewriter goes on at least this long, should the honest stream end sooner.
ATTACK_SECONDS = 8.0


def test_a_sender_rewriting_its_own_section_gets_refusals_and_an_honest_sender_loses_nothing(start_peer):
    seed = int(os.environ.get("COPYDATA_HOSTILE_SEED") or random.randrange(1 << 32))
    print(f"seed {seed} (COPYDATA_HOSTILE_SEED={seed} repeats the rewriter's choices; its threads' "
          f"interleaving, and the receiver's, differ from run to run)")
    section = filler()
    specs = [(n, SIZES[n % len(SIZES)] + n % 3, n) for n in range(HONEST)]
    refusals: list[copydata.Refusal] = []
    hostile_messages = hostile_bytes = 0

    def check(message: copydata.Message, honest_seen: int) -> int:
        """The next honest message, or one of the hostile's: from its section, or a failure."""
        nonlocal hostile_messages, hostile_bytes
        if message.sender == HOSTILE:
            wrong = foreign_bytes(message.data, section)
            assert wrong is None, f"seed {seed}: the receiver delivered from the hostile sender {wrong}"
            hostile_messages += 1
            hostile_bytes += len(message.data)
            return honest_seen
        assert message.sender == 0 and honest_seen < HONEST, (
            f"seed {seed}: a message from {message.sender:#x} (tag {message.tag}) after {honest_seen} honest ones")
        tag, size, data_seed = specs[honest_seen]
        assert (message.tag, len(message.data)) == (tag, size), f"seed {seed}: honest message {tag} out of order"
        assert message.data == payload(size, data_seed), f"seed {seed}: honest message {tag} arrived changed"
        return honest_seen + 1

    rewriter_script = Path(__file__).with_name("section_rewriter.py")
    receiver = copydata.Receiver(on_error=refusals.append)
    try:
        started = time.monotonic()
        hostile = subprocess.Popen([sys.executable, str(rewriter_script), str(receiver.hwnd), str(seed)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert "ready" in json.loads(hostile.stdout.readline() or "{}"), f"seed {seed}: the rewriter did not start"
            honest = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{d}" for t, s, d in specs),
                                "--shm-threshold", str(64 << 10))
            honest_seen, last_honest = 0, time.monotonic()
            while honest_seen < HONEST or time.monotonic() - started < ATTACK_SECONDS:
                assert honest_seen == HONEST or time.monotonic() - last_honest < 60, (
                    f"seed {seed}: honest message {honest_seen} never came")
                try:
                    messages = receiver.recv_many(256, timeout=0.5)
                except copydata.RecvTimeout:
                    continue
                for message in messages:
                    if check(message, honest_seen) > honest_seen:
                        honest_seen, last_honest = honest_seen + 1, time.monotonic()
            assert honest.read(timeout=60) == {"sent": HONEST}
            out, errors = hostile.communicate(input="", timeout=60)  # stdin closed: it stops
        finally:
            if hostile.poll() is None:
                hostile.kill()
                hostile.wait(timeout=30)
        assert hostile.returncode == 0, f"seed {seed}: {errors}"
        report = json.loads(out.splitlines()[-1])
        # What the hostile had queued still comes, each from its section; nothing honest is left.
        while True:
            try:
                late = receiver.recv_many(256, timeout=0.5)
            except copydata.RecvTimeout:
                break
            for message in late:
                honest_seen = check(message, honest_seen)
        elapsed = time.monotonic() - started

        # The receiver still answers, and closes in time.
        assert copydata.send(receiver, b"still answering", tag=7) == 1
        assert receiver.recv(timeout=5).data == b"still answering"
        closing = time.monotonic()
        receiver.close()
        assert time.monotonic() - closing < 10, f"seed {seed}: close() took {time.monotonic() - closing:.1f} s"
    finally:
        receiver.close()

    stats = receiver.stats
    print(f"{HONEST} honest messages and {hostile_messages} hostile ones ({hostile_bytes} bytes) in {elapsed:.1f} s; "
          f"rewriter: {report}; refused: malformed {stats.refused_malformed}, section {stats.refused_section}, "
          f"queue full {stats.refused_queue_full}, never fits/too large {stats.refused_too_large}; "
          f"ring frames {stats.ring_frames}")
    # The rewriter was refused, and got some of its frames taken and leased: both paths were run.
    assert stats.refused_malformed > 0 and stats.refused_section > 0, f"seed {seed}: {stats}"
    assert report["answers"].get("0", 0) > 0 and report["answers"].get("6", 0) > 0, f"seed {seed}: {report}"
    assert hostile_messages > 0, f"seed {seed}: nothing of the hostile's was taken: {report}"
    # Every frame the rewriter saw refused, answered or announced, was counted as refused.
    assert report["answers"].get("0", 0) + report["ring_answers"].get("0", 0) <= stats.refused_messages
    # Every refusal is reported, and none but a full queue ever befell the honest sender.
    assert (sum(refusal.occurrences for refusal in refusals if refusal.reason in ("malformed", "section"))
            == stats.refused_malformed + stats.refused_section)
    honest_refusals = {refusal.reason for refusal in refusals if refusal.sender != HOSTILE}
    assert honest_refusals <= {"queue_full"}, f"seed {seed}: the honest sender was refused: {honest_refusals}"
