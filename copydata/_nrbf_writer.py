"""Writing plain Python values as a BinaryFormatter stream ([MS-NRBF]) that .NET deserializes.

The records are those .NET's own BinaryFormatter writes: a header naming object 1 as the root,
the root's record, then every object it refers to, each once, as a record of its own (a member
or element that is an object is a reference to it), and MessageEnd. Strings and value types
(primitives, Guid) go in place. So shared objects stay shared and cycles end, and the writer
never recurses.

    str                       String
    bool, int, float          Boolean; Int32, else Int64; Double (boxed, when alone or in an object slot)
    decimal.Decimal           Decimal (at most 28 decimals, |mantissa| < 2**96)
    datetime.datetime         DateTime: naive -> Unspecified, aware -> Utc (converted)
    datetime.timedelta        TimeSpan
    uuid.UUID                 Guid
    bytes, bytearray, memoryview   Byte[]
    list, tuple               String[] when all are str, a primitive array when all are one
                              primitive type, Object[] otherwise
    dict                      Hashtable
    DotNetObject              the class it names, members typed from their values
    None                      null (but not as the whole message: BinaryFormatter has no such stream)
"""

from __future__ import annotations

import datetime
import decimal
import struct
import uuid
from collections import deque
from typing import Any, Optional

from ._errors import CodecError
from ._nrbf_format import (DOTNET_EPOCH, FIXED, KIND_UTC, MAPPED_GENERIC_TYPES, MAPPED_SYSTEM_TYPES, BinaryType,
                           DotNetObject, PrimitiveType, RecordType)

SENDABLE = ("str, bool, int, float, decimal.Decimal, bytes, None, datetime.datetime, datetime.timedelta, "
            "uuid.UUID, lists and tuples of these, dicts, and copydata.DotNetObject")

_HEADER = struct.Struct("<BiiII")
_ID = struct.Struct("<i")
_MICROSECOND = datetime.timedelta(microseconds=1)
_UTC = datetime.timezone.utc
_HASHTABLE = "System.Collections.Hashtable"
_HASHTABLE_LOAD_FACTOR = 0.72


def _primitives(*members: tuple[str, int]) -> tuple:
    """Member types (name, (BinaryType.PRIMITIVE, code)), as ``Writer.instance`` takes them."""
    return tuple((name, (BinaryType.PRIMITIVE, code)) for name, code in members)


# The members of the .NET classes the writer writes itself, as .NET's own BinaryFormatter writes them.
_HASHTABLE_MEMBERS = (*_primitives(("LoadFactor", PrimitiveType.SINGLE), ("Version", PrimitiveType.INT32)),
                      ("Comparer", (BinaryType.SYSTEM_CLASS, "System.Collections.IComparer")),
                      ("HashCodeProvider", (BinaryType.SYSTEM_CLASS, "System.Collections.IHashCodeProvider")),
                      *_primitives(("HashSize", PrimitiveType.INT32)),
                      ("Keys", (BinaryType.OBJECT_ARRAY, None)), ("Values", (BinaryType.OBJECT_ARRAY, None)))
_GUID_MEMBERS = _primitives(("_a", PrimitiveType.INT32), ("_b", PrimitiveType.INT16), ("_c", PrimitiveType.INT16),
                            *((name, PrimitiveType.BYTE) for name in ("_d", "_e", "_f", "_g", "_h", "_i", "_j", "_k")))
_DECIMAL_MEMBERS = _primitives(*((name, PrimitiveType.INT32) for name in ("flags", "hi", "lo", "mid")))
_DATETIME_MEMBERS = _primitives(("ticks", PrimitiveType.INT64), ("dateData", PrimitiveType.UINT64))
_TIMESPAN_MEMBERS = _primitives(("_ticks", PrimitiveType.INT64))
_GUID = struct.Struct("<ihh8B")
_BOXED_NAMES: dict[int, str] = {PrimitiveType.BOOLEAN: "System.Boolean", PrimitiveType.INT32: "System.Int32",
                                PrimitiveType.INT64: "System.Int64", PrimitiveType.DOUBLE: "System.Double"}
_BYTES_LIKE = (bytes, bytearray, memoryview)


