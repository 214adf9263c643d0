"""Finding 1 of model/README.md on the real code: a frame announced after the ring ended.

    python3 tools/winenv.py python model/ring_after_disarm.py

One process: a queue-mode Receiver (copy=True, so each message is copied and freed at recv and
every lease released at once) read by a thread, and a Sender with linger=0 and timeout=2 s.
1. 2 MiB: a descriptor under lease 1; leased, answered 6: the ring is armed.
2. 200 KiB: announced under lease 2; no record of 1 MiB, so copied: the receiver answers 1 in
   the ring block and forgets the ring.
3. 2 MiB: _announce awaits 2's answer (1: _ring_armed becomes False), then posts lease 3 anyway;
   the receiver ignores the post, and flush() waits for an answer that never comes.
Today: flush() raises SendTimeout after 2 s and message 3 never arrives. Once fixed, all three
arrive and flush() returns at once (as they do today with 2 MiB in place of the 200 KiB).
"""

from __future__ import annotations

import threading
import time

import copydata

MiB = 1 << 20
SIZES = {1: 2 * MiB, 2: 200 << 10, 3: 2 * MiB}


def main() -> None:
    receiver = copydata.Receiver(copy=True)
    got: list[tuple[int, int]] = []

    def consume() -> None:
        while len(got) < len(SIZES):
            try:
                message = receiver.recv(timeout=6)
            except copydata.RecvTimeout:
                return
            got.append((message.tag, len(message.data)))

    reader = threading.Thread(target=consume)
    reader.start()
    sender = copydata.Sender(receiver.hwnd, linger=0, timeout=2.0)
    for tag, size in SIZES.items():
        sender.send(bytes([tag]) * size, tag=tag)
        time.sleep(0.3)
    start = time.monotonic()
    try:
        sender.flush()
        print(f"flush() returned after {time.monotonic() - start:.2f} s")
    except copydata.CopyDataError as error:
        print(f"flush() raised {type(error).__name__} after {time.monotonic() - start:.2f} s")
    reader.join()
    print("received (tag, size):", got, "ring_frames:", receiver.stats.ring_frames)
    sender.close()
    receiver.close()


if __name__ == "__main__":
    main()
