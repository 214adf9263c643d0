"""Probe: what one Sender.send of 64 bytes costs, in one process, into a queue receiver.

    python3 tools/winenv.py python bench/probe_send_loop.py

Five rounds of 100,000 sends; between rounds (not timed) the frame is flushed and the queue
emptied, so nothing waits on the receiver. Prints each round's microseconds a call and the best.
"""

import time

import copydata

N = 100_000
PAYLOAD = b"\x5a" * 64

with copydata.Receiver(copy=False, max_queue_messages=1 << 20, max_queue_bytes=256 << 20) as receiver:
    with copydata.Sender(receiver.hwnd) as sender:
        send = sender.send
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(N):
                send(PAYLOAD)
            times.append((time.perf_counter() - start) / N * 1e6)
            sender.flush()
            taken = 0
            while taken < N:
                taken += len(receiver.recv_many(N, timeout=10))
print("us a send:", " ".join(f"{t:.2f}" for t in times), f"best {min(times):.2f}")
