"""Probe: Sender.send_many into recv_batch (or recv_many) across two processes, with no
producer and no checker in the way: where the ceiling of the bulk path is.

    python3 tools/winenv.py python bench/probe_send_many.py          # recv_batch
    MODE=many MAX=4096 python3 tools/winenv.py python bench/probe_send_many.py
    PROF=1 MODE=many python3 tools/winenv.py python bench/probe_send_many.py   # cProfile the receiver

N messages of 64 bytes (default 2,000,000) go in send_many calls of 65,536 prebuilt bytes; the
sender reports its rate with and without the final flush, the receiver its rate from the first
batch taken to the last. Counts only: the benchmark (bench/run.py) is where bytes are checked.
"""

import os
import subprocess
import sys
import time

import copydata

N = int(os.environ.get("N", 2_000_000))
CALL = 65536
SIZE = 64
MODE = os.environ.get("MODE", "batch")
MAX = int(os.environ.get("MAX", 1 << 20))


def receive() -> None:
    with copydata.Receiver(copy=False, max_queue_messages=1 << 20, max_queue_bytes=256 << 20) as receiver:
        print(receiver.hwnd, flush=True)
        got, first = 0, None
        while got < N:
            taken = receiver.recv_batch(timeout=10) if MODE == "batch" else receiver.recv_many(MAX, timeout=10)
            first = first or time.perf_counter()
            got += len(taken)
            taken = None  # let go before the next take
        seconds = time.perf_counter() - first
        print(f"receiver: {got:,} in {seconds:.3f} s from the first take, {got / seconds:,.0f} msg/s", flush=True)


def send(hwnd: int) -> None:
    payloads = [bytes([n % 256]) * SIZE for n in range(CALL)]
    with copydata.Sender(hwnd) as sender:
        start = time.perf_counter()
        for first in range(0, N, CALL):
            sender.send_many(payloads[:min(CALL, N - first)])
        added = time.perf_counter()
        sender.flush()
        flushed = time.perf_counter()
    print(f"sender: send_many {N / (added - start):,.0f} msg/s ({(added - start) / N * 1e9:.0f} ns a message), "
          f"with the flush {N / (flushed - start):,.0f} msg/s", flush=True)


def main() -> None:
    if sys.argv[1:] == ["receive"]:
        if os.environ.get("PROF"):
            import cProfile
            import pstats
            profile = cProfile.Profile()
            profile.runcall(receive)
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)
        else:
            receive()
        return
    receiver = subprocess.Popen([sys.executable, __file__, "receive"], stdout=subprocess.PIPE, text=True)
    send(int(receiver.stdout.readline()))
    print(receiver.stdout.read(), end="")
    receiver.wait()


if __name__ == "__main__":
    main()
