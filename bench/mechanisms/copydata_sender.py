"""copydata.Sender: messages packed into batch frames, frames above 64 KiB built in shared
memory, to the same queue-mode Receiver as copydata.send's."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import copydata

from mechanisms.copydata_send import SEND_TIMEOUT, serve  # noqa: F401  (same receiving end)

LABEL = "copydata.Sender"
NOTE = ("copydata.Sender with its defaults: batch frames up to 8 MiB, those above 64 KiB built in one half "
        "of a shared-memory section while the receiver takes the other half (messages of 1 MiB and more read "
        "in place under a lease, smaller ones copied out), larger ones up to 64 MiB alone in a frame, the halves "
        "grown to fit them, and read in place too; while the receiver reads in place, each next frame announced "
        "in the section with a posted message rather than sent; "
        "streaming: flushed once, at the end")
# Messages are batched, so one message's round trip means nothing: throughput only.
ROUND_TRIP = False
# At small sizes, 50 times as many messages as the others send (within the byte budget), so
# that the rate measured is the steady one, not the start-up and the last flush.
COUNT_FACTOR = 50


@contextmanager
def connect(address: str) -> Iterator[Callable[[memoryview], None]]:
    sender = copydata.Sender(int(address), timeout=SEND_TIMEOUT)
    try:
        yield sender.send
        sender.flush()  # the receiver's time of the last message counts this too
    finally:
        sender.close()
