"""The demo: a receiver in this process, a sender in another, every message checked on arrival.

The sender process reports, per payload size, how long its sends took; this process counts
and verifies what its on_message saw (sequence, size and CRC of every payload).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib

from ._receiver import Message, Receiver
from ._send import send

DEFAULT_PLAN = [(64, 5000), (4096, 3000), (65536, 1000), (1 << 20, 100)]
HEADER = struct.Struct("<QQI")  # sequence, size, CRC-32 of the body


def make_payload(sequence: int, size: int) -> bytes:
    """A payload of exactly ``size`` bytes (at least the header) that proves its own integrity."""
    body_size = max(size - HEADER.size, 0)
    block = sequence.to_bytes(8, "little") + bytes(range(248))
    body = (block * (body_size // len(block) + 1))[:body_size]
    return HEADER.pack(sequence, size, zlib.crc32(body)) + body


def payload_is_intact(data: bytes) -> bool:
    if len(data) < HEADER.size:
        return False
    _, size, crc = HEADER.unpack_from(data)
    return size == len(data) and zlib.crc32(memoryview(data)[HEADER.size:]) == crc


class Tally:
    """What the receiver saw, per phase (the tag)."""

    def __init__(self, phases: int) -> None:
        self.lock = threading.Lock()
        self.intact = [0] * phases
        self.damaged = [0] * phases
        self.out_of_order = [0] * phases
        self.next_sequence = [0] * phases
        self.changed = threading.Condition(self.lock)

    def on_message(self, message: Message) -> None:
        phase = message.tag
        with self.lock:
            if not 0 <= phase < len(self.intact):
                return
            if not payload_is_intact(message.data):
                self.damaged[phase] += 1
            else:
                sequence = HEADER.unpack_from(message.data)[0]
                if sequence != self.next_sequence[phase]:
                    self.out_of_order[phase] += 1
                self.next_sequence[phase] = sequence + 1
                self.intact[phase] += 1
            self.changed.notify_all()

    def wait_for(self, phase: int, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(
                lambda: self.intact[phase] + self.damaged[phase] >= count, timeout)


def run_sender(target: int, plan: list[tuple[int, int]]) -> None:
    for phase, (size, count) in enumerate(plan):
        payloads = [make_payload(sequence, size) for sequence in range(min(count, 64))]
        started = time.perf_counter()
        for sequence in range(count):
            data = payloads[sequence] if sequence < len(payloads) else make_payload(sequence, size)
            send(target, data, tag=phase, timeout=30)
        seconds = time.perf_counter() - started
        print(json.dumps({"phase": phase, "seconds": seconds}), flush=True)


def format_size(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def run_demo(plan: list[tuple[int, int]]) -> int:
    tally = Tally(len(plan))
    with Receiver(f"copydata-demo-{os.getpid()}", on_message=tally.on_message) as receiver:
        print(f"copydata demo: receiver window {receiver.hwnd:#x} in process {os.getpid()}; "
              f"starting a sender process", flush=True)
        command = [sys.executable, "-m", "copydata", "demo", "--send-to", str(receiver.hwnd),
                   "--plan", ",".join(f"{size}x{count}" for size, count in plan)]
        sender = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert sender.stdout is not None
        print(f"{'size':>9} {'messages':>9} {'seconds':>8} {'msg/s':>9} {'MB/s':>8}  received intact", flush=True)
        failures = 0
        for line in sender.stdout:
            report = json.loads(line)
            phase, seconds = report["phase"], report["seconds"]
            size, count = plan[phase]
            arrived = tally.wait_for(phase, count, timeout=30)
            intact = tally.intact[phase]
            ok = arrived and intact == count and not tally.damaged[phase] and not tally.out_of_order[phase]
            failures += not ok
            print(f"{format_size(size):>9} {count:>9} {seconds:>8.2f} {count / seconds:>9,.0f} "
                  f"{count * size / seconds / 1e6:>8.1f}  {intact}/{count}"
                  f"{'' if ok else f'  FAILED: {tally.damaged[phase]} damaged, {tally.out_of_order[phase]} out of order'}",
                  flush=True)
        if sender.wait() != 0:
            print(f"the sender process failed with exit code {sender.returncode}", flush=True)
            return 1
    stats = receiver.stats
    total = sum(count for _, count in plan)
    if failures or stats.received_messages != total:
        print(f"FAILED: {failures} phase(s) incomplete; receiver stats: {stats}", flush=True)
        return 1
    print(f"all {total} messages ({stats.received_bytes:,} bytes) arrived intact, in order, exactly once; "
          f"{stats.refused_messages} refused", flush=True)
    print("(under Wine every cross-process message goes through wineserver: compare rates only "
          "with others measured on the same machine)", flush=True)
    return 0


def parse_plan(text: str) -> list[tuple[int, int]]:
    try:
        plan = [tuple(int(number) for number in part.split("x")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a plan is SIZExCOUNT,...; got {text!r}") from None
    if not plan or any(len(step) != 2 or step[0] < HEADER.size or step[1] < 1 for step in plan):
        raise argparse.ArgumentTypeError(f"each step needs a size of at least {HEADER.size} and a count of at least 1")
    return plan  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", type=parse_plan, default=DEFAULT_PLAN,
                        help="payload sizes and message counts, e.g. 64x5000,1048576x100")
    parser.add_argument("--send-to", type=lambda text: int(text, 0), metavar="HWND",
                        help=argparse.SUPPRESS)


def main(options: argparse.Namespace) -> int:
    if options.send_to is not None:
        run_sender(options.send_to, options.plan)
        return 0
    return run_demo(options.plan)
