"""copydata.Sender.send_many into a Receiver's on_message: one call per message received."""

from __future__ import annotations

import threading
import time

import copydata

from mechanisms.copydata_many import COUNT_FACTOR, ROUND_TRIP, send_all  # noqa: F401  (the same sending end)

LABEL = "copydata send_many → on_message"
NOTE = ("copydata.Sender.send_many as above, into a Receiver(on_message=...) with its defaults (each "
        "payload copied into bytes); the callback keeps each payload, checked in bulk by another thread")


# Up to this size the payloads taken are joined and checked in bulk; larger ones are checked one
# by one, as the copydata.Sender row does (joining them timed a copy of each).
BULK_CHECK = 64 << 10


def serve(inbox) -> None:
    arrived: list[bytes] = []
    last = [0.0]
    lock = threading.Lock()

    def on_message(message: copydata.Message) -> None:
        with lock:
            arrived.append(message.data)
        last[0] = time.perf_counter()

    with copydata.Receiver(on_message=on_message, max_queue_messages=1 << 20,
                           max_queue_bytes=256 << 20) as receiver:
        inbox.ready(str(receiver.hwnd))
        while not inbox.finished:
            time.sleep(0.01)
            with lock:
                taken = arrived[:]
                arrived.clear()
            if not taken:
                if inbox.remaining() == 0.0:
                    break
                continue
            if inbox.size <= BULK_CHECK and all(len(data) == inbox.size for data in taken):
                inbox.feed_run(b"".join(taken), len(taken), arrived_at=last[0])
            else:
                for data in taken:
                    inbox.feed(data)
                inbox.last_message_at = last[0]
