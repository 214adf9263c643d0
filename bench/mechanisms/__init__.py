"""The mechanisms the benchmark compares, in table order: one module each.

A module describes one way to move a message from a sender process to a receiver process:

    LABEL = "short name for the table"
    NOTE = "one line for the notes under the table"          (optional)
    def unavailable() -> str | None                          (optional) why it is skipped

and either Python peers, run by bench/peer.py in two Windows Python processes:

    def serve(inbox: peer.Inbox) -> None
        open the receiving end, call inbox.ready(address), then inbox.feed(chunk) for every
        chunk that arrives until inbox.finished; acknowledge each message (or chunk) the way
        the mechanism does, so that the sender's loop is one request and one answer per message
    def connect(address: str) -> ContextManager[Callable[[memoryview], None]]
        the sending end: a function that sends one message and returns once it is acknowledged
    def send_all(address: str, payload: memoryview, count: int) -> None   (optional, instead)
        the sending end of a mechanism that takes many messages at once: sends ``count``
        messages, message i the payload with i stamped in its first 8 bytes (payload.stamp)
    ROUND_TRIP = False                                       (optional) for a mechanism that
        batches: its sends return before delivery, so only throughput is reported; leaving
        connect() must flush

or native peers built from bench/native/ by tools/winenv.py (same command-line protocol as peer.py):

    NATIVE = ("receiver.exe", "sender.exe")

or one native program that measures in a single process (no receiver):

    LOCAL = "program.exe"

To add a mechanism, add its module here and to MECHANISMS.
"""

from __future__ import annotations

import importlib
from types import ModuleType

MECHANISMS = [
    "native_wm_copydata",
    "copydata_send",
    "copydata_sender",
    "copydata_default",
    "copydata_many",
    "copydata_many_recv_many",
    "copydata_many_callback",
    "ctypes_wm_copydata",
    "pywin32_wm_copydata",
    "mp_connection",
    "tcp_socket",
    "zmq_tcp",
    "memcpy",
]
#: The mechanism every other one is compared with ("× C floor").
FLOOR = "native_wm_copydata"


def load(name: str) -> ModuleType:
    if name not in MECHANISMS:
        raise ValueError(f"unknown mechanism {name!r}; known: {', '.join(MECHANISMS)}")
    return importlib.import_module(f"{__name__}.{name}")


def unavailable(module: ModuleType) -> str | None:
    """Why ``module`` cannot run here, or None. Importing a missing package is caught here."""
    check = getattr(module, "unavailable", None)
    return check() if check else None
