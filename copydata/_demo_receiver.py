"""The demo's payloads, their check, and its receiver process (``copydata demo --receive``).

The payload of message ``n`` of a row is ``size`` bytes: ``n`` (8 bytes, little-endian), then
a pseudo-random body that depends only on ``size``. The receiver compares every message with
the one it expects next: its length, its number and every byte; the count of intact ones is
what the demo reports.
"""

from __future__ import annotations

import ctypes
import json
import random
import sys
from array import array
from typing import Any, Sequence

from . import _native
from ._errors import RecvTimeout
from ._messages import MessageBatch
from ._receiver import Receiver

STAMP = _native.FLOOR_STAMP_SIZE  # the C floor stamps its payloads the same way
# Up to this size, messages taken together are checked together; larger ones one by one.
JOINED_CHECK_LIMIT = 64 << 10
# How long one blocking receive waits before the receiver looks at the clock again.
WAIT_SLICE = 0.25


class _SharedClock:
    """Seconds on QueryPerformanceCounter, one clock for every process of the machine: a row's
    first send is timed in one process and its last check in another. (time.perf_counter is
    that clock from CPython 3.10 on; before, it counted from the start of its own process.)"""

    def __init__(self) -> None:
        self._kernel32 = ctypes.WinDLL("kernel32")
        frequency = ctypes.c_int64()
        self._kernel32.QueryPerformanceFrequency(ctypes.byref(frequency))
        self._frequency = frequency.value
        self._counter = ctypes.c_int64()

    def __call__(self) -> float:
        self._kernel32.QueryPerformanceCounter(ctypes.byref(self._counter))
        return self._counter.value / self._frequency


shared_clock = _SharedClock()


def template(size: int) -> bytes:
    """Every payload of ``size`` bytes, before its number is stamped in."""
    if size < STAMP:
        raise ValueError(f"payloads have at least {STAMP} bytes, not {size}")
    return bytes(STAMP) + random.Random(size).randbytes(size - STAMP)


def stamped_block(pattern: bytes, first: int, count: int) -> bytearray:
    """Payloads ``first`` to ``first + count - 1``, back to back."""
    size = len(pattern)
    block = bytearray(pattern) * count
    numbers = array("Q", range(first, first + count))
    if sys.byteorder == "big":
        numbers.byteswap()
    raw = numbers.tobytes()
    # Byte k of every number at once: no Python loop over the messages.
    for k in range(STAMP):
        block[k::size] = raw[k::STAMP]
    return block


def same_bytes(data: Any, expected: bytes | bytearray) -> bool:
    # bytes.startswith compares with memcmp; a memoryview's == compares byte by byte.
    return len(data) == len(expected) and expected.startswith(data)


class Check:
    """The messages of one row, each compared, in arrival order, with the one expected next."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.template = template(size)
        self.body = self.template[STAMP:]
        self.received = 0
        self.intact = 0

    def one(self, data: Any) -> None:
        self.intact += (len(data) == self.size and same_bytes(data[:STAMP], self.received.to_bytes(STAMP, "little"))
                        and same_bytes(data[STAMP:], self.body))
        self.received += 1

    def run(self, payloads: Sequence[Any]) -> None:
        """Messages taken together, checked in one comparison while all are intact."""
        expected = stamped_block(self.template, self.received, len(payloads))
        if set(map(len, payloads)) == {self.size} and same_bytes(b"".join(payloads), expected):
            self.received += len(payloads)
            self.intact += len(payloads)
        else:  # one by one, to count the intact ones
            for data in payloads:
                self.one(data)

    def batch(self, batch: MessageBatch) -> None:
        count = len(batch)
        expected = stamped_block(self.template, self.received, count)
        if batch.sizes.tobytes() == array("Q", [self.size]).tobytes() * count and same_bytes(batch.data, expected):
            self.received += count
            self.intact += count
        else:
            for data in batch:
                self.one(data)


def take(receiver: Receiver, check: Check, count: int, batch: bool) -> bool:
    """Takes and checks what has arrived of the row (at most what is left of ``count``); False
    when nothing came within WAIT_SLICE. What it took is let go on return: a Sender's large
    messages are read where they lie in its shared memory, which it reuses once they are gone."""
    left = count - check.received
    try:
        if batch:
            check.batch(receiver.recv_batch(left, timeout=WAIT_SLICE))
            return True
        messages = receiver.recv_many(min(left, 4096), timeout=WAIT_SLICE)
    except RecvTimeout:
        return False
    if check.size <= JOINED_CHECK_LIMIT:
        check.run([message.data for message in messages])
    else:
        for message in messages:
            check.one(message.data)
    return True


def receive_rows(stall: float) -> int:
    """The receiver process: a Receiver(copy=False); for each row that the demo asks for on stdin
    (a JSON line: size, count, batch), reports on stdout how many messages arrived, how many
    intact, and when the last was checked (on shared_clock, the sending process's too). A row
    ends once its count arrived or nothing came for ``stall`` seconds."""
    with Receiver(copy=False) as receiver:
        print(json.dumps({"hwnd": receiver.hwnd}), flush=True)
        for line in sys.stdin:
            order = json.loads(line)
            check, count = Check(order["size"]), order["count"]
            end = last_arrival = shared_clock()
            while check.received < count:
                if take(receiver, check, count, order["batch"]):
                    end = last_arrival = shared_clock()
                elif shared_clock() - last_arrival > stall:
                    break
            print(json.dumps({"received": check.received, "intact": check.intact, "end": end}), flush=True)
    return 0
