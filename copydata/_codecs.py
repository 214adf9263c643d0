"""Codecs: how Python objects become payload bytes and back.

A codec is any object with ``encode(obj) -> bytes`` and ``decode(data: bytes) -> object``.
The built-in ones are named by a string; "bytes" is the default and sends data unchanged.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Optional, Protocol, Union, runtime_checkable

from . import _nrbf, _nrbf_writer


@runtime_checkable
class Codec(Protocol):
    """What a codec is: ``encode`` turns an object into bytes and ``decode`` turns them back.
    A ``name`` attribute, if present, is what ``Message.codec`` shows."""

    def encode(self, obj: Any) -> bytes:
        """The payload for ``obj``.

        Parameters
        ----------
        obj
            What the sender passed as ``data``.

        Returns
        -------
        bytes
            The encoded bytes (any bytes-like object will do).

        Raises
        ------
        TypeError
            ``obj`` is of a kind the codec does not write (nothing is sent).
        """
        ...

    def decode(self, data: bytes) -> Any:
        """The object a payload holds.

        Parameters
        ----------
        data
            The payload, as it arrived (without copydata's envelope).

        Returns
        -------
        Any
            What ``encode`` was given. A receiver delivers a payload whose ``decode`` raises as
            ``bytes`` (``msg.codec == "bytes"``) and counts it in ``stats.undecodable``.
        """
        ...


class BytesCodec:
    """Raw bytes, unchanged: what every WM_COPYDATA program sends."""

    name = "bytes"
    codec_id = 0

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, str):
            raise TypeError("the bytes codec sends bytes-like objects, not str: "
                            "encode it, or pass codec='text' or codec='utf-16'")
        return obj if type(obj) is bytes else memoryview(obj).tobytes()

    def decode(self, data: bytes) -> bytes:
        return data


class TextCodec:
    """A str as UTF-8."""

    name = "text"
    codec_id = 1

    def encode(self, obj: Any) -> bytes:
        if not isinstance(obj, str):
            raise TypeError(f"the text codec sends str, not {type(obj).__name__}")
        return obj.encode("utf-8")

    def decode(self, data: bytes) -> str:
        return data.decode("utf-8")


class Utf16Codec:
    """A str as UTF-16LE, the convention of C# (Encoding.Unicode) and AutoHotkey senders.

    Those programs usually send the string's terminating NUL too: one trailing NUL is
    stripped on receipt, and ``terminate=True`` adds one on send.

    Parameters
    ----------
    terminate
        Add a terminating NUL to what ``encode`` writes, as C# and AutoHotkey expect.
    """

    name = "utf-16"
    codec_id = 2

    def __init__(self, terminate: bool = False) -> None:
        self.terminate = terminate

    def encode(self, obj: Any) -> bytes:
        if not isinstance(obj, str):
            raise TypeError(f"the utf-16 codec sends str, not {type(obj).__name__}")
        return obj.encode("utf-16-le") + (b"\0\0" if self.terminate else b"")

    def decode(self, data: bytes) -> str:
        if len(data) % 2:
            raise ValueError(f"UTF-16 text has an even number of bytes, not {len(data)}")
        if data.endswith(b"\0\0"):
            data = data[:-2]
        return data.decode("utf-16-le")


class JsonCodec:
    """Any JSON-serializable object, as UTF-8 JSON text."""

    name = "json"
    codec_id = 3

    def encode(self, obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


class PickleCodec:
    """Any picklable object. Unpickling runs code chosen by the sender: a receiver decodes
    pickle only when it was created with ``allow_pickle=True``."""

    name = "pickle"
    codec_id = 4

    def encode(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, data: bytes) -> Any:
        return pickle.loads(data)


class NrbfCodec:
    """.NET's BinaryFormatter format (MS-NRBF), read without running anything a stream names:
    what C# programs that use BinaryFormatter send and read (the manual's ".NET programs" page).

    ``decode`` gives plain Python values (and [`DotNetObject`][copydata.DotNetObject] for other
    classes), and raises [`CodecError`][copydata.CodecError] for a malformed stream or one past
    a bound. ``encode`` writes str, bool, int, float, Decimal, bytes, None, datetime,
    timedelta, UUID, lists, tuples, dicts and ``DotNetObject``; TypeError for anything else.

    Parameters
    ----------
    max_depth
        The deepest nesting of objects a stream may have.
    max_objects
        The most objects a stream may hold.
    max_items
        The most values in lists, dicts and members taken together (None: 4 per byte of the
        stream, and 65,536).

    Raises
    ------
    ValueError
        A bound that is not a positive int.
    """

    name = "nrbf"
    codec_id = 5

    def __init__(self, *, max_depth: int = _nrbf.DEFAULT_MAX_DEPTH, max_objects: int = _nrbf.DEFAULT_MAX_OBJECTS,
                 max_items: Optional[int] = None) -> None:
        for value, what in ((max_depth, "max_depth"), (max_objects, "max_objects"), (max_items, "max_items")):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{what} must be a positive int, not {value!r}")
        self.max_depth, self.max_objects, self.max_items = max_depth, max_objects, max_items

    def encode(self, obj: Any) -> bytes:
        return _nrbf_writer.encode(obj)

    def decode(self, data: bytes) -> Any:
        return _nrbf.decode(data, max_depth=self.max_depth, max_items=self.max_items, max_objects=self.max_objects)


CUSTOM_CODEC_ID = 255
BUILT_IN_TYPES = (BytesCodec, TextCodec, Utf16Codec, JsonCodec, PickleCodec, NrbfCodec)
BUILT_IN = {codec.name: codec for codec in (BytesCodec(), TextCodec(), Utf16Codec(), JsonCodec(), PickleCodec(),
                                            NrbfCodec())}
BY_ID = {codec.codec_id: codec for codec in BUILT_IN.values()}

CodecSpec = Union[str, Codec]


def resolve(spec: CodecSpec) -> Codec:
    """The codec that ``spec`` names (or ``spec`` itself, if it has encode and decode)."""
    if isinstance(spec, str):
        try:
            return BUILT_IN[spec]
        except KeyError:
            raise ValueError(f"unknown codec {spec!r}: use one of {', '.join(BUILT_IN)}, "
                             f"or an object with encode() and decode()") from None
    if callable(getattr(spec, "encode", None)) and callable(getattr(spec, "decode", None)):
        return spec
    raise TypeError(f"codec must be a name or an object with encode() and decode(), not {type(spec).__name__}")


def codec_id(codec: Codec) -> int:
    """The id an envelope carries for ``codec``: its own for built-in ones, else CUSTOM_CODEC_ID."""
    return codec.codec_id if isinstance(codec, BUILT_IN_TYPES) else CUSTOM_CODEC_ID


def name_of(codec: Codec) -> str:
    """The name ``Message.codec`` shows for ``codec``."""
    return getattr(codec, "name", None) or type(codec).__name__
