"""multiprocessing.connection (a named pipe on Windows): send_bytes, then a 1-byte answer."""

from __future__ import annotations

from contextlib import contextmanager
from multiprocessing.connection import Client, Listener
from typing import Callable, Iterator

LABEL = "multiprocessing.connection"
NOTE = "multiprocessing.connection Listener/Client (AF_PIPE named pipe), send_bytes + 1-byte answer"
ACK = b"\x01"


def serve(inbox) -> None:
    with Listener(family="AF_PIPE") as listener:
        inbox.ready(listener.address)
        with listener.accept() as connection:
            while not inbox.finished:
                if connection.poll(inbox.wait_slice()):
                    if inbox.feed(connection.recv_bytes()):
                        connection.send_bytes(ACK)


@contextmanager
def connect(address: str) -> Iterator[Callable[[memoryview], None]]:
    with Client(address, family="AF_PIPE") as connection:
        def send_one(message: memoryview) -> None:
            connection.send_bytes(message)
            connection.recv_bytes()

        yield send_one
