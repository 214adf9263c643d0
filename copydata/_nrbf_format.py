"""The numbers of .NET's BinaryFormatter format ([MS-NRBF] 2.1.2), its primitives as Python
has them, and ``DotNetObject``: what ``_nrbf_parser``, ``_nrbf`` and ``_nrbf_writer`` share."""

from __future__ import annotations

import datetime
import decimal
import re
import struct
from reprlib import recursive_repr
from enum import IntEnum
from typing import Any, Iterator, Mapping, Optional, Union

from ._errors import CodecError

# --- the format's numbers (MS-NRBF 2.1.2) ----------------------------------------------------

class RecordType(IntEnum):
    HEADER = 0
    CLASS_WITH_ID = 1
    SYSTEM_CLASS_WITH_MEMBERS = 2
    CLASS_WITH_MEMBERS = 3
    SYSTEM_CLASS_WITH_MEMBERS_AND_TYPES = 4
    CLASS_WITH_MEMBERS_AND_TYPES = 5
    OBJECT_STRING = 6            # BinaryObjectString
    BINARY_ARRAY = 7
    MEMBER_PRIMITIVE_TYPED = 8
    MEMBER_REFERENCE = 9
    OBJECT_NULL = 10
    MESSAGE_END = 11
    BINARY_LIBRARY = 12
    OBJECT_NULL_MULTIPLE_256 = 13
    OBJECT_NULL_MULTIPLE = 14
    ARRAY_SINGLE_PRIMITIVE = 15
    ARRAY_SINGLE_OBJECT = 16
    ARRAY_SINGLE_STRING = 17
    METHOD_CALL = 21             # remoting: never read
    METHOD_RETURN = 22


TYPED_CLASS_RECORDS = frozenset((RecordType.SYSTEM_CLASS_WITH_MEMBERS_AND_TYPES,
                                 RecordType.CLASS_WITH_MEMBERS_AND_TYPES))
SYSTEM_CLASS_RECORDS = frozenset((RecordType.SYSTEM_CLASS_WITH_MEMBERS,
                                  RecordType.SYSTEM_CLASS_WITH_MEMBERS_AND_TYPES))
CLASS_RECORDS = TYPED_CLASS_RECORDS | SYSTEM_CLASS_RECORDS | {RecordType.CLASS_WITH_ID, RecordType.CLASS_WITH_MEMBERS}
ARRAY_RECORDS = frozenset((RecordType.BINARY_ARRAY, RecordType.ARRAY_SINGLE_PRIMITIVE, RecordType.ARRAY_SINGLE_OBJECT,
                           RecordType.ARRAY_SINGLE_STRING))
NULL_RUNS = frozenset((RecordType.OBJECT_NULL_MULTIPLE_256, RecordType.OBJECT_NULL_MULTIPLE))


class BinaryType(IntEnum):
    """How a member or an array element is typed (BinaryTypeEnumeration)."""
    PRIMITIVE = 0
    STRING = 1
    OBJECT = 2
    SYSTEM_CLASS = 3
    CLASS = 4
    OBJECT_ARRAY = 5
    STRING_ARRAY = 6
    PRIMITIVE_ARRAY = 7


class PrimitiveType(IntEnum):
    BOOLEAN = 1
    BYTE = 2
    CHAR = 3
    DECIMAL = 5
    DOUBLE = 6
    INT16 = 7
    INT32 = 8
    INT64 = 9
    SBYTE = 10
    SINGLE = 11
    TIMESPAN = 12
    DATETIME = 13
    UINT16 = 14
    UINT32 = 15
    UINT64 = 16


class ArrayShape(IntEnum):
    """BinaryArrayTypeEnumeration, less the shapes with lower bounds (3 to 5), which are refused."""
    SINGLE = 0
    JAGGED = 1
    RECTANGULAR = 2


#: The .NET names of the primitives, for messages.
PRIMITIVE_NAMES: dict[int, str] = {
                   PrimitiveType.BOOLEAN: "Boolean", PrimitiveType.BYTE: "Byte", PrimitiveType.CHAR: "Char",
                   PrimitiveType.DECIMAL: "Decimal", PrimitiveType.DOUBLE: "Double", PrimitiveType.INT16: "Int16",
                   PrimitiveType.INT32: "Int32", PrimitiveType.INT64: "Int64", PrimitiveType.SBYTE: "SByte",
                   PrimitiveType.SINGLE: "Single", PrimitiveType.TIMESPAN: "TimeSpan",
                   PrimitiveType.DATETIME: "DateTime",
                   PrimitiveType.UINT16: "UInt16", PrimitiveType.UINT32: "UInt32", PrimitiveType.UINT64: "UInt64"}
