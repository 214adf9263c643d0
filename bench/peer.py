"""One end of one measurement, in its own process: the harness (run.py) starts two of these.

    python bench/peer.py receive MECHANISM SIZE COUNT DEADLINE_SECONDS
    python bench/peer.py send MECHANISM SIZE COUNT        (the receiver's address on stdin)

Both report in JSON lines on stdout, the same protocol as the native programs:
  receiver: {"ready": ADDRESS}, then {"messages", "intact", "chunks", "bytes", "end"} once
            COUNT messages arrived or the deadline passed. A first line on its stdin means the
            sender has finished: the deadline is then SETTLE_SECONDS away at most. After its
            report it waits for stdin to close (so the harness can read its peak memory
            while it is still alive);
  sender:   {"start", "end", "round_trip_median", "round_trip_p99"} or {"error"}.
Times are time.perf_counter(), which on Windows is QueryPerformanceCounter: one clock for
every process, so the harness can subtract the sender's start from the receiver's end.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mechanisms  # noqa: E402
from payload import PayloadCheck, make_payload, stamp  # noqa: E402

#: How long a blocking receive waits before the receiver looks at its deadline again.
WAIT_SLICE = 0.25
#: Once the sender has finished, what has not arrived (and been checked) this much later is lost.
SETTLE_SECONDS = 5.0


def report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile, as the native programs compute it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1) + 0.5)]


class Inbox:
    """What a mechanism's receiving end reports to: every arriving chunk is checked here."""

    def __init__(self, size: int, count: int, deadline_seconds: float) -> None:
        self.size = size
        self.count = count
        self.deadline = time.perf_counter() + deadline_seconds
        self.check = PayloadCheck(size)
        self.last_message_at = 0.0
        self.stdin_closed = threading.Event()
        threading.Thread(target=self._watch_stdin, daemon=True).start()

    def _watch_stdin(self) -> None:
        sys.stdin.readline()  # the sender has finished (or the harness is gone: EOF)
        self.deadline = min(self.deadline, time.perf_counter() + SETTLE_SECONDS)
        sys.stdin.read()
        self.stdin_closed.set()

    def ready(self, address: str) -> None:
        report(ready=address)

    def feed(self, chunk: bytes | memoryview) -> bool:
        """Check one arriving chunk; True when it completed a message (time to answer)."""
        completed = self.check.feed(chunk)
        if completed:
            self.last_message_at = time.perf_counter()
        return completed

    def feed_run(self, block: bytes | memoryview, count: int, arrived_at: float | None = None) -> None:
        """Check ``count`` whole messages back to back in ``block``, taken at once (``arrived_at``:
        when the last of them arrived, if it was not just now)."""
        self.check.feed_run(block, count)
        self.last_message_at = time.perf_counter() if arrived_at is None else arrived_at

    @property
    def missing(self) -> int:
        """Bytes still to come for the current message."""
        return self.check.missing

    def remaining(self) -> float:
        return max(self.deadline - time.perf_counter(), 0.0)

    def wait_slice(self) -> float:
        """How long one blocking receive may wait."""
        return min(WAIT_SLICE, self.remaining())

    @property
    def finished(self) -> bool:
        return self.check.messages >= self.count or self.remaining() == 0.0


def receive(mechanism, size: int, count: int, deadline_seconds: float) -> None:
    inbox = Inbox(size, count, deadline_seconds)
    mechanism.serve(inbox)
    check = inbox.check
    report(messages=check.messages, intact=check.intact, chunks=check.chunks, bytes=check.bytes,
           end=inbox.last_message_at)
    inbox.stdin_closed.wait()


def send(mechanism, size: int, count: int) -> None:
    address = sys.stdin.readline().strip()
    payload = memoryview(make_payload(size))
    send_all = getattr(mechanism, "send_all", None)
    if send_all is not None:  # a mechanism that takes many messages at once stamps them itself
        start = time.perf_counter()
        send_all(address, payload, count)
        report(start=start, end=time.perf_counter(), round_trip_median=None, round_trip_p99=None)
        return
    round_trips = []
    with mechanism.connect(address) as send_one:
        start = time.perf_counter()
        for sequence in range(count):
            stamp(payload, sequence)
            sent_at = time.perf_counter()
            send_one(payload)
            round_trips.append(time.perf_counter() - sent_at)
        # Before the connection's teardown. A batching mechanism flushes when its connect()
        # is left; the receiver's time of the last message covers that.
        end = time.perf_counter()
    one_at_a_time = getattr(mechanism, "ROUND_TRIP", True)
    report(start=start, end=end,
           round_trip_median=percentile(round_trips, 0.5) if one_at_a_time else None,
           round_trip_p99=percentile(round_trips, 0.99) if one_at_a_time else None)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] not in ("receive", "send"):
        print(__doc__, file=sys.stderr)
        return 2
    role, name, size, count = argv[0], argv[1], int(argv[2]), int(argv[3])
    try:
        mechanism = mechanisms.load(name)
        if role == "receive":
            receive(mechanism, size, count, float(argv[4]))
        else:
            send(mechanism, size, count)
    except Exception as error:
        traceback.print_exc()
        report(error=f"{type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
