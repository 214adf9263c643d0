"""copydata.Sender.send_many into Receiver.recv_many: a Message for each message received."""

from __future__ import annotations

import copydata

from mechanisms.copydata_many import COUNT_FACTOR, ROUND_TRIP, send_all  # noqa: F401  (the same sending end)

LABEL = "copydata send_many → recv_many"
NOTE = ("copydata.Sender.send_many as above, into a queue-mode Receiver(copy=False) read with "
        "recv_many (a Message each); each batch checked in bulk")


def serve(inbox) -> None:
    with copydata.Receiver(copy=False, max_queue_messages=1 << 20, max_queue_bytes=256 << 20) as receiver:
        inbox.ready(str(receiver.hwnd))
        while not inbox.finished:
            try:
                batch = receiver.recv_many(1 << 16, timeout=inbox.wait_slice())
            except copydata.RecvTimeout:
                continue
            if all(len(message.data) == inbox.size for message in batch):
                inbox.feed_run(b"".join([message.data for message in batch]), len(batch))
            else:
                for message in batch:
                    inbox.feed(message.data)
            batch = message = None