def text(value: str) -> bytes:
    """A length-prefixed string: its UTF-8 length, 7 bits a byte, then the UTF-8."""
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise CodecError(f"a str holds a lone surrogate at index {error.start}, which .NET cannot read") from None
    prefix = bytearray()
    length = len(raw)
    while length >= 0x80:
        prefix.append(length & 0x7F | 0x80)
        length >>= 7
    prefix.append(length)
    return bytes(prefix) + raw


def primitive_code(value: Any) -> Optional[int]:
    """The primitive type a Python value is written as, or None when it is not a primitive."""
    kind = type(value)
    if kind is bool:
        return PrimitiveType.BOOLEAN
    if isinstance(value, int):
        return integer_code(value, value)
    if isinstance(value, float):
        return PrimitiveType.DOUBLE
    if isinstance(value, decimal.Decimal):
        return PrimitiveType.DECIMAL
    if isinstance(value, datetime.datetime):
        return PrimitiveType.DATETIME
    if isinstance(value, datetime.timedelta):
        return PrimitiveType.TIMESPAN
    return None


def integer_code(low: int, high: int) -> int:
    """Int32 when ``low`` to ``high`` fit in one, else Int64; CodecError past that."""
    if -2**31 <= low and high < 2**31:
        return PrimitiveType.INT32
    if -2**63 <= low and high < 2**63:
        return PrimitiveType.INT64
    culprit = low if low < -2**63 else high
    raise CodecError(f"{culprit} does not fit in an Int64, the largest integer the nrbf codec writes")


def decimal_parts(value: decimal.Decimal) -> tuple[int, int, int]:
    """(sign, mantissa, scale) of a Decimal that .NET's Decimal holds exactly; else CodecError."""
    if not value.is_finite():
        raise CodecError(f"{value} has no .NET Decimal")
    sign, digits, exponent = value.as_tuple()
    mantissa = int("".join(map(str, digits)) or "0") * 10 ** max(int(exponent), 0)
    scale = -min(int(exponent), 0)
    if scale > 28 or mantissa >= 1 << 96:
        raise CodecError(f"{value} is outside .NET Decimal's range (at most 28 decimals, |mantissa| < 2**96)")
    return sign, mantissa, scale


def datetime_data(value: datetime.datetime) -> int:
    """A DateTime's 64 bits: its ticks and, in the top two, its kind (naive: Unspecified; aware: Utc)."""
    kind = 0
    if value.tzinfo is not None and value.utcoffset() is not None:
        kind = KIND_UTC
        try:
            value = value.astimezone(_UTC)
        except OverflowError:
            raise CodecError(f"{value} in UTC is outside .NET DateTime's range") from None
    ticks = (value.replace(tzinfo=None) - DOTNET_EPOCH) // _MICROSECOND * 10
    return ticks | kind << 62


def timespan_ticks(value: datetime.timedelta) -> int:
    ticks = value // _MICROSECOND * 10
    if not -2**63 <= ticks < 2**63:
        raise CodecError(f"{value} is outside .NET TimeSpan's range")
    return ticks


def primitive_bytes(code: int, value: Any) -> bytes:
    if code == PrimitiveType.DECIMAL:
        sign, mantissa, scale = decimal_parts(value)
        digits = str(mantissa).rjust(scale + 1, "0")
        body = digits[:len(digits) - scale] + ("." + digits[len(digits) - scale:] if scale else "")
        return text(("-" if sign else "") + body)
    if code == PrimitiveType.DATETIME:
        value = datetime_data(value)
    elif code == PrimitiveType.TIMESPAN:
        value = timespan_ticks(value)
    return struct.pack("<" + FIXED[code], value)


def array_type(values: Any) -> tuple[int, int]:
    """How a list or tuple is written: (BinaryType.STRING_ARRAY, 0), (BinaryType.PRIMITIVE_ARRAY, its
    primitive type) or (BinaryType.OBJECT_ARRAY, 0)."""
    types = {type(item) for item in values}
    if len(types) != 1:
        return BinaryType.OBJECT_ARRAY, 0
    if types == {str}:
        return BinaryType.STRING_ARRAY, 0
    first = next(iter(values))
    if isinstance(first, int) and type(first) is not bool:  # Int32[] if all fit, else Int64[]
        return BinaryType.PRIMITIVE_ARRAY, integer_code(min(values), max(values))
    code = primitive_code(first)  # the others are of the same type
    return (BinaryType.OBJECT_ARRAY, 0) if code is None else (BinaryType.PRIMITIVE_ARRAY, code)


