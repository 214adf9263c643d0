"""pyzmq REQ/REP over TCP loopback (127.0.0.1): one request and a 1-byte reply per message."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

LABEL = "pyzmq REQ/REP tcp"
NOTE = "pyzmq REQ/REP on tcp://127.0.0.1, zero-copy send and recv (copy=False), 1-byte reply"
ACK = b"\x01"
TIMEOUT_MS = 30_000


def unavailable() -> str | None:
    try:
        import zmq  # noqa: F401
    except ImportError:
        return "pyzmq is not installed"
    return None


def serve(inbox) -> None:
    import zmq

    with zmq.Context() as context, context.socket(zmq.REP) as socket:
        socket.linger = 0
        port = socket.bind_to_random_port("tcp://127.0.0.1")
        inbox.ready(f"tcp://127.0.0.1:{port}")
        # A blocking recv with a timeout: under Wine, poll() then recv() measured about 2.7 ms
        # a round trip against 1 ms for this (one run each, on a busy machine).
        socket.rcvtimeo = 250  # ms: the loop looks at the deadline again after that
        while not inbox.finished:
            try:
                frame = socket.recv(copy=False)
            except zmq.Again:
                continue
            inbox.feed(frame.buffer)
            socket.send(ACK)


@contextmanager
def connect(address: str) -> Iterator[Callable[[memoryview], None]]:
    import zmq

    with zmq.Context() as context, context.socket(zmq.REQ) as socket:
        socket.linger = 0
        socket.sndtimeo = socket.rcvtimeo = TIMEOUT_MS
        socket.connect(address)

        def send_one(message: memoryview) -> None:
            socket.send(message, copy=False)
            socket.recv(copy=False)

        yield send_one
