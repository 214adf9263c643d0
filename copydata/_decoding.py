"""What a receiver makes of a payload (decoded, an envelope opened, pickle refused), and how it
tells of trouble another process caused: counted, reported to on_error, and logged at most once
a second for each kind."""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Optional

from . import _codecs, _envelope, _native
from ._constants import NO_CODEC, Reason
from ._messages import Message, Refusal

logger = logging.getLogger("copydata")

# Warnings another process can cause: at most one a second of each kind per receiver, whatever it does.
_WARNING_INTERVAL = 1.0
_BYTES_CODEC_ID = _codecs.BytesCodec.codec_id
assert _native.BYTES_CODEC_ID == _BYTES_CODEC_ID  # the backend builds such records as Messages


class Decoding:
    """The part of a Receiver that decodes what arrives and reports what it cannot take; it
    reads the receiver's options and state below, set by Receiver.__init__."""

    _codec: _codecs.Codec
    _plain_bytes: bool
    _raw: bool
    _allow_pickle: bool
    _hwnd: int
    _state_lock: threading.Lock
    _counts: collections.Counter[str]
    _warned: dict[str, tuple[float, int]]
    _on_error: Optional[Callable[..., Any]]
    _native: _native.NativeReceiver

    def _send_reply(self, request: Message, value: object, failed: bool = False) -> None:
        raise NotImplementedError  # Receiver's: a request whose pickle was refused is answered

    def _decode(self, tag: int, payload: bytes | memoryview, sender: int,
                codec_id: int = NO_CODEC) -> tuple[int, Message] | None:
        """The kind and the message a payload carries, or None when it must not be delivered.

        ``codec_id`` is set for a record of a batch frame (unpacked in C): its body is
        encoded with the frame's codec and is never itself an envelope.
        """
        if codec_id == _BYTES_CODEC_ID:  # most records of a batch frame: nothing to decode
            return _envelope.MESSAGE, Message(tag, payload, sender)
        if type(payload) is not bytes:  # copy=False: the receiver's buffer, as a memoryview
            if codec_id == NO_CODEC and self._plain_bytes and (self._raw or payload[:4] != _envelope.MAGIC):
                return _envelope.MESSAGE, Message(tag, payload, sender)
            payload = bytes(payload)  # to be decoded: a copy is made anyway
        if codec_id != NO_CODEC:
            return self._open_envelope(tag, sender, _envelope.Envelope(codec_id, _envelope.MESSAGE, 0, payload))
        if not self._raw and payload.startswith(_envelope.MAGIC):
            envelope = _envelope.unwrap(payload)
            if envelope is not None:
                return self._open_envelope(tag, sender, envelope)
        if self._plain_bytes:
            return _envelope.MESSAGE, Message(tag, payload, sender)
        return _envelope.MESSAGE, self._decode_body(tag, payload, sender, self._codec, None)

    def _decode_safely(self, tag: int, payload: bytes | memoryview, sender: int, codec_id: int) -> tuple[int, Message] | None:
        """:meth:`_decode`, but a failure is counted and logged, never raised: whatever another
        process sends must not stop the dispatch thread or a recv."""
        try:
            return self._decode(tag, payload, sender, codec_id)
        except Exception:
            self._count("undecodable")
            self._report(Reason.UNDECODABLE, tag, sender, len(payload))
            self._warn("undecodable", f"could not decode a message (tag={tag}, {len(payload)} bytes); it is "
                                      f"dropped", exc_info=True)
            return None

    def _pickle_allowed(self, envelope: _envelope.Envelope) -> bool:
        return self._allow_pickle

    def _open_envelope(self, tag: int, sender: int, envelope: _envelope.Envelope) -> tuple[int, Message] | None:
        codec_id, kind, request_id, body = envelope
        request = request_id if kind != _envelope.MESSAGE else None
        if kind == _envelope.FAILED_REPLY:
            return kind, Message(tag, body.decode("utf-8", "replace"), sender, "text", request)
        if codec_id == _codecs.PickleCodec.codec_id and not self._pickle_allowed(envelope):
            self._count("refused_pickle")
            self._report(Reason.PICKLE, tag, sender, len(body))
            self._warn("pickle", f"refused a pickled message (tag={tag}, {len(body)} bytes, sender {sender:#x}): "
                       f"this receiver was not created with allow_pickle=True")
            if kind == _envelope.REQUEST:
                self._send_reply(Message(tag, None, sender, "pickle", request),
                                 "this receiver does not accept pickle", failed=True)
            return None
        if codec_id == _codecs.CUSTOM_CODEC_ID:
            if isinstance(self._codec, _codecs.BUILT_IN_TYPES):
                return kind, Message(tag, body, sender, "custom", request)
            return kind, self._decode_body(tag, body, sender, self._codec, request)
        return kind, self._decode_body(tag, body, sender, _codecs.BY_ID[codec_id], request)

    def _decode_body(self, tag: int, body: bytes, sender: int, codec: _codecs.Codec,
                     request_id: int | None) -> Message:
        try:
            return Message(tag, codec.decode(body), sender, _codecs.name_of(codec), request_id)
        except Exception as error:
            self._count("undecodable")
            self._report(Reason.UNDECODABLE, tag, sender, len(body))
            self._warn("undecodable", f"could not decode a message (tag={tag}, {len(body)} bytes) with the "
                       f"{_codecs.name_of(codec)} codec ({error}); it is delivered as bytes")
            return Message(tag, body, sender, "bytes", request_id)

    def _count(self, what: str) -> None:
        with self._state_lock:
            self._counts[what] += 1

    def _report(self, reason: Reason, tag: int, sender: int, size: int) -> None:
        """Tell on_error (on its own thread, in order with the refusals made in C)."""
        if self._on_error is not None:
            self._native.report(reason, tag, sender, size)

    def _report_errors(self) -> None:
        for refusals in self._native.refusals():
            for refusal in map(Refusal._make, refusals):
                try:
                    self._on_error(refusal)  # type: ignore[misc]
                except Exception:
                    logger.exception("on_error raised on %s; reporting goes on", refusal)

    def _warn(self, kind: str, text: str, *, level: int = logging.WARNING, exc_info: bool = False) -> None:
        """Logs ``text``, at most once a second for each ``kind`` of trouble: other processes can
        make a receiver warn (a message it cannot decode, a request whose reply window is gone),
        as often as they like. What was held back is counted in the next line of its kind."""
        now = time.monotonic()
        with self._state_lock:
            last, suppressed = self._warned.get(kind, (-_WARNING_INTERVAL, 0))
            if now - last < _WARNING_INTERVAL:
                self._warned[kind] = (last, suppressed + 1)
                return
            self._warned[kind] = (now, 0)
        more = f" ({suppressed} more like it held back)" if suppressed else ""
        logger.log(level, "receiver %#x %s%s", self._hwnd, text, more, exc_info=exc_info)
