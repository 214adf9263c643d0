"""Sealed frames: a payload behind an HMAC-SHA256, for receivers with a key.

    offset  size  field
         0    16  envelope header: kind 7, codec 0, flags 0, request id 0
        16     8  sealer id: random, nonzero, one per Sender (one per process for send)
        24     8  counter: 1, 2, 3, ... per sealer
        32     8  time: the sealer's GetTickCount64() in ms (one clock for the whole machine)
        40    32  HMAC-SHA256 of: the target window (u64, low 32 bits), the tag (u64),
                  bytes 0 to 40 above, and the inner payload
        72        the inner payload: any payload a receiver without a key would take

All little-endian. A receiver with a key checks the MAC in C (Windows CNG) before it looks
at anything else, refuses a counter it has seen from that sealer (late counters are taken
once each, up to 64 behind the newest) and a time more than 60 s off its own clock.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import struct
import threading
from typing import Any

from . import _envelope, _native
from ._constants import MAX_KEY_SIZE, MIN_KEY_SIZE

KIND = 7
HEADER_SIZE = 72
_SIGNED = struct.Struct("<QQQ")  # sealer id, counter, time
_BOUND = struct.Struct("<QQ")    # target window, tag


def check_key(key: Any) -> bytes:
    """``key`` as bytes: 16 to 1024 bytes of secret that every party of a channel shares."""
    if isinstance(key, str) or not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes (for example secrets.token_bytes(32)), not {type(key).__name__}")
    key = bytes(key)
    if not MIN_KEY_SIZE <= len(key) <= MAX_KEY_SIZE:
        raise ValueError(f"key must be {MIN_KEY_SIZE} to {MAX_KEY_SIZE} bytes long; got "
                         f"{len(key)} (use secrets.token_bytes(32))")
    return key


def _mac(key: bytes, target: int, tag: int, signed: bytes, inner: Any) -> bytes:
    mac = hmac.new(key, _BOUND.pack(target & 0xFFFFFFFF, tag) + signed, hashlib.sha256)
    mac.update(inner)
    return mac.digest()


class Sealer:
    """Seals payloads with one key under one sealer id; safe to share between threads."""

    def __init__(self, key: bytes) -> None:
        self._key = check_key(key)
        self._sealer_id = secrets.randbits(64) | 1
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def seal(self, inner: Any, target: int, tag: int) -> bytes:
        """The sealed frame of ``inner`` (bytes-like) for window ``target`` and ``tag``."""
        with self._lock:
            counter = next(self._counter)
        signed = _envelope.header(0, KIND) + _SIGNED.pack(self._sealer_id, counter, _native.now_ms())
        return b"".join((signed, _mac(self._key, target, tag, signed, inner), inner))


def unseal(key: bytes, payload: bytes, target: int, tag: int) -> bytes | None:
    """The inner payload of a frame sealed with ``key`` for ``target`` and ``tag``, or None.

    Checks the MAC only (Python's own receivers check replay in C): for replies, which match
    one waiting request each and so can be taken only once anyway.
    """
    if not is_sealed(payload) or len(payload) < HEADER_SIZE:
        return None
    signed, mac, inner = payload[:40], payload[40:HEADER_SIZE], payload[HEADER_SIZE:]
    if not hmac.compare_digest(mac, _mac(key, target, tag, signed, inner)):
        return None
    return inner


def is_sealed(payload: bytes) -> bool:
    """Whether ``payload`` claims to be a sealed frame (whether or not it is a valid one)."""
    return len(payload) >= _envelope.HEADER.size and payload.startswith(_envelope.MAGIC) \
        and payload[4] == _envelope.VERSION and payload[6] == KIND


_sealers: dict[bytes, Sealer] = {}
_sealers_lock = threading.Lock()


def sealer_for(key: Any) -> Sealer:
    """This process's sealer for ``key``, shared by every send and request made with it."""
    key = check_key(key)
    with _sealers_lock:
        sealer = _sealers.get(key)
        if sealer is None:
            sealer = _sealers[key] = Sealer(key)
        return sealer
