"""Limits, defaults, flags, refusal reasons and answer codes: the numbers every module shares.

A leaf: it imports nothing of copydata's but the C core, whose header is where the numbers
that cross the wire come from.
"""

from __future__ import annotations

import enum

from ._core import lib

MAX_MESSAGE_SIZE = 2_000_000
"""The largest payload one WM_COPYDATA carries by default, on both sides. Wine 8.0 breaks on
cross-process messages of 2 MiB and more, so the default stays under that everywhere."""

# Receiver
DEFAULT_MAX_QUEUE_MESSAGES = 100_000
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH_SIZE = 256
DEFAULT_MAX_TRANSFER_SIZE = 64 * 1024 * 1024
DEFAULT_PART_TIMEOUT = 10.0
DEFAULT_REPLY_TIMEOUT = 5.0

# send, Sender, request
DEFAULT_TIMEOUT = 5.0
"""Seconds ``send``, ``request`` and a ``Sender`` wait for an answer by default."""
DEFAULT_MAX_BATCH_BYTES = 8 << 20
DEFAULT_LINGER = 0.005
DEFAULT_CHUNK_SIZE = 1 << 20
DEFAULT_SHM_THRESHOLD = 64 << 10

#: Waiting without a limit, in the milliseconds Win32 waits take.
WAIT_FOREVER_MS = lib.CD_WAIT_FOREVER

#: The longest receiver name or channel name, in characters.
MAX_NAME_LENGTH = lib.CD_MAX_NAME_LENGTH

# Keys (Receiver, Sender, send and request with key=...)
MIN_KEY_SIZE = lib.CD_MIN_KEY_SIZE
MAX_KEY_SIZE = lib.CD_MAX_KEY_SIZE


# The wire (csrc/copydata.h, docs/protocol.md): frame kinds and the sizes of their headers.
ENVELOPE_HEADER_SIZE = lib.CD_ENVELOPE_HEADER_SIZE
BATCH_RECORD_HEADER_SIZE = lib.CD_BATCH_RECORD_HEADER_SIZE
PART_HEADER_SIZE = lib.CD_PART_HEADER_SIZE
KIND_BATCH = lib.CD_KIND_BATCH
KIND_PART = lib.CD_KIND_PART
KIND_SECTION = lib.CD_KIND_SECTION
NO_CODEC = lib.CD_NO_CODEC
# Sections: the namespace of their names, their header's secret, where a Sender's halves begin,
# and how long a receiver remembers a ring unused.
SECTION_PREFIX = "Local\\copydata.v1.shm."
SECTION_SECRET_SIZE = lib.CD_SECTION_SECRET_SIZE
SECTION_DATA_OFFSET = lib.CD_SECTION_DATA_OFFSET
RING_IDLE_MS = lib.CD_RING_IDLE_MS


class SendFlags(enum.IntFlag):
    """SendMessageTimeoutW's flags (winuser.h), for ``send(flags=...)``."""

    NORMAL = 0x0000
    BLOCK = 0x0001
    ABORTIFHUNG = 0x0002
    NOTIMEOUTIFNOTHUNG = 0x0008
    ERRORONEXIT = 0x0020


SMTO_NORMAL = SendFlags.NORMAL
SMTO_BLOCK = SendFlags.BLOCK
SMTO_ABORTIFHUNG = SendFlags.ABORTIFHUNG
SMTO_NOTIMEOUTIFNOTHUNG = SendFlags.NOTIMEOUTIFNOTHUNG
SMTO_ERRORONEXIT = SendFlags.ERRORONEXIT


class Reason(str, enum.Enum):
    """Why a receiver refused or dropped a message: ``Refusal.reason`` (a str, so it compares
    equal to its value) and the ``refused_*`` count of [`ReceiverStats`][copydata.ReceiverStats] that grew."""

    TOO_LARGE = "too_large"
    QUEUE_FULL = "queue_full"
    MALFORMED = "malformed"
    CLOSING = "closing"
    PARTS_IN_SYNC_MODE = "parts_in_sync_mode"
    SECTION = "section"
    UNAUTHENTICATED = "unauthenticated"
    REPLAYED = "replayed"
    INCOMPLETE = "incomplete"
    PICKLE = "pickle"
    UNDECODABLE = "undecodable"

    def __str__(self) -> str:
        return self.value


#: The C core's reason codes (enum cd_reason), each with its Reason.
REASON_CODES = {
    lib.CD_REASON_TOO_LARGE: Reason.TOO_LARGE,
    lib.CD_REASON_QUEUE_FULL: Reason.QUEUE_FULL,
    lib.CD_REASON_MALFORMED: Reason.MALFORMED,
    lib.CD_REASON_CLOSING: Reason.CLOSING,
    lib.CD_REASON_PARTS_IN_SYNC_MODE: Reason.PARTS_IN_SYNC_MODE,
    lib.CD_REASON_SECTION: Reason.SECTION,
    lib.CD_REASON_UNAUTHENTICATED: Reason.UNAUTHENTICATED,
    lib.CD_REASON_REPLAYED: Reason.REPLAYED,
    lib.CD_REASON_INCOMPLETE: Reason.INCOMPLETE,
    lib.CD_REASON_PICKLE: Reason.PICKLE,
    lib.CD_REASON_UNDECODABLE: Reason.UNDECODABLE,
}
REFUSAL_REASONS = tuple(reason.value for reason in Reason)
"""Every ``Refusal.reason``: the ``refused_*`` counts of [`ReceiverStats`][copydata.ReceiverStats],
plus ``"incomplete"`` (``dropped_incomplete``), ``"pickle"`` (``refused_pickle``) and
``"undecodable"`` (``undecodable``)."""


class Answer(enum.IntEnum):
    """What a copydata receiver answers a frame (the LRESULT of its WM_COPYDATA), beside 0
    (refused: offer it again) and 1 (taken). See docs/protocol.md."""

    REFUSED = 0
    TAKEN = 1
    SECTION_KEPT = lib.CD_ANSWER_SECTION_KEPT
    NO_PARTS = lib.CD_ANSWER_NO_PARTS
    LEASED = lib.CD_ANSWER_LEASED
    NEVER_FITS = lib.CD_ANSWER_NEVER_FITS
    LEASED_RING = lib.CD_ANSWER_LEASED_RING
