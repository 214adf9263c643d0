"""Reading .NET's BinaryFormatter streams ([MS-NRBF]) as plain Python values, never running them.

A stream is a header, records and a MessageEnd record. Objects have ids; a member or an array
element is a primitive value, null, a string, an object record written in place, or a reference
to an object written anywhere else in the stream (often later). So decoding takes two passes:

1. ``Parser`` (``_nrbf_parser.py``) reads every record into a table of ids, without building
   anything that a record names. Each length, count and id is checked against the bytes that
   remain before it is used, and every slot it allocates is charged to a budget (``max_items``):
   a 40-byte stream cannot declare a gigabyte. Records written in place nest at most 64 deep.
2. ``_Builder`` (here) walks the table from the root, breadth first, without recursion, at most
   ``max_depth`` deep, charging what it fills to the same budget: it first makes
   every container it reaches (an empty list, dict or ``DotNetObject``, so that a cycle or a
   shared reference finds the same object), then fills them. Known .NET types become Python
   values (see docs/guide/dotnet.md); any other class becomes a read-only
   ``DotNetObject``. Nothing a stream names is ever imported, instantiated or called.

Every malformed stream raises ``CodecError`` (a ``ValueError``): a receiver counts it as
undecodable and goes on. The format's numbers and ``DotNetObject`` are in ``_nrbf_format.py``,
the writer in ``_nrbf_writer.py``.
"""

from __future__ import annotations

import decimal
import struct
import uuid
from collections import deque
from typing import Any, Callable, Optional, Union

from ._errors import CodecError
from ._nrbf_format import (DEFAULT_MAX_DEPTH, DEFAULT_MAX_OBJECTS, INTEGERS, BinaryType, DotNetObject,
                           PRIMITIVE_NAMES, PrimitiveType, convert_primitive, items_budget)
from ._nrbf_parser import ArrayRecord, ClassInfo, Instance, Parser, Ref

# --- pass 2: the table into Python values ---------------------------------------------------

#: Boxed primitives: a class of this name with one member, m_value, of this type.
_BOXED = {f"System.{name}": code for code, name in PRIMITIVE_NAMES.items()
          if code not in (PrimitiveType.DECIMAL, PrimitiveType.TIMESPAN, PrimitiveType.DATETIME)}
_GUID = struct.Struct("<ihh8B")
_GUID_SHAPE = {"_a": PrimitiveType.INT32, "_b": PrimitiveType.INT16, "_c": PrimitiveType.INT16,
               **dict.fromkeys(("_d", "_e", "_f", "_g", "_h", "_i", "_j", "_k"), PrimitiveType.BYTE)}
_VALUE_SHAPES = {"System.Decimal": ("decimal", dict.fromkeys(("flags", "hi", "lo", "mid"), PrimitiveType.INT32)),
                 "System.TimeSpan": ("timespan", {"_ticks": PrimitiveType.INT64}),
                 "System.Guid": ("guid", _GUID_SHAPE)}
_LIST_MEMBERS = {"_items", "_size", "_version"}
_VALUE_KINDS = frozenset(("boxed", "enum", "decimal", "datetime", "timespan", "guid"))


def _shape(cls: ClassInfo) -> dict:
    """Member name -> primitive type code (or None when the member is not a typed primitive)."""
    types = cls.member_types or [(None, None)] * len(cls.member_names)
    return {name: (info if kind == BinaryType.PRIMITIVE else None)
            for name, (kind, info) in zip(cls.member_names, types)}


def _class_kind(cls: ClassInfo) -> str:
    """What the builder makes of instances of a class, from its name and member types alone:
    "boxed", "enum", "decimal", "datetime", "timespan", "guid" (values), "list", "dictionary",
    "hashtable" (containers, if the instance fits) or "object" (a DotNetObject)."""
    shape = _shape(cls)
    if shape.keys() == {"value__"} and shape["value__"] in INTEGERS:
        return "enum"  # its underlying integer
    if cls.library is not None:
        return "object"
    name = cls.name
    if name in _BOXED and shape == {"m_value": _BOXED[name]}:
        return "boxed"
    if name in _VALUE_SHAPES and shape == _VALUE_SHAPES[name][1]:
        return _VALUE_SHAPES[name][0]
    if name == "System.DateTime" and shape.get("dateData") == PrimitiveType.UINT64:
        return "datetime"
    if _generic(name, "System.Collections.Generic.List`1") and shape.keys() == _LIST_MEMBERS:
        return "list"
    if _generic(name, "System.Collections.Generic.Dictionary`2"):
        return "dictionary"
    return "hashtable" if name == "System.Collections.Hashtable" else "object"


