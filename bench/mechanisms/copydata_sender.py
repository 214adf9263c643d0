"""copydata.Sender: messages packed into batch frames, to the same queue-mode Receiver."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import copydata

from mechanisms.copydata_send import SEND_TIMEOUT, serve  # noqa: F401  (same receiving end)
from payload import CHUNK_SIZE, chunks

LABEL = "copydata.Sender"
NOTE = ("copydata.Sender, batched (frames up to 1 MiB), streaming: flushed once, at the end; "
        "payloads above 1 MiB in 1 MiB chunks until Sender splits them itself")
# Messages are batched, so one message's round trip means nothing: throughput only.
ROUND_TRIP = False


@contextmanager
def connect(address: str) -> Iterator[Callable[[memoryview], None]]:
    sender = copydata.Sender(int(address), timeout=SEND_TIMEOUT)

    def send_one(message: memoryview) -> None:
        for chunk in chunks(message, CHUNK_SIZE):
            sender.send(chunk)

    try:
        yield send_one
        sender.flush()  # the receiver's time of the last message counts this too
    finally:
        sender.close()