#: The fixed-size primitives, as struct formats (little-endian, as NRBF writes them); Char and
#: Decimal are not fixed (UTF-8, and a length-prefixed string).
FIXED: dict[int, str] = dict(zip((PrimitiveType.BOOLEAN, PrimitiveType.BYTE, PrimitiveType.SBYTE, PrimitiveType.INT16,
                  PrimitiveType.UINT16, PrimitiveType.INT32, PrimitiveType.UINT32, PrimitiveType.INT64,
                  PrimitiveType.UINT64, PrimitiveType.SINGLE, PrimitiveType.DOUBLE, PrimitiveType.TIMESPAN,
                  PrimitiveType.DATETIME), "?BbhHiIqQfdqQ"))
STRUCTS = {fmt: struct.Struct("<" + fmt) for fmt in set(FIXED.values())}
INTEGERS = frozenset(code for code, fmt in FIXED.items() if fmt in "BbhHiIqQ" and code not in
                     (PrimitiveType.TIMESPAN, PrimitiveType.DATETIME))

DOTNET_EPOCH = datetime.datetime(1, 1, 1)
MAX_TICKS = 3_155_378_975_999_999_999  # DateTime.MaxValue.Ticks
TICKS_MASK = (1 << 62) - 1
KIND_UTC = 1
_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,29}(\.[0-9]{1,28})?\Z")

DEFAULT_MAX_DEPTH = 500   # how deep the decoded objects may nest (the builder needs no stack for it)
MAX_NESTING = 64          # how deep records written in place may nest (the parser recurses on them)
DEFAULT_MAX_OBJECTS = 1_000_000


#: System classes the reader maps to Python values (when shaped as .NET writes them): the writer
#: writes those from the Python values, never from a DotNetObject of that name.
MAPPED_SYSTEM_TYPES = frozenset([f"System.{name}" for name in PRIMITIVE_NAMES.values()] + [
    "System.Guid", "System.Collections.Hashtable"])
MAPPED_GENERIC_TYPES = ("System.Collections.Generic.List`1[[", "System.Collections.Generic.Dictionary`2[[")


def items_budget(size: int) -> int:
    """The default bound on the slots a stream of ``size`` bytes may fill (list items, dict
    entries, members): 4 a byte and 65,536 more, so null runs and shared arrays cannot blow up."""
    return 4 * size + 65_536


# --- what a decoded class is ----------------------------------------------------------------

class DotNetObject(Mapping[str, Any]):
    """An instance of a .NET class, as its members: a read-only mapping of member names (as the
    stream spells them) to values, with the class's full name in ``type_name`` and its assembly
    in ``library`` (None for classes of the system library, mscorlib).

    Decoding gives one for every class the codec has no Python value for; encoding one sends an
    instance of that class (a ``[Serializable]`` class of the receiving program), each member
    typed from its Python value. Equal when type, library and members are equal.
    """

    __slots__ = ("type_name", "library", "_members")

    def __init__(self, type_name: str, members: Union[Mapping[str, Any], Any] = (),
                 library: Optional[str] = None) -> None:
        if not isinstance(type_name, str) or not type_name:
            raise TypeError("type_name must be a non-empty str, the class's full name (Namespace.Class)")
        if library is not None and not isinstance(library, str):
            raise TypeError(f"library must be an assembly name (str) or None, not {type(library).__name__}")
        self.type_name = type_name
        self.library = library
        self._members: dict[str, Any] = dict(members)
        for name in self._members:
            if not isinstance(name, str):
                raise TypeError(f"member names are str, not {type(name).__name__}")

    def __getitem__(self, name: str) -> Any:
        return self._members[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DotNetObject):
            return NotImplemented
        return (self.type_name, self.library) == (other.type_name, other.library) and self._members == other._members

    __hash__ = None  # type: ignore[assignment]  # equal by content, and its members may change while decoding

    @recursive_repr()
    def __repr__(self) -> str:
        library = f", library={self.library!r}" if self.library is not None else ""
        return f"DotNetObject({self.type_name!r}, {self._members!r}{library})"



def convert_primitive(code: int, value: Any) -> Any:
    """A fixed-size primitive as Python has it (TimeSpan and DateTime are ticks on the wire)."""
    if code == PrimitiveType.TIMESPAN:
        micro = abs(value) // 10  # ticks of 100 ns; timedelta keeps microseconds
        return datetime.timedelta(microseconds=micro if value >= 0 else -micro)
    if code == PrimitiveType.DATETIME:
        ticks, kind = value & TICKS_MASK, value >> 62
        if ticks > MAX_TICKS:
            raise CodecError(f"a DateTime has {ticks} ticks, past DateTime.MaxValue")
        moment = DOTNET_EPOCH + datetime.timedelta(microseconds=ticks // 10)
        return moment.replace(tzinfo=datetime.timezone.utc) if kind == KIND_UTC else moment
    return value


def parse_decimal(text: str) -> decimal.Decimal:
    if not _DECIMAL_TEXT.match(text):
        raise CodecError(f"{text[:40]!r} is not a .NET Decimal")
    return decimal.Decimal(text)