def _value(kind: str, instance: Instance) -> Any:
    """The Python value of an instance of a value type ``_class_kind`` recognised."""
    if kind in ("boxed", "enum"):
        return instance.values[0]
    members = dict(zip(instance.cls.member_names, instance.values))
    if kind == "decimal":
        return _decimal_from_bits(members)
    if kind == "datetime":
        return convert_primitive(PrimitiveType.DATETIME, members["dateData"])
    if kind == "timespan":
        return convert_primitive(PrimitiveType.TIMESPAN, members["_ticks"])
    return uuid.UUID(bytes_le=_GUID.pack(*(members[name] for name in _GUID_SHAPE)))


def _decimal_from_bits(members: dict) -> decimal.Decimal:
    flags = members["flags"] & 0xFFFFFFFF
    scale = (flags >> 16) & 0xFF
    if flags & 0x7F00FFFF or scale > 28:
        raise CodecError(f"a System.Decimal has invalid flags {flags:#x}")
    mantissa = (members["hi"] & 0xFFFFFFFF) << 64 | (members["mid"] & 0xFFFFFFFF) << 32 | (members["lo"] & 0xFFFFFFFF)
    return decimal.Decimal((flags >> 31, tuple(int(d) for d in str(mantissa)), -scale))


def _generic(name: str, prefix: str) -> bool:
    return name.startswith(prefix + "[[")


