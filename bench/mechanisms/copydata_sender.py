"""Slot for copydata.Sender (batched / split / shared-memory sends): skipped until it exists.

The receiving end is the same queue-mode Receiver as copydata.send's. The sending end below
assumes an API of the shape ``Sender(hwnd)`` with ``send(data)``, ``flush()`` and ``close()``;
adjust connect() to the real one when it lands.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import copydata

from mechanisms.copydata_send import SEND_TIMEOUT, serve  # noqa: F401  (same receiving end)

LABEL = "copydata.Sender"
NOTE = "copydata.Sender (batched/split/shared-memory), streaming: flushed once, at the end"
# Messages are batched, so one message's round trip means nothing: throughput only.
ROUND_TRIP = False


def unavailable() -> str | None:
    if not hasattr(copydata, "Sender"):
        return "copydata.Sender does not exist yet"
    return None


@contextmanager
def connect(address: str) -> Iterator[Callable[[memoryview], None]]:
    sender = copydata.Sender(int(address), timeout=SEND_TIMEOUT)
    try:
        yield sender.send
        sender.flush()  # the receiver's time of the last message counts this too
    finally:
        sender.close()
