"""copydata.Sender.send_many into Receiver.recv_batch: many messages in one call each way, with
no object per message on either side."""

from __future__ import annotations

import copydata

from mechanisms.copydata_send import SEND_TIMEOUT
from payload import HEADER_SIZE

LABEL = "copydata send_many → recv_batch"
NOTE = ("copydata.Sender.send_many with its defaults (65,536 messages or 8 MiB a call), into a queue-mode "
        "Receiver(copy=False) read with recv_batch: each batch one block, checked in bulk (numpy), "
        "every message's sequence number and bytes compared")
ROUND_TRIP = False
COUNT_FACTOR = 1000
#: Messages per send_many call, at most: 65,536 small ones, or 8 MiB of larger ones.
CALL = 65536
CALL_BYTES = 8 << 20
#: Up to this size, the messages of a call are cut from the block as bytes: slicing bytes costs
#: half what slicing a memoryview does (300 to 400 ns a message against 560 to 900 in one
#: probe), and for small messages that was more than send_many itself.
SMALL = 256


class Stamper:
    """The producer: one block of ``per_call`` copies of the payload, made once; for each call
    only the sequence numbers are stamped again (numpy). send_many has copied every message into
    its frame, or its section, before it returns, so the block is free for the next call."""

    def __init__(self, payload: memoryview, per_call: int) -> None:
        import numpy

        self.size = len(payload)
        self.block = numpy.tile(numpy.frombuffer(payload, dtype=numpy.uint8), per_call).reshape(per_call, self.size)
        self.view = memoryview(self.block.reshape(-1))

    def messages(self, first: int, count: int) -> list:
        """Messages ``first`` to ``first + count - 1``, each with its sequence number."""
        import numpy

        stamps = numpy.arange(first, first + count, dtype="<u8").view(numpy.uint8).reshape(count, HEADER_SIZE)
        self.block[:count, :HEADER_SIZE] = stamps
        size = self.size
        whole = self.block[:count].tobytes() if size <= SMALL else self.view
        return [whole[start:start + size] for start in range(0, count * size, size)]


def send_all(address: str, payload: memoryview, count: int) -> None:
    per_call = max(1, min(CALL, CALL_BYTES // len(payload)))
    stamper = Stamper(payload, min(per_call, count))
    with copydata.Sender(int(address), timeout=SEND_TIMEOUT) as sender:
        for first in range(0, count, per_call):
            sender.send_many(stamper.messages(first, min(per_call, count - first)))


def serve(inbox) -> None:
    with copydata.Receiver(copy=False, max_queue_messages=1 << 20, max_queue_bytes=256 << 20) as receiver:
        inbox.ready(str(receiver.hwnd))
        while not inbox.finished:
            try:
                batch = receiver.recv_batch(timeout=inbox.wait_slice())
            except copydata.RecvTimeout:
                continue
            feed(inbox, batch)
            batch = None  # let go before waiting: a Sender's large messages are released with it


def feed(inbox, batch) -> None:
    import numpy

    if (numpy.frombuffer(batch.sizes, dtype="<u8") == inbox.size).all():
        inbox.feed_run(batch.data, len(batch))
    else:  # not all of one size: damaged somewhere; each checked alone says where
        for payload in batch:
            inbox.feed(payload)
