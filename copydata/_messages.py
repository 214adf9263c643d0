"""What a receiver hands over: messages, refusals and its counts."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

class Message(NamedTuple):
    """One received message."""

    tag: int
    """``dwData``: the sender's number for the kind of message."""
    data: Any
    """The payload: ``bytes`` (a copy), or what the codec decoded from it."""
    sender: int
    """``wParam``: the window the sender names as its own, 0 if none. Nothing verifies it."""
    codec: str = "bytes"
    """The codec that decoded ``data`` ("bytes" when it is the payload itself)."""
    request_id: Optional[int] = None
    """Set when the sender called ``copydata.request`` and waits for a reply."""

    @property
    def is_request(self) -> bool:
        """True when the sender waits for a reply (see :meth:`Receiver.reply`)."""
        return self.request_id is not None


class Refusal(NamedTuple):
    """A message the receiver refused or dropped, as ``on_error`` hears of it."""

    reason: str
    """Why: a :class:`~copydata.Reason` (a str): one of :data:`REFUSAL_REASONS`."""
    tag: int
    """The message's ``dwData``."""
    sender: int
    """Its ``wParam`` (unverified)."""
    size: int
    """Its size in bytes (for ``"incomplete"``, what had arrived of it)."""
    occurrences: int = 1
    """More than 1 when refusals of one reason were merged because ``on_error`` fell behind
    (tag and sender are then the first one's, size the sum)."""


class ReceiverStats(NamedTuple):
    """Counts since the receiver opened."""

    received_messages: int
    """Accepted into the queue by the window procedure (the sender was answered 1)."""
    received_bytes: int
    """Their payload bytes."""
    refused_messages: int
    """Answered 0: too large, queue full, malformed, or arriving while closing."""
    refused_bytes: int
    refused_too_large: int
    """Refused: above ``max_message_size``."""
    refused_queue_full: int
    """Refused: the queue held ``max_queue_messages`` or ``max_queue_bytes`` already."""
    refused_malformed: int
    """Refused: no COPYDATASTRUCT, or ``lpData`` NULL with a nonzero ``cbData``."""
    refused_closing: int
    """Refused: arrived while the receiver was closing."""
    refused_parts_in_sync_mode: int
    """Refused: a part frame (from a ``Sender`` with ``shm_threshold=None``) at a receiver in sync
    mode, which has no queue to put the parts together in."""
    refused_section: int
    """Refused: a section descriptor naming a section that is missing, not owned by this
    receiver's user, or smaller than the range it names."""
    refused_unauthenticated: int
    """Refused: at a receiver with a key, a message not sealed with that key (for this window
    and tag); at a receiver without one, a sealed message, which it cannot check."""
    refused_replayed: int
    """Refused by a receiver with a key: a sealed message it accepted before, one stamped more
    than 60 s away from its clock, or one from more fresh sealers than it keeps (4096)."""
    dropped_messages: int
    """Accepted, then discarded undelivered because the receiver was closed."""
    dropped_bytes: int
    """Their payload bytes (for a split message, what had arrived of it)."""
    dropped_incomplete: int
    """Split messages dropped because a part was missing for ``part_timeout`` seconds (or at close)."""
    queued_messages: int
    """Waiting to be delivered now."""
    queued_bytes: int
    """Their payload bytes."""
    assembling_messages: int
    """Split messages whose parts are still arriving."""
    assembling_bytes: int
    """The memory they hold."""
    pump_errors: int
    """Times GetMessageW failed and the window went on."""
    leased_messages: int
    """Large messages (from 1 MiB) of a ``Sender``'s shared memory queued where they lay there,
    with no copy: the sender writes there again only once they are freed (queue mode)."""
    ring_frames: int
    """Frames of a ``Sender`` taken as it announced them in its shared memory, with a posted
    message instead of a WM_COPYDATA round trip each (queue mode, no key)."""
    refused_pickle: int = 0
    """Pickled messages not delivered because the receiver does not allow pickle."""
    undecodable: int = 0
    """Payloads the codec could not decode (delivered as bytes with ``codec == "bytes"``), or that
    could not be read at all (dropped, and logged)."""
    stray_replies: int = 0
    """Replies that matched no waiting request (or, to a request made with a key, were not
    sealed with it)."""
