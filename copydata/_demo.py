"""The demo: what copydata is for, measured in under a minute, every message checked.

This process sends; a receiver process it starts (``copydata demo --receive``, see
_demo_receiver) checks every message as it arrives and reports how many came intact and when
the last one was checked. Each row is timed from its first send to that moment, on the clock
both processes share. Beside copydata's ways of sending, the same run measures what a plain C
program does: a loop of SendMessageTimeoutW(WM_COPYDATA), one message per call, into the same
receiver (the C floor, in copydata's core: cd_floor_send), and memcpy in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from . import _native
from ._demo_receiver import STAMP, receive_rows, shared_clock, stamped_block, template
from ._errors import Rejected
from ._send import send
from ._sender import Sender

SEND_TIMEOUT = 30.0
# Each row is measured this many times, the rows taking turns (in reverse order every other
# round, so that none always follows the same one), and its fastest round shown: a busy machine
# slows some rounds of each, seldom all of them.
DEFAULT_ROUNDS = 5
SMALL, LARGE, HUGE = 64, 1 << 20, 16 << 20
MANY_CALL = 65536  # messages per send_many call: the most a frame holds
DEFAULT_MEMCPY_SECONDS = 0.1


@dataclass(frozen=True)
class Row:
    way: str      # "send", "floor", "sender" or "many"
    label: str
    size: int
    count: int    # messages a round, at --scale 1

    def scaled(self, scale: float) -> Row:
        return Row(self.way, self.label, self.size, max(1, round(self.count * scale)))


ROWS = [
    Row("floor", "C floor: SendMessage loop", SMALL, 1500),
    Row("send", "copydata.send", SMALL, 1500),
    Row("sender", "Sender.send", SMALL, 100_000),
    Row("many", "Sender.send_many->recv_batch", SMALL, 1 << 18),
    Row("floor", "C floor: SendMessage loop", LARGE, 100),
    Row("sender", "Sender.send", LARGE, 1000),
    Row("sender", "Sender.send", HUGE, 48),
]


@dataclass
class Result:
    """A row's rounds: every message counted, the fastest round timed."""

    row: Row
    sent: int = 0
    received: int = 0
    intact: int = 0
    seconds: float = float("inf")

    def add(self, received: int, intact: int, seconds: float) -> None:
        self.sent += self.row.count
        self.received += received
        self.intact += intact
        if received == intact == self.row.count:
            self.seconds = min(self.seconds, seconds)

    @property
    def ok(self) -> bool:
        return self.received == self.intact == self.sent and 0 < self.seconds < float("inf")

    @property
    def messages_per_second(self) -> float:
        return self.row.count / self.seconds if self.ok else 0.0

    @property
    def bytes_per_second(self) -> float:
        return self.messages_per_second * self.row.size


class Progress:
    """One line redrawn in place (carriage returns, no other control characters), at most ten
    times a second."""

    WIDTH = 20

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.title = ""
        self.total = 1
        self.drawn_at = 0.0
        self.started = time.perf_counter()
        self.shown = 0

    def start(self, title: str, total: int) -> None:
        self.title, self.total, self.drawn_at = title, max(total, 1), 0.0
        self.update(0)

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.stream is None or (now - self.drawn_at < 0.1 and done < self.total):
            return
        self.drawn_at = now
        done = min(done, self.total)
        filled = self.WIDTH * done // self.total
        line = (f"{self.title:<40} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{100 * done // self.total:3d}%  {now - self.started:5.1f} s")
        self.stream.write("\r" + line.ljust(self.shown))  # over all of the line before
        self.stream.flush()
        self.shown = len(line)

    def clear(self) -> None:
        if self.stream is not None and self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
            self.shown = 0


