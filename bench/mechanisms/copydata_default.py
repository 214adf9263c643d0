"""copydata.Sender into a Receiver's on_message, both with their defaults: what most programs run."""

from __future__ import annotations

from mechanisms.copydata_many_callback import serve  # noqa: F401  (the same receiving end)
from mechanisms.copydata_sender import COUNT_FACTOR, ROUND_TRIP, connect  # noqa: F401  (the same sending end)

LABEL = "copydata Sender → on_message (defaults)"
NOTE = ("copydata.Sender.send per message and a Receiver(on_message=...), both with their defaults "
        "(linger 5 ms; each payload copied into bytes): the path most programs take")
