"""copydata.send, one message per call, to a copydata.Receiver in queue mode (recv_many)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import copydata

from payload import CHUNK_SIZE, chunks

LABEL = "copydata.send"
NOTE = ("copydata.send per message to a queue-mode Receiver(copy=False) read with recv_many (each payload "
        "handed over as a memoryview of the receiver's buffer); payloads above 1 MiB in 1 MiB chunks")
SEND_TIMEOUT = 30.0


def serve(inbox) -> None:
    with copydata.Receiver(copy=False) as receiver:
        inbox.ready(str(receiver.hwnd))
        while not inbox.finished:
            try:
                batch = receiver.recv_many(1024, timeout=inbox.wait_slice())
            except copydata.RecvTimeout:
                continue
            for message in batch:
                inbox.feed(message.data)
            # Let go of what was read before waiting for more: a Sender's large messages are
            # read in its shared memory, and it writes there again once they are freed.
            batch = message = None


@contextmanager
def connect(address: str) -> Iterator[Callable[[memoryview], None]]:
    hwnd = int(address)

    def send_one(message: memoryview) -> None:
        for chunk in chunks(message, CHUNK_SIZE):
            copydata.send(hwnd, chunk, timeout=SEND_TIMEOUT)

    yield send_one
