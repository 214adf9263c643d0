"""What a receiver hands over: messages (one by one, or many in one MessageBatch), refusals and its counts."""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional

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
        """True when the sender waits for a reply (see [`Receiver.reply`][copydata.Receiver.reply])."""
        return self.request_id is not None


class Refusal(NamedTuple):
    """A message the receiver refused or dropped, as ``on_error`` hears of it."""

    reason: str
    """Why: a [`Reason`][copydata.Reason] (a str): one of [`REFUSAL_REASONS`][copydata.REFUSAL_REASONS]."""
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


class MessageBatch:
    """Messages taken together by [`Receiver.recv_batch`][copydata.Receiver.recv_batch], with no
    object per message; made by it, not by hand.

    Like a numpy structured array, or pyzmq's multipart frames, it keeps many values in one
    buffer: the messages' tags, senders, sizes and offsets as columns, each a read-only
    ``memoryview`` of unsigned 64-bit integers (format ``"Q"``), and their payloads back to
    back in ``data``. ``len(batch)`` is the number of messages; ``batch[i]`` is the
    ``i``-th payload (``bytes``, or with ``copy=False`` a read-only ``memoryview`` slice of
    ``data``), iteration goes through the payloads in arrival order, and ``items()``
    through ``(tag, payload)`` pairs.

    With numpy, ``numpy.frombuffer(batch.tags, numpy.uint64)`` is an array of the tags with no
    copy, and messages of one fixed size are ``numpy.frombuffer(batch.data, dtype)`` whole.

    Payloads are as they arrived: not decoded (a message sent with a codec other than
    ``"bytes"`` keeps its encoding; ``codec_ids`` says which), never unpickled.
    """

    __slots__ = ("tags", "senders", "offsets", "sizes", "codec_ids", "data", "_block", "_data_at", "_count",
                 "_copy")

    def __init__(self, block: Any, count: int, copy: bool) -> None:
        view = memoryview(block)
        columns = 8 * count
        self.tags = view[0:columns].cast("Q")
        """The messages' tags (``dwData``)."""
        self.senders = view[columns:2 * columns].cast("Q")
        """The window each sender named as its own (``wParam``), unverified."""
        self.offsets = view[2 * columns:3 * columns].cast("Q")
        """Where each payload begins in ``data``."""
        self.sizes = view[3 * columns:4 * columns].cast("Q")
        """Each payload's size in bytes."""
        self.codec_ids = view[4 * columns:4 * columns + 4 * count].cast("i")
        """Each payload's codec id (0: bytes; -1: a whole WM_COPYDATA, which says its own)."""
        self._data_at = (4 * columns + 4 * count + 7) & ~7
        self.data = view[self._data_at:]
        """Every payload, back to back (read-only)."""
        self._block = block
        self._count = count
        self._copy = copy

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> Any:
        if not -self._count <= index < self._count:
            raise IndexError(f"message {index} of a batch of {self._count}")
        index %= self._count
        start = self._data_at + self.offsets[index]
        if self._copy:
            return self._block[start:start + self.sizes[index]]
        return self.data[self.offsets[index]:self.offsets[index] + self.sizes[index]]

    def __iter__(self) -> Iterator[Any]:
        data, copy, block, data_at = self.data, self._copy, self._block, self._data_at
        for offset, size in zip(self.offsets, self.sizes):
            yield block[data_at + offset:data_at + offset + size] if copy else data[offset:offset + size]

    def items(self) -> Iterator[tuple[int, Any]]:
        """``(tag, payload)`` for each message, in order.

        Returns
        -------
        Iterator[tuple[int, Any]]
            The pairs, in arrival order.
        """
        return zip(self.tags, self)

    def __repr__(self) -> str:
        return f"<copydata.MessageBatch of {self._count} messages, {len(self.data)} bytes>"