class _Builder:
    def __init__(self, parser: Parser) -> None:
        self.objects = parser.objects
        self.parser = parser
        self.made: dict[int, Any] = {}
        self.kinds: dict[int, str] = {}  # id() of a ClassInfo -> _class_kind, once per class
        self.fills: list[tuple[Callable[..., None], Any, Any]] = []  # (fill, target, record)

    def build(self, root_id: int) -> Any:
        queue: deque[tuple[int, int]] = deque([(root_id, 1)])
        while queue:
            object_id, depth = queue.popleft()
            if object_id in self.made:
                continue
            if depth > self.parser.max_depth:
                raise CodecError(f"the objects nest more than {self.parser.max_depth} deep (max_depth)")
            for child in self.make(object_id):
                if child not in self.made:
                    queue.append((child, depth + 1))
        for fill, target, record in self.fills:
            fill(target, record)
        return self.made[root_id]

    def value(self, item: Any) -> Any:
        return self.made[item.id] if type(item) is Ref else item

    @staticmethod
    def refs(values: Any) -> list:
        return [item.id for item in values if type(item) is Ref]

    def make(self, object_id: int) -> list:
        """Makes the object (empty, if it is a container, to be filled once all are made); the
        ids it refers to."""
        record = self.objects[object_id]
        if isinstance(record, str):
            self.made[object_id] = record
            return []
        if isinstance(record, ArrayRecord):
            if record.primitive and len(record.lengths) == 1:
                self.made[object_id] = record.values
                return []
            self.made[object_id] = []
            self.fills.append((self.fill_array, self.made[object_id], record))
            return [] if record.primitive else self.refs(record.values)
        cls = record.cls
        kind = self.kinds.get(id(cls)) or self.kinds.setdefault(id(cls), _class_kind(cls))
        if kind in _VALUE_KINDS:
            self.made[object_id] = _value(kind, record)
            return []
        if kind == "list":
            members = dict(zip(cls.member_names, record.values))
            if self.array(members["_items"]) is not False and isinstance(members["_size"], int):
                self.made[object_id] = []
                self.fills.append((self.fill_list, self.made[object_id], members))
                return self.refs(record.values)
        elif kind in ("dictionary", "hashtable"):
            entries = self.dictionary_entries if kind == "dictionary" else self.hashtable_entries
            members = dict(zip(cls.member_names, record.values))
            self.made[object_id] = {}
            self.fills.append((self.fill_dict, self.made[object_id], (entries, members)))
            return self.refs(record.values)
        made = DotNetObject(cls.name, library=cls.library)
        self.made[object_id] = made
        self.fills.append((self.fill_object, made, record))
        return self.refs(record.values)

    def array(self, item: Any) -> Any:
        """The one-dimensional array record ``item`` refers to, None for null, False for anything else."""
        if item is None:
            return None
        record = self.objects.get(item.id) if type(item) is Ref else None
        return record if isinstance(record, ArrayRecord) and len(record.lengths) == 1 else False

    def charge(self, slots: int, what: str) -> None:
        self.parser.charge(slots, what)

    def fill_array(self, target: list, record: ArrayRecord) -> None:
        self.charge(len(record.values) + _nested_lists(record.lengths), "an array")
        flat = [self.value(item) for item in record.values] if not record.primitive else record.values
        target.extend(_nest(flat, record.lengths) if len(record.lengths) > 1 else flat)

    def fill_list(self, target: list, members: dict) -> None:
        items, size = self.array(members["_items"]), members["_size"]
        available = len(items.values) if items else 0
        if not 0 <= size <= available:
            raise CodecError(f"a List<T> has _size {size} but {available} items")
        self.charge(size, "a List<T>")
        if size:
            target.extend(self.value(item) for item in items.values[:size])

    def dictionary_entries(self, members: dict) -> list:
        pairs = self.array(members.get("KeyValuePairs"))
        if pairs is False or (pairs is None and members.get("HashSize") not in (0, None)):
            raise CodecError("a Dictionary<K,V> has no array of KeyValuePairs")
        entries = []
        for item in pairs.values if pairs else ():
            pair = self.objects.get(item.id) if type(item) is Ref else None
            if not isinstance(pair, Instance) or sorted(pair.cls.member_names) != ["key", "value"]:
                raise CodecError("a Dictionary<K,V> holds something other than a KeyValuePair")
            entry = dict(zip(pair.cls.member_names, pair.values))
            entries.append((entry["key"], entry["value"]))
        return entries

    def hashtable_entries(self, members: dict) -> list:
        keys, values = self.array(members.get("Keys")), self.array(members.get("Values"))
        key_items = keys.values if keys else ()
        value_items = values.values if values else ()
        if keys is False or values is False or len(key_items) != len(value_items):
            raise CodecError("a Hashtable's Keys and Values are not two arrays of one length")
        return list(zip(key_items, value_items))

    def fill_dict(self, target: dict, how: tuple) -> None:
        entries = how[0](how[1])
        self.charge(len(entries), "a dictionary")
        for key, value in entries:
            key = self.value(key)
            try:
                if key in target:
                    raise CodecError(f"a dictionary has the key {key!r} twice")
                target[key] = self.value(value)
            except TypeError:
                raise CodecError(f"a dictionary key is a {type(key).__name__}, which Python cannot hash") from None

    def fill_object(self, target: DotNetObject, record: Instance) -> None:
        members = target._members
        for name, item in zip(record.cls.member_names, record.values):
            if name in members:
                raise CodecError(f"class {record.cls.name} has two members named {name!r}")
            members[name] = self.value(item)


def _nest(flat: list, lengths: list) -> list:
    """A rectangular array's elements (row-major) as nested lists."""
    if len(lengths) == 1:
        return flat
    step = 1
    for length in lengths[1:]:
        step *= length
    return [_nest(flat[row * step:(row + 1) * step], lengths[1:]) for row in range(lengths[0])]


def _nested_lists(lengths: list) -> int:
    """How many lists ``_nest`` makes for these lengths (one per row of every dimension but the last)."""
    total, rows = 0, 1
    for length in lengths[:-1]:
        rows *= length
        total += rows
    return total


def decode(data: Union[bytes, bytearray, memoryview], *, max_depth: int = DEFAULT_MAX_DEPTH,
           max_items: Optional[int] = None, max_objects: int = DEFAULT_MAX_OBJECTS) -> Any:
    """The Python value of a BinaryFormatter stream; ``CodecError`` when it is malformed or
    exceeds a bound. See the module's docstring for the bounds."""
    data = bytes(data)
    budget = items_budget(len(data)) if max_items is None else max_items
    parser = Parser(data, max_depth, budget, max_objects)
    try:
        root_id = parser.stream()
        return _Builder(parser).build(root_id)
    except RecursionError:  # the bounds keep well below Python's limit; should a caller be deep already
        raise CodecError("the stream nests too deep for this thread's stack") from None
