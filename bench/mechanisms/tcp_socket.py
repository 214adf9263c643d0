"""A TCP socket on loopback (127.0.0.1): sendall, then a 1-byte answer."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Callable, Iterator

LABEL = "TCP loopback"
NOTE = "TCP socket on 127.0.0.1 (TCP_NODELAY), sendall + 1-byte answer; receiver recv_into a 1 MiB buffer"
ACK = b"\x01"
RECEIVE_BUFFER = 1 << 20


def serve(inbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        inbox.ready("%s:%d" % listener.getsockname()[:2])
        listener.settimeout(inbox.remaining())
        connection, _ = listener.accept()
        with connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffer = memoryview(bytearray(min(RECEIVE_BUFFER, inbox.size)))
            while not inbox.finished:
                connection.settimeout(inbox.wait_slice())
                try:
                    # Never read past the current message: the next one is not sent before
                    # this one is answered anyway.
                    received = connection.recv_into(buffer, min(len(buffer), inbox.missing))
                except socket.timeout:
                    continue
                if not received:
                    break  # the sender closed early
                if inbox.feed(buffer[:received]):
                    connection.sendall(ACK)


@contextmanager
def connect(address: str) -> Iterator[Callable[[memoryview], None]]:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def send_one(message: memoryview) -> None:
            connection.sendall(message)
            if connection.recv(1) != ACK:
                raise ConnectionError("the receiver closed the connection")

        yield send_one