def format_size(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def format_ratio(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2f}x"


def format_share(share: float) -> str:
    """A fraction as a percentage, with two significant digits below 10%."""
    percent = 100 * share
    return f"{percent:.0f}%" if percent >= 10 else f"{percent:.2g}%"


# --- the sending side of each row: each returns when its first message was sent ----------------

def small_payloads(row: Row) -> list[bytes]:
    block = bytes(stamped_block(template(row.size), 0, row.count))
    return [block[start:start + row.size] for start in range(0, len(block), row.size)]


def send_each(hwnd: int, row: Row, progress: Progress) -> float:
    payloads = small_payloads(row)
    start = shared_clock()
    for number, payload in enumerate(payloads):
        send(hwnd, payload, timeout=SEND_TIMEOUT)
        if number % 64 == 0:
            progress.update(number)
    return start


def send_floor(hwnd: int, row: Row, progress: Progress) -> float:
    payload = bytearray(template(row.size))
    # Calls of a quarter of a second or so, for the progress bar: the loop itself is in C.
    step = max(1, min(row.count // 20, 8 * SMALL * 1000 // row.size + 1))
    timeout_ms = int(SEND_TIMEOUT * 1000)
    start = shared_clock()
    for first in range(0, row.count, step):
        count = min(step, row.count - first)
        sent = _native.floor_send(hwnd, payload, first, count, timeout_ms, SEND_TIMEOUT)
        if sent != count:
            raise Rejected(f"the receiver refused message {first + sent} of the C floor's")
        progress.update(first + count)
    return start


def send_with_sender(hwnd: int, row: Row, progress: Progress) -> float:
    with Sender(hwnd, timeout=SEND_TIMEOUT) as sender:
        if row.size <= SMALL:
            payloads = small_payloads(row)
            start = shared_clock()
            for first in range(0, row.count, 4096):
                for payload in payloads[first:first + 4096]:
                    sender.send(payload)
                progress.update(first)
        else:
            # One buffer, its number stamped in place: the Sender copies a message as it takes it.
            buffer = bytearray(template(row.size))
            start = shared_clock()
            for number in range(row.count):
                buffer[:STAMP] = number.to_bytes(STAMP, "little")
                sender.send(buffer)
                progress.update(number)
        sender.flush()
    return start


def send_many(hwnd: int, row: Row, progress: Progress) -> float:
    payloads = small_payloads(row)
    with Sender(hwnd, timeout=SEND_TIMEOUT) as sender:
        start = shared_clock()
        for first in range(0, row.count, MANY_CALL):
            sender.send_many(payloads[first:first + MANY_CALL])
            progress.update(first)
        sender.flush()
    return start


SENDERS: dict[str, Callable[[int, Row, Progress], float]] = {
    "send": send_each, "floor": send_floor, "sender": send_with_sender, "many": send_many}


# --- the run ------------------------------------------------------------------------------------

class ReceiverProcess:
    """The receiving end, in a process of its own."""

    def __init__(self) -> None:
        command = [sys.executable, "-m", "copydata", "demo", "--receive"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hwnd = int(self.read()["hwnd"])

    def read(self) -> dict:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the receiver process ended (exit code {self.process.wait()})")
        return json.loads(line)

    def measure(self, result: Result, progress: Progress) -> None:
        """One round of a row."""
        row = result.row
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"size": row.size, "count": row.count, "batch": row.way == "many"}) + "\n")
        self.process.stdin.flush()
        start = SENDERS[row.way](self.hwnd, row, progress)
        progress.update(row.count)
        report = self.read()
        result.add(report["received"], report["intact"], report["end"] - start)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure_memcpy(size: int, seconds: float) -> float:
    """Bytes a second that C's memcpy copies here, ``size`` bytes a copy, in one call of
    about ``seconds`` (its length found by doubling)."""
    source, target = bytearray(template(size)), bytearray(size)
    count = max(1, (1 << 20) // size)
    while True:
        started = time.perf_counter()
        intact = _native.floor_memcpy(target, source, count)
        elapsed = time.perf_counter() - started
        if not intact:
            raise RuntimeError(f"memcpy of {size} bytes came out different")
        if elapsed >= seconds:
            return count * size / elapsed
        count = count * 2 if elapsed < seconds / 8 else int(count * 1.1 * seconds / elapsed) + 1


def floor_size(size: int) -> int:
    """The size of the C floor's messages that a row is compared with: its own, up to the
    largest that Wine's WM_COPYDATA takes whole."""
    return min(size, LARGE)


def print_row(result: Result, floors: dict[int, float], memcpy: dict[int, float]) -> None:
    row, rate = result.row, result.bytes_per_second
    floor = floors.get(floor_size(row.size))
    if not result.ok:
        print(f"{row.label:<28} {format_size(row.size):>6} {result.sent:>10,} {result.intact:>10,}  FAILED: "
              f"{result.received:,} arrived", flush=True)
        return
    print(f"{row.label:<28} {format_size(row.size):>6} {result.sent:>10,} {result.intact:>10,} "
          f"{result.seconds:>8.3f} {result.messages_per_second:>11,.0f} {rate / 1e6:>9,.1f} "
          f"{format_ratio(rate / floor) if floor else '-':>9} {format_share(rate / memcpy[row.size]):>9}", flush=True)


def closing_line(results: list[Result], floors: dict[int, float], memcpy: dict[int, float]) -> str:
    """The line to remember, from the figures just measured."""
    small = max((result.bytes_per_second for result in results
                 if result.row.size == SMALL and result.row.way in ("sender", "many")))
    huge = next(result.bytes_per_second for result in results if result.row.size == HUGE)
    return (f"copydata's Sender moved {SMALL}-byte messages {format_ratio(small / floors[SMALL])} faster than a C loop "
            f"of SendMessage, and {format_size(HUGE)} ones at {format_share(huge / memcpy[HUGE])} of memcpy's speed; "
            f"every message checked.")


def run_demo(scale: float, rounds: int, memcpy_seconds: float, progress: Progress) -> int:
    results = [Result(row.scaled(scale)) for row in ROWS]
    print(f"copydata demo: this process ({os.getpid()}) sends; a receiver process checks every message:\n"
          f"its length, its number in sequence and every byte. Each row: the fastest of {rounds} "
          f"round{'s' if rounds > 1 else ''}.",
          flush=True)
    memcpy = dict.fromkeys(sorted({result.row.size for result in results}), 0.0)
    receiver = ReceiverProcess()
    try:
        for round_number in range(1, rounds + 1):
            for size in memcpy:
                progress.start(f"[{round_number}/{rounds}] memcpy {format_size(size)}", 1)
                memcpy[size] = max(memcpy[size], measure_memcpy(size, memcpy_seconds))
            for result in results if round_number % 2 else results[::-1]:
                row = result.row
                progress.start(f"[{round_number}/{rounds}] {row.label} {format_size(row.size)}", row.count)
                receiver.measure(result, progress)
    finally:
        progress.clear()
        receiver.close()
    floors = {result.row.size: result.bytes_per_second for result in results if result.row.way == "floor" and result.ok}
    print(f"{'':<28} {'size':>6} {'messages':>10} {'intact':>10} {'seconds':>8} {'msg/s':>11} {'MB/s':>9} "
          f"{'x C floor':>9} {'of memcpy':>9}", flush=True)
    for result in results:
        print_row(result, floors, memcpy)
    print("memcpy (C, in this process, the fastest round): "
          + ", ".join(f"{format_size(size)} {rate / 1e6:,.0f} MB/s" for size, rate in memcpy.items()), flush=True)
    print(f"messages, intact: all rounds. seconds, msg/s, MB/s: the fastest round, from its first send to\n"
          f"  its last message checked. x C floor: bytes/s over the C loop's at the same size ({format_size(HUGE)}\n"
          f"  against {format_size(LARGE)}, the largest message Wine's WM_COPYDATA takes whole). Under Wine every\n"
          f"  cross-process message goes through wineserver: compare the ratios, not the rates.", flush=True)
    failed = [result for result in results if not result.ok]
    if failed:
        print(f"FAILED: {len(failed)} row(s) with messages lost or damaged", flush=True)
        return 1
    print(closing_line(results, floors, memcpy), flush=True)
    return 0


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1000:
        raise argparse.ArgumentTypeError(f"a number above 0 and below 1000, not {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=positive_number, default=1.0, metavar="FACTOR",
                        help="multiply every row's message count (default 1: about half a minute on a busy "
                             "2-core machine under Wine; 0.01 for a quick check)")
    parser.add_argument("--rounds", type=int, choices=range(1, 11), default=DEFAULT_ROUNDS, metavar="N",
                        help=f"times each row is measured, the fastest shown (1 to 10, default {DEFAULT_ROUNDS})")
    parser.add_argument("--memcpy-seconds", type=positive_number, default=DEFAULT_MEMCPY_SECONDS, metavar="S",
                        help=f"how long memcpy is timed at each size (default {DEFAULT_MEMCPY_SECONDS})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stall", type=positive_number, default=SEND_TIMEOUT, help=argparse.SUPPRESS)


def main(options: argparse.Namespace) -> int:
    if options.receive:
        return receive_rows(options.stall)
    progress = Progress(None if options.no_progress else sys.stderr)
    return run_demo(options.scale, options.rounds, options.memcpy_seconds, progress)