def _hashtable_size(count: int) -> int:
    """A prime above count / load factor, as Hashtable keeps (its buckets, rebuilt on the .NET side)."""
    size = max(3, int(count / _HASHTABLE_LOAD_FACTOR) + 1)
    while any(size % divisor == 0 for divisor in range(2, int(size ** 0.5) + 1)):
        size += 1
    return size


class _HashtableArray(list):
    """Keys or Values of a dict: always an Object[], whatever they hold."""


class Writer:
    def __init__(self) -> None:
        self.out = bytearray()
        self.next_id = 1
        self.ids: dict[int, int] = {}          # id() of a written or queued object -> its object id
        self.keep: list = []                   # ... kept alive, so that id() stays unique
        self.strings: dict[str, int] = {}
        self.pending: deque = deque()          # (object id, object) to write as records of their own
        self.libraries: dict[str, int] = {}
        self.classes: dict[tuple, int] = {}    # a class's description -> the object that first carried it

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def stream(self, root: Any) -> bytes:
        if root is None:
            raise CodecError("None cannot be a whole BinaryFormatter message (.NET's Serialize(null) "
                             "throws): send it inside a list, a dict or a DotNetObject")
        self.out += _HEADER.pack(0, 1, -1, 1, 0)
        if type(root) is str:
            self.out += bytes([RecordType.OBJECT_STRING]) + _ID.pack(self.new_id()) + text(root)
        elif self.is_reference(root):
            self.reference_id(root)
        else:
            self.boxed(root, self.new_id())
        while self.pending:
            self.record(*self.pending.popleft())
        self.out.append(RecordType.MESSAGE_END)
        return bytes(self.out)

    # -- objects written as records of their own --

    @staticmethod
    def is_reference(value: Any) -> bool:
        return isinstance(value, (list, tuple, dict, DotNetObject) + _BYTES_LIKE)

    def reference_id(self, value: Any) -> int:
        """The object id of ``value``, queued to be written if it is new."""
        key = id(value)
        if key not in self.ids:
            self.ids[key] = self.new_id()
            self.keep.append(value)
            self.pending.append((self.ids[key], value))
        return self.ids[key]

    def record(self, object_id: int, value: Any) -> None:
        if isinstance(value, _BYTES_LIKE):
            data = memoryview(value).cast("B")
            self.out += bytes([RecordType.ARRAY_SINGLE_PRIMITIVE]) + _ID.pack(object_id) + _ID.pack(len(data))
            self.out += bytes([PrimitiveType.BYTE]) + data
        elif isinstance(value, (list, tuple)):
            self.array(object_id, value)
        elif isinstance(value, dict):
            self.hashtable(object_id, value)
        else:
            if value.library is None and (value.type_name in MAPPED_SYSTEM_TYPES
                                          or value.type_name.startswith(MAPPED_GENERIC_TYPES)):
                raise CodecError(f"a DotNetObject cannot stand for {value.type_name}: send the Python value "
                                 "(int, float, Decimal, datetime, UUID, list, dict, ...) instead")
            self.instance(object_id, value.type_name, value.library, list(value.items()))

    def array(self, object_id: int, values: Any) -> None:
        kind, code = (BinaryType.OBJECT_ARRAY, 0) if isinstance(values, _HashtableArray) else array_type(values)
        length = _ID.pack(len(values))
        if kind == BinaryType.PRIMITIVE_ARRAY:
            self.out += bytes([RecordType.ARRAY_SINGLE_PRIMITIVE]) + _ID.pack(object_id) + length + bytes([code])
            if code == PrimitiveType.DECIMAL:  # not of fixed size
                self.out += b"".join(primitive_bytes(code, item) for item in values)
            else:
                if code == PrimitiveType.DATETIME:
                    values = [datetime_data(item) for item in values]
                elif code == PrimitiveType.TIMESPAN:
                    values = [timespan_ticks(item) for item in values]
                self.out += struct.pack(f"<{len(values)}{FIXED[code]}", *values)
        elif kind == BinaryType.STRING_ARRAY:
            self.out += bytes([RecordType.ARRAY_SINGLE_STRING]) + _ID.pack(object_id) + length
            for item in values:
                self.string(item)
        else:
            self.out += bytes([RecordType.ARRAY_SINGLE_OBJECT]) + _ID.pack(object_id) + length
            nulls = 0
            for item in values:
                if item is None:
                    nulls += 1
                    continue
                if nulls:
                    self.nulls(nulls)
                    nulls = 0
                self.object_slot(item)
            if nulls:
                self.nulls(nulls)

    def nulls(self, count: int) -> None:
        if count == 1:
            self.out.append(RecordType.OBJECT_NULL)
        elif count < 256:
            self.out += bytes([RecordType.OBJECT_NULL_MULTIPLE_256, count])
        else:
            self.out += bytes([RecordType.OBJECT_NULL_MULTIPLE]) + _ID.pack(count)

    def hashtable(self, object_id: int, table: dict) -> None:
        if any(key is None for key in table):
            raise CodecError("a Hashtable cannot have a None key")
        keys, values = _HashtableArray(table), _HashtableArray(table.values())
        members = [("LoadFactor", _HASHTABLE_LOAD_FACTOR), ("Version", len(table)), ("Comparer", None),
                   ("HashCodeProvider", None), ("HashSize", _hashtable_size(len(table))),
                   ("Keys", keys), ("Values", values)]
        self.instance(object_id, _HASHTABLE, None, members, _HASHTABLE_MEMBERS)

    def boxed(self, value: Any, object_id: int) -> None:
        """A value type as a record of its own (the whole message, or in place in an object slot)."""
        if isinstance(value, uuid.UUID):
            self.instance(object_id, "System.Guid", None, list(zip((name for name, _ in _GUID_MEMBERS),
                                                                   _GUID.unpack(value.bytes_le))), _GUID_MEMBERS)
            return
        code = primitive_code(value)
        if code is None:
            raise TypeError(f"the nrbf codec sends {SENDABLE}, not {type(value).__name__}")
        if code == PrimitiveType.DECIMAL:
            sign, mantissa, scale = decimal_parts(value)
            words = [(mantissa >> shift) & 0xFFFFFFFF for shift in (64, 0, 32)]
            flags = scale << 16 | sign << 31
            members = list(zip(("flags", "hi", "lo", "mid"), [_signed(word) for word in [flags, *words]]))
            self.instance(object_id, "System.Decimal", None, members, _DECIMAL_MEMBERS)
        elif code == PrimitiveType.DATETIME:
            data = datetime_data(value)
            members = [("ticks", data & ((1 << 62) - 1)), ("dateData", data)]
            self.instance(object_id, "System.DateTime", None, members, _DATETIME_MEMBERS, raw=True)
        elif code == PrimitiveType.TIMESPAN:
            self.instance(object_id, "System.TimeSpan", None, [("_ticks", timespan_ticks(value))], _TIMESPAN_MEMBERS,
                          raw=True)
        else:
            name = _BOXED_NAMES[code]
            self.instance(object_id, name, None, [("m_value", value)], _primitives(("m_value", code)))

    # -- classes --

    def member_type(self, value: Any) -> tuple[int, Any]:
        if value is None:
            return BinaryType.OBJECT, None
        if type(value) is str:
            return BinaryType.STRING, None
        if isinstance(value, uuid.UUID):
            return BinaryType.SYSTEM_CLASS, "System.Guid"
        if isinstance(value, _BYTES_LIKE):
            return BinaryType.PRIMITIVE_ARRAY, 2
        if isinstance(value, (list, tuple)):
            return array_type(value)
        if isinstance(value, dict):
            return BinaryType.SYSTEM_CLASS, _HASHTABLE
        if isinstance(value, DotNetObject):
            if value.library is None:
                return BinaryType.SYSTEM_CLASS, value.type_name
            return BinaryType.CLASS, (value.type_name, value.library)
        code = primitive_code(value)
        if code is None:
            raise TypeError(f"the nrbf codec sends {SENDABLE}, not {type(value).__name__}")
        return BinaryType.PRIMITIVE, code

    def library_id(self, name: str) -> int:
        if name not in self.libraries:
            self.libraries[name] = self.new_id()
            self.out += bytes([RecordType.BINARY_LIBRARY]) + _ID.pack(self.libraries[name]) + text(name)
        return self.libraries[name]

    def instance(self, object_id: int, type_name: str, library: Optional[str], members: list,
                 types: Optional[tuple] = None, raw: bool = False) -> None:
        """A class record: ClassWithId when an earlier record described the same class and member
        types, else the class with its members and their types. ``raw``: the values are already
        the integers the primitive members hold."""
        if types is None:
            types = tuple((name, self.member_type(value)) for name, value in members)
        key = (type_name, library, types)
        if key in self.classes:
            self.out += bytes([RecordType.CLASS_WITH_ID]) + _ID.pack(object_id) + _ID.pack(self.classes[key])
        else:
            for _, (kind, info) in types:
                if kind == BinaryType.CLASS:
                    self.library_id(info[1])
            own_library = self.library_id(library) if library is not None else None
            self.classes[key] = object_id
            if library is None:
                self.out.append(RecordType.SYSTEM_CLASS_WITH_MEMBERS_AND_TYPES)
            else:
                self.out.append(RecordType.CLASS_WITH_MEMBERS_AND_TYPES)
            self.out += _ID.pack(object_id) + text(type_name) + _ID.pack(len(types))
            for name, _ in types:
                self.out += text(name)
            self.out += bytes(kind for _, (kind, _) in types)
            for _, (kind, info) in types:
                if kind in (BinaryType.PRIMITIVE, BinaryType.PRIMITIVE_ARRAY):
                    self.out.append(info)
                elif kind == BinaryType.SYSTEM_CLASS:
                    self.out += text(info)
                elif kind == BinaryType.CLASS:
                    self.out += text(info[0]) + _ID.pack(self.libraries[info[1]])
            if own_library is not None:
                self.out += _ID.pack(own_library)
        for (_, value), (_, (kind, info)) in zip(members, types):
            if kind == BinaryType.PRIMITIVE:
                self.out += struct.pack("<" + FIXED[info], value) if raw else primitive_bytes(info, value)
            elif kind == BinaryType.STRING:
                self.string(value)
            elif value is None:
                self.out.append(RecordType.OBJECT_NULL)
            elif isinstance(value, uuid.UUID):
                self.boxed(value, self.new_id())
            else:
                self.out += bytes([RecordType.MEMBER_REFERENCE]) + _ID.pack(self.reference_id(value))

    # -- values in place --

    def string(self, value: str) -> None:
        if value in self.strings:
            self.out += bytes([RecordType.MEMBER_REFERENCE]) + _ID.pack(self.strings[value])
        else:
            self.strings[value] = self.new_id()
            self.out += bytes([RecordType.OBJECT_STRING]) + _ID.pack(self.strings[value]) + text(value)

    def object_slot(self, value: Any) -> None:
        """An element of an Object[]: a boxed primitive, a string, a Guid in place, or a reference."""
        if type(value) is str:
            self.string(value)
        elif self.is_reference(value):
            self.out += bytes([RecordType.MEMBER_REFERENCE]) + _ID.pack(self.reference_id(value))
        elif isinstance(value, uuid.UUID):
            self.boxed(value, self.new_id())
        else:
            code = primitive_code(value)
            if code is None:
                raise TypeError(f"the nrbf codec sends {SENDABLE}, not {type(value).__name__}")
            self.out += bytes([RecordType.MEMBER_PRIMITIVE_TYPED, code]) + primitive_bytes(code, value)


def _signed(word: int) -> int:
    return word - (1 << 32) if word >= 1 << 31 else word


def encode(value: Any) -> bytes:
    """``value`` as a BinaryFormatter stream. TypeError for a type it cannot send, CodecError
    for a value outside the .NET type's range."""
    return Writer().stream(value)
