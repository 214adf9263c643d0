"""Measure every IPC mechanism with a sender process and a receiver process, in one run.

    python bench/run.py [--full] [--only MECH,...] [--sizes 64,4K,1M,...] [--repeat N] [--native-dir DIR]

Runs in the Windows Python (under Wine: python3 tools/winenv.py python bench/run.py). The
native programs are built on the Linux side by tools/winenv.py, which runs this as
    python3 tools/winenv.py bench [ARGS]
Their folder is --native-dir, else $COPYDATA_BENCH_NATIVE, else .winenv/build/bench.

For each mechanism and size, the harness starts a receiver process and a sender process
(bench/peer.py or the native programs), passes the receiver's address to the sender, and
collects what both report: the sender's start and round trips, the receiver's count of intact
messages and the time of the last one, and the receiver's peak memory, read from its process
handle. Results go to bench/results/latest.{md,json,png} and the table to stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
import time
from ctypes import wintypes
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import mechanisms  # noqa: E402
import report  # noqa: E402
from payload import HEADER_SIZE  # noqa: E402

PEER = BENCH / "peer.py"
DEFAULT_NATIVE_DIR = BENCH.parent / ".winenv" / "build" / "bench"
DEFAULT_RESULTS_DIR = BENCH / "results"

KiB, MiB = 1 << 10, 1 << 20
ALL_SIZES = [64, 4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 64 * MiB]
QUICK_SIZES = [64, 4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How many messages each measurement sends, the same for every mechanism at one size: a
    byte budget within a range of counts. Under Wine, small sizes then take from a fraction of
    a second (the C floor) to several seconds (pyzmq), and large ones move a bounded number
    of bytes."""

    budget: int
    most: int
    least: int
    memcpy_seconds: float

    def count(self, size: int, factor: int = 1) -> int:
        """``factor`` raises the count for mechanisms that batch (within the byte budget): 5,000
        batched messages take a few milliseconds, where start-up costs would swamp the rate."""
        return max(self.least, min(self.most * factor, self.budget // size))


QUICK = Plan(budget=32 * MiB, most=2000, least=2, memcpy_seconds=0.2)
# 1 GiB a measurement in a full run: 16 messages at 64 MiB, so that a start-up cost weighs as
# one message in 16 (copydata.Sender's first 64 MiB message took 164 ms under Wine, the next
# ones 9 ms: a fresh section's pages are a file's, there), not one in 4.
FULL = Plan(budget=1024 * MiB, most=5000, least=4, memcpy_seconds=0.5)
WARM_UP_COUNT = 200
# On a machine shared with other work, one round alone gave ratios that moved by 2x between
# runs (the C floor at 64 B: 4.6k, then 9.8k msg/s). Keeping the faster of two rounds throws
# one slowed-down round away; a quick run then takes about 2.5 minutes under Wine.
DEFAULT_ROUNDS = 2

# A receiver gives up after BASE_DEADLINE plus the time its messages would take at a slow
# 10 ms a message and 5 MB/s (pyzmq under Wine needs about 3 ms a message); the harness
# waits GRACE longer than that for any report, then kills.
BASE_DEADLINE = 30.0
SLOWEST_ROUND_TRIP = 0.010
SLOWEST_RATE = 5e6
GRACE = 15.0


class PeerFailed(Exception):
    pass


class Peer:
    """A process that reports in JSON lines, read with a timeout; always ended by close()."""

    def __init__(self, argv: list[str], what: str) -> None:
        self.what = what
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, encoding="utf-8")
        self.reports: queue.Queue[dict | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_reports, daemon=True).start()
        threading.Thread(target=self.stderr.extend, args=(self.process.stderr,), daemon=True).start()

    def _read_reports(self) -> None:
        for line in self.process.stdout:
            try:
                self.reports.put(json.loads(line))
            except ValueError:
                self.stderr.append(line)  # stray output: keep it for the error message
        self.reports.put(None)

    def read(self, timeout: float) -> dict:
        try:
            item = self.reports.get(timeout=max(timeout, 0.1))
        except queue.Empty:
            raise PeerFailed(f"{self.what} sent no report within {timeout:.0f} s") from None
        if item is None:
            raise PeerFailed(f"{self.what} ended early{self._stderr_tail()}")
        if "error" in item:
            raise PeerFailed(f"{self.what}: {item['error']}")
        return item

    def send_line(self, text: str) -> None:
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def _stderr_tail(self) -> str:
        lines = "".join(self.stderr).strip().splitlines()
        return f": {lines[-1]}" if lines else ""

    def close(self, timeout: float = 10.0) -> None:
        """Close its stdin (the peers' signal to end), wait, and kill it if it does not end."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


class PROCESS_MEMORY_COUNTERS(ctypes.Structure):
    _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                ("PeakWorkingSetSize", ctypes.c_size_t), ("WorkingSetSize", ctypes.c_size_t),
                ("QuotaPeakPagedPoolUsage", ctypes.c_size_t), ("QuotaPagedPoolUsage", ctypes.c_size_t),
                ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t), ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
                ("PagefileUsage", ctypes.c_size_t), ("PeakPagefileUsage", ctypes.c_size_t)]


_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_kernel32.K32GetProcessMemoryInfo.argtypes = [wintypes.HANDLE, ctypes.POINTER(PROCESS_MEMORY_COUNTERS),
                                              wintypes.DWORD]


def memory_of(process: subprocess.Popen) -> dict | None:
    """The process's working set and committed memory, current and peak, in bytes."""
    counters = PROCESS_MEMORY_COUNTERS(cb=ctypes.sizeof(PROCESS_MEMORY_COUNTERS))
    # Popen keeps the handle CreateProcess returned (full access); it has no public name.
    if not _kernel32.K32GetProcessMemoryInfo(int(process._handle), ctypes.byref(counters), counters.cb):
        return None
    return {"working_set": counters.WorkingSetSize, "peak_working_set": counters.PeakWorkingSetSize,
            "peak_pagefile": counters.PeakPagefileUsage}


def commands(mechanism, name: str, size: int, count: int, deadline: float,
             native_dir: Path) -> tuple[list[str], list[str]]:
    """The receiver's and the sender's command lines (same protocol, Python or native)."""
    if hasattr(mechanism, "NATIVE"):
        receiver, sender = (str(native_dir / program) for program in mechanism.NATIVE)
        return [receiver, str(size), str(count), str(deadline)], [sender, str(size), str(count)]
    peer = [sys.executable, str(PEER)]
    return ([*peer, "receive", name, str(size), str(count), str(deadline)],
            [*peer, "send", name, str(size), str(count)])


def measure_pair(mechanism, name: str, size: int, count: int, native_dir: Path) -> dict:
    deadline = BASE_DEADLINE + count * SLOWEST_ROUND_TRIP + size * count / SLOWEST_RATE
    receiver_argv, sender_argv = commands(mechanism, name, size, count, deadline, native_dir)
    # Both start at once (their start-up overlaps); the sender waits for the address on stdin.
    receiver = Peer(receiver_argv, "receiver")
    sender = None
    try:
        sender = Peer(sender_argv, "sender")
        address = receiver.read(BASE_DEADLINE)["ready"]
        memory_at_ready = memory_of(receiver.process)
        sender.send_line(str(address))
        sent = sender.read(deadline + GRACE)
        receiver.send_line("sender finished")
        received = receiver.read(deadline + GRACE)
        memory = memory_of(receiver.process)
    finally:
        for peer in (sender, receiver):
            if peer is not None:
                peer.close()
    seconds = max(sent["end"], received["end"]) - sent["start"]
    return {**outcome(received, count), "seconds": seconds,
            "round_trip_median": sent.get("round_trip_median"), "round_trip_p99": sent.get("round_trip_p99"),
            "chunks": received["chunks"], "receiver_memory": memory,
            "receiver_working_set_at_ready": memory_at_ready and memory_at_ready["working_set"]}


def measure_local(mechanism, size: int, seconds: float, native_dir: Path) -> dict:
    program = Peer([str(native_dir / mechanism.LOCAL), str(size), str(seconds)], mechanism.LOCAL)
    try:
        result = program.read(BASE_DEADLINE + seconds)
    finally:
        program.close()
    return {**outcome(result, result["messages"]), "count": result["messages"],
            "seconds": result["end"] - result["start"], "round_trip_median": None, "round_trip_p99": None}


def outcome(received: dict, count: int) -> dict:
    intact = received["intact"] == count and received["messages"] == count
    return {"status": "ok" if intact else "FAILED", "messages_received": received["messages"],
            "messages_intact": received["intact"],
            "reason": "" if intact else f"{received['intact']} of {count} messages arrived intact "
                                        f"({received['messages']} arrived)"}


def measure(mechanism, name: str, size: int, count: int, native_dir: Path, plan: Plan) -> dict:
    """One measurement; a failure of any kind is a FAILED result, not the end of the run."""
    try:
        if hasattr(mechanism, "LOCAL"):
            return measure_local(mechanism, size, plan.memcpy_seconds, native_dir)
        return measure_pair(mechanism, name, size, count, native_dir)
    except (PeerFailed, KeyError, OSError) as error:
        return {"status": "FAILED", "reason": str(error) or type(error).__name__}


def better(kept: dict | None, new: dict) -> dict:
    """Of two rounds of one step: the first failed one, else the one with the higher MB/s."""
    if kept is None or (kept["status"] == "ok" and new["status"] != "ok"):
        return new
    if kept["status"] != "ok":
        return kept
    return new if report.throughput(new)[1] > report.throughput(kept)[1] else kept


def missing_programs(mechanism, native_dir: Path) -> str | None:
    programs = getattr(mechanism, "NATIVE", ()) or ((mechanism.LOCAL,) if hasattr(mechanism, "LOCAL") else ())
    missing = [program for program in programs if not (native_dir / program).exists()]
    if missing:
        return f"{', '.join(missing)} not built in {native_dir} (python3 tools/winenv.py bench builds them)"
    return None


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": KiB, "M": MiB}.get(text[-1:], 1)
    return int(text.rstrip("KM")) * scale


def progress(text: str, end: str = "\n") -> None:
    print(text, file=sys.stderr, end=end, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="every size, more messages (default: a quick run)")
    parser.add_argument("--only", help=f"comma-separated mechanisms, of: {', '.join(mechanisms.MECHANISMS)}")
    parser.add_argument("--sizes", help="comma-separated payload sizes, e.g. 64,4K,1M (default: by --full)")
    parser.add_argument("--native-dir", type=Path,
                        default=Path(os.environ.get("COPYDATA_BENCH_NATIVE", DEFAULT_NATIVE_DIR)),
                        help="folder of the C programs of bench/native/, built by tools/winenv.py bench")
    parser.add_argument("--repeat", type=int, default=DEFAULT_ROUNDS,
                        help="measure each step this many times and keep the fastest (a failure in any "
                             f"round is kept): other load on the machine only ever slows a round down "
                             f"(default {DEFAULT_ROUNDS})")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    options = parser.parse_args(argv)

    plan = FULL if options.full else QUICK
    try:
        sizes = [parse_size(size) for size in options.sizes.split(",")] if options.sizes else (
            ALL_SIZES if options.full else QUICK_SIZES)
    except ValueError:
        parser.error(f"--sizes {options.sizes!r}: give sizes like 64,4K,1M")
    if options.repeat < 1:
        parser.error("--repeat needs at least 1 round")
    if min(sizes) < HEADER_SIZE:
        parser.error(f"payloads have at least {HEADER_SIZE} bytes (the sequence number)")
    names = list(dict.fromkeys(options.only.split(","))) if options.only else list(mechanisms.MECHANISMS)
    try:
        selected = [(name, mechanisms.load(name)) for name in names]
    except ValueError as error:
        parser.error(str(error))

    skipped, runnable = [], []
    for name, mechanism in selected:
        reason = mechanisms.unavailable(mechanism) or missing_programs(mechanism, options.native_dir)
        if reason:
            skipped.append({"mechanism": name, "label": mechanism.LABEL, "reason": reason})
            progress(f"skipping {name}: {reason}")
        else:
            runnable.append((name, mechanism))

    steps = [(size, name, mechanism) for size in sizes for name, mechanism in runnable]
    started = time.perf_counter()
    if steps:
        # The first measurement of a run came out up to 3 times slower than the same one
        # repeated (a cold wineserver and caches): warm up with a short one, thrown away.
        progress("warming up ...")
        size, name, mechanism = steps[0]
        measure(mechanism, name, size, WARM_UP_COUNT, options.native_dir, plan)
    best: dict[tuple[int, str], dict] = {}
    # Rounds go through every step in turn, so that a burst of load from elsewhere on the
    # machine hits one round of a mechanism, not all of its repeats.
    for round_number in range(1, options.repeat + 1):
        for step, (size, name, mechanism) in enumerate(steps, 1):
            count = plan.count(size, getattr(mechanism, "COUNT_FACTOR", 1))
            round_text = f"round {round_number}/{options.repeat} " if options.repeat > 1 else ""
            progress(f"{round_text}[{step:>2}/{len(steps)}] {report.format_size(size):>7}  {name:<22} ", end="")
            result = {"mechanism": name, "label": mechanism.LABEL, "size": size, "count": count,
                      **measure(mechanism, name, size, count, options.native_dir, plan)}
            progress(report.describe(result))
            best[size, name] = better(best.get((size, name)), result)
    results = [best[size, name] for size, name, _ in steps]
    progress(f"done in {time.perf_counter() - started:.0f} s")

    run = report.Run(results=results, skipped=skipped, plan="full" if options.full else "quick",
                     repeat=options.repeat,
                     notes={name: getattr(mechanism, "NOTE", "") for name, mechanism in selected},
                     labels={name: mechanism.LABEL for name, mechanism in selected})
    table = report.write(run, options.results_dir)
    print(table)
    return 1 if any(result["status"] != "ok" for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
