"""The envelope: a 16-byte header in front of a payload that is not plain bytes.

    offset  size  field
         0     4  magic 89 43 44 45 ("\\x89CDE": never the start of ASCII or UTF-8 text)
         4     1  version, 1
         5     1  codec: 0 bytes, 1 text, 2 utf-16, 3 json, 4 pickle, 5 nrbf, 255 custom
         6     1  kind: 0 message, 1 request, 2 reply, 3 failed reply (body: UTF-8 error text);
                  4 batch, 5 part, 6 section, 7 sealed are frames (csrc/copydata.h, _seal.py)
         7     1  flags, 0 (a version-1 reader takes anything else for no envelope)
         8     8  request id, little-endian (0 for a plain message)
        16        body

dwData stays the user's tag. A payload that is not a valid envelope is plain bytes, so a
plain ``send`` and foreign programs (which never produce one by chance) are unaffected.
"""

from __future__ import annotations

import struct
from typing import NamedTuple, Optional

MAGIC = b"\x89CDE"
VERSION = 1
HEADER = struct.Struct("<4sBBBBQ")

MESSAGE = 0
REQUEST = 1
REPLY = 2
FAILED_REPLY = 3
KINDS = (MESSAGE, REQUEST, REPLY, FAILED_REPLY)
KNOWN_CODECS = (0, 1, 2, 3, 4, 5, 255)


class Envelope(NamedTuple):
    codec_id: int
    kind: int
    request_id: int
    body: bytes


def header(codec_id: int, kind: int = MESSAGE, request_id: int = 0) -> bytes:
    """The 16-byte envelope header; the frames of csrc/copydata.h (kinds 4 to 7) start with it too."""
    return HEADER.pack(MAGIC, VERSION, codec_id, kind, 0, request_id)


def wrap(body: bytes, codec_id: int, kind: int = MESSAGE, request_id: int = 0) -> bytes:
    return header(codec_id, kind, request_id) + body


def unwrap(payload: bytes) -> Optional[Envelope]:
    """The envelope in ``payload``, or None when it is not a valid version-1 envelope."""
    if len(payload) < HEADER.size or not payload.startswith(MAGIC):
        return None
    _, version, codec_id, kind, flags, request_id = HEADER.unpack_from(payload)
    if version != VERSION or flags or kind not in KINDS or codec_id not in KNOWN_CODECS:
        return None
    if (kind == MESSAGE) != (request_id == 0):
        return None
    return Envelope(codec_id, kind, request_id, payload[HEADER.size:])
