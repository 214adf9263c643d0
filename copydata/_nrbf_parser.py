"""Pass 1 of reading a BinaryFormatter stream: every record into a table of ids (see ``_nrbf``).

Nothing here builds what a record names. Each length, count and id is checked against the bytes
that remain before it is used, and every slot allocated is charged to the decode's budget.
"""

from __future__ import annotations

import struct
from typing import Any, Optional

from ._errors import CodecError
from ._nrbf_format import (ARRAY_RECORDS, CLASS_RECORDS, FIXED, MAX_NESTING, NULL_RUNS, PRIMITIVE_NAMES, STRUCTS,
                           SYSTEM_CLASS_RECORDS, TYPED_CLASS_RECORDS, ArrayShape, BinaryType, PrimitiveType,
                           RecordType, convert_primitive, parse_decimal)
_INT32 = struct.Struct("<i")
# The record types of values, as plain ints: the per-element path compares against them.
_BINARY_LIBRARY, _OBJECT_NULL, _MEMBER_REFERENCE, _MEMBER_PRIMITIVE_TYPED, _OBJECT_STRING = map(int, (
    RecordType.BINARY_LIBRARY, RecordType.OBJECT_NULL, RecordType.MEMBER_REFERENCE, RecordType.MEMBER_PRIMITIVE_TYPED,
    RecordType.OBJECT_STRING))
_UTF8_LEADS = ((7, 0), (5, 6), (4, 14), (3, 30))  # (shift, value) of the first byte of 1- to 4-byte UTF-8
_SINGLE_ARRAY_TYPES: dict[int, int] = {RecordType.ARRAY_SINGLE_PRIMITIVE: BinaryType.PRIMITIVE,
                       RecordType.ARRAY_SINGLE_OBJECT: BinaryType.OBJECT,
                       RecordType.ARRAY_SINGLE_STRING: BinaryType.STRING}
_VALUES_ONLY = (RecordType.MEMBER_REFERENCE, RecordType.MEMBER_PRIMITIVE_TYPED, RecordType.OBJECT_NULL)
_MISPLACED: dict[int, str] = {RecordType.OBJECT_NULL_MULTIPLE_256: "a run of nulls outside an array",
              RecordType.OBJECT_NULL_MULTIPLE: "a run of nulls outside an array",
              RecordType.MESSAGE_END: "MessageEnd inside an object", RecordType.HEADER: "a second header",
              RecordType.METHOD_CALL: "a remoting method call, which this codec never reads",
              RecordType.METHOD_RETURN: "a remoting method return, which this codec never reads"}


class Ref:
    """A member or element that is another object of the table (by reference, or written in place)."""

    __slots__ = ("id",)

    def __init__(self, object_id: int) -> None:
        self.id = object_id


class ClassInfo:
    __slots__ = ("name", "library", "member_names", "member_types", "id")

    def __init__(self, name: str, library: Optional[str], member_names: list, member_types: Optional[list],
                 object_id: int) -> None:
        self.name, self.library, self.id = name, library, object_id
        self.member_names, self.member_types = member_names, member_types  # types: (binary type, info) or None


class Instance:
    __slots__ = ("cls", "values")

    def __init__(self, cls: ClassInfo, values: list) -> None:
        self.cls, self.values = cls, values


class ArrayRecord:
    """An array record. ``values`` is a Python list or bytes (primitive arrays, decoded already)
    or a list of values and ``Ref``; ``lengths`` has one entry per dimension."""

    __slots__ = ("lengths", "values", "primitive")

    def __init__(self, lengths: list, values: Any, primitive: bool) -> None:
        self.lengths, self.values, self.primitive = lengths, values, primitive


class Parser:
    def __init__(self, data: bytes, max_depth: int, max_items: int, max_objects: int) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.max_depth, self.items_left, self.max_objects = max_depth, max_items, max_objects
        self.objects: dict[int, Any] = {}       # id -> str, Instance or ArrayRecord
        self.classes: dict[int, ClassInfo] = {}    # id of the record that described a class -> it
        self.libraries: dict[int, str] = {}
        self.references: list[int] = []         # every id a reference names, checked at the end

    # -- bytes --

    def need(self, size: int, what: str) -> None:
        if size > self.end - self.pos:
            raise CodecError(f"the stream ends inside {what}: it needs {size} bytes at offset {self.pos}, "
                             f"{self.end - self.pos} remain")

    def unpack(self, fmt: struct.Struct, what: str) -> Any:
        self.need(fmt.size, what)
        value = fmt.unpack_from(self.data, self.pos)[0]
        self.pos += fmt.size
        return value

    def byte(self, what: str) -> int:
        pos = self.pos
        if pos >= self.end:
            self.need(1, what)
        self.pos = pos + 1
        return self.data[pos]

    def int32(self, what: str) -> int:
        return self.unpack(_INT32, what)

    def count(self, what: str, each: int) -> int:
        """A declared count, held against the bytes that remain (``each`` bytes at least apiece)."""
        value = self.int32(what)
        if value < 0:
            raise CodecError(f"{what} is negative ({value}) at offset {self.pos - 4}")
        if value * each > self.end - self.pos:
            raise CodecError(f"{what} declares {value} entries of at least {each} byte(s) at offset {self.pos - 4}, "
                             f"but only {self.end - self.pos} bytes remain")
        return value

    def text(self, what: str) -> str:
        """A length-prefixed UTF-8 string: a 7-bit variable-length length (at most 5 bytes, < 2**31)."""
        length = self.data[self.pos] if self.pos < self.end else 0x80
        if length < 0x80:  # most strings: a one-byte length
            self.pos += 1
            return self.utf8(length, what)
        length = shift = 0
        for _ in range(5):
            part = self.byte(what)
            length |= (part & 0x7F) << shift
            if not part & 0x80:
                break
            shift += 7
        else:
            raise CodecError(f"the length of {what} takes more than 5 bytes at offset {self.pos}")
        if length >= 1 << 31:
            raise CodecError(f"the length of {what} ({length}) is above 2**31 - 1")
        return self.utf8(length, what)

    def utf8(self, length: int, what: str) -> str:
        self.need(length, what)
        raw = self.data[self.pos:self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            offset = self.pos - length + error.start
            raise CodecError(f"{what} is not valid UTF-8 ({error.reason} at offset {offset})") from None

    def charge(self, slots: int, what: str) -> None:
        self.items_left -= slots
        if self.items_left < 0:
            raise CodecError(f"{what} takes the stream past its bound on values (max_items)")

    # -- primitives --

    def primitive_type(self, what: str) -> int:
        code = self.byte(what)
        if code not in PRIMITIVE_NAMES:
            raise CodecError(f"{what}: {code} is not a primitive type a value can have")
        return code

    def primitive(self, code: int) -> Any:
        fmt = FIXED.get(code)
        if fmt is not None:
            value = self.unpack(STRUCTS[fmt], PRIMITIVE_NAMES[code])
            return convert_primitive(code, value)
        if code == PrimitiveType.CHAR:
            return self.char()
        text = self.text("a Decimal")
        return parse_decimal(text)

    def char(self) -> str:
        """One Char, as UTF-8 (1 to 4 bytes: the first byte says how many)."""
        first = self.byte("a Char")
        size = next((size for size, (shift, lead) in enumerate(_UTF8_LEADS, 1) if first >> shift == lead), 0)
        if size == 0:
            raise CodecError(f"a Char starts with byte {first:#x}, which no UTF-8 character starts with")
        self.need(size - 1, "a Char")
        raw = self.data[self.pos - 1:self.pos + size - 1]
        self.pos += size - 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CodecError(f"a Char is not valid UTF-8 at offset {self.pos - size}") from None

    def primitive_array(self, code: int, length: int) -> Any:
        fmt = FIXED.get(code)
        if fmt is None:  # Char and Decimal: one by one, at least a byte each
            if length > len(self.data) - self.pos:
                raise CodecError(f"an array declares {length} {PRIMITIVE_NAMES[code]} values, "
                                 f"only {len(self.data) - self.pos} bytes remain")
            self.charge(length, "a primitive array")
            return [self.primitive(code) for _ in range(length)]
        size = struct.calcsize(fmt)
        self.need(length * size, f"an array of {length} {PRIMITIVE_NAMES[code]} values")
        start = self.pos
        self.pos += length * size
        if code == PrimitiveType.BYTE:
            return bytes(self.data[start:self.pos])
        self.charge(length, "a primitive array")
        values = struct.unpack_from(f"<{length}{fmt}", self.data, start)
        if code in (PrimitiveType.TIMESPAN, PrimitiveType.DATETIME):
            return [convert_primitive(code, value) for value in values]
        return list(values)

    # -- records --

    def register(self, object_id: int, record: Any) -> None:
        if object_id == 0:
            raise CodecError("an object has id 0, which no object may have")
        if object_id in self.objects:
            raise CodecError(f"two objects have id {object_id}")
        if len(self.objects) >= self.max_objects:
            raise CodecError(f"the stream has more than {self.max_objects} objects (max_objects)")
        self.objects[object_id] = record

    def library(self) -> None:
        library_id = self.int32("a library id")
        name = self.text("a library name")
        if library_id in self.libraries:
            raise CodecError(f"two libraries have id {library_id}")
        self.libraries[library_id] = name

    def library_name(self, library_id: int) -> str:
        try:
            return self.libraries[library_id]
        except KeyError:
            raise CodecError(f"a class names library id {library_id}, which no earlier record defines") from None

    def member_types(self, count: int) -> list:
        self.need(count, "member types")
        kinds = list(self.data[self.pos:self.pos + count])
        self.pos += count
        types = []
        for kind in kinds:
            if kind in (BinaryType.PRIMITIVE, BinaryType.PRIMITIVE_ARRAY):
                info: Any = self.primitive_type("a member's primitive type")
            elif kind == BinaryType.SYSTEM_CLASS:
                info = self.text("a member's class name")
            elif kind == BinaryType.CLASS:
                info = self.text("a member's class name")
                self.library_name(self.int32("a member's library id"))
            elif kind in (BinaryType.STRING, BinaryType.OBJECT, BinaryType.OBJECT_ARRAY, BinaryType.STRING_ARRAY):
                info = None
            else:
                raise CodecError(f"{kind} is not a member type (BinaryTypeEnumeration)")
            types.append((kind, info))
        return types

    def class_record(self, record_type: int, depth: int) -> int:
        object_id = self.int32("an object id")
        if record_type == RecordType.CLASS_WITH_ID:
            metadata_id = self.int32("a class's metadata id")
            cls = self.classes.get(metadata_id)
            if cls is None:
                raise CodecError(f"object {object_id} reuses the class of object {metadata_id}, "
                                 "which no earlier record describes")
        else:
            name = self.text("a class name")
            if not name:
                raise CodecError(f"object {object_id}'s class has an empty name")
            names = [self.text("a member name") for _ in range(self.count("a class's member count", 1))]
            types = self.member_types(len(names)) if record_type in TYPED_CLASS_RECORDS else None
            library = None
            if record_type not in SYSTEM_CLASS_RECORDS:
                library = self.library_name(self.int32("a class's library id"))
            cls = ClassInfo(name, library, names, types, object_id)
            self.classes[object_id] = cls
        self.charge(len(cls.member_names), "a class's members")
        instance = Instance(cls, [])
        self.register(object_id, instance)
        if cls.member_types is None:
            instance.values = [self.value(depth) for _ in cls.member_names]
        else:
            instance.values = [self.primitive(info) if kind == BinaryType.PRIMITIVE else self.value(depth)
                               for kind, info in cls.member_types]
        return object_id

    def array_record(self, record_type: int, depth: int) -> int:
        object_id = self.int32("an array id")
        if record_type == RecordType.BINARY_ARRAY:
            shape = self.byte("an array's shape")
            if shape not in (ArrayShape.SINGLE, ArrayShape.JAGGED, ArrayShape.RECTANGULAR):
                raise CodecError(f"array {object_id} has shape {shape}: arrays with lower bounds are not supported"
                                 if shape in (3, 4, 5) else f"array {object_id} has unknown shape {shape}")
            rank = self.int32("an array's rank")
            if not 1 <= rank <= 32 or (rank != 1 and shape != ArrayShape.RECTANGULAR):
                raise CodecError(f"array {object_id} has rank {rank}")
            lengths = [self.count("an array length", 0) for _ in range(rank)]
            kind, info = self.member_types(1)[0]
        else:
            lengths = [self.count("an array length", 0)]
            kind = _SINGLE_ARRAY_TYPES[record_type]
            info = self.primitive_type("an array's element type") if kind == BinaryType.PRIMITIVE else None
        total = 1
        for length in lengths:
            total *= length
        if kind == BinaryType.PRIMITIVE:
            array = ArrayRecord(lengths, self.primitive_array(info, total), True)
            self.register(object_id, array)
        else:
            array = ArrayRecord(lengths, [], False)
            self.register(object_id, array)
            self.elements(array.values, total, depth)
        return object_id

    def elements(self, values: list, total: int, depth: int) -> None:
        """``total`` elements that are records, where runs of nulls may be written as one."""
        while len(values) < total:
            self.need(1, "an array element")
            record_type = self.data[self.pos]
            if record_type in NULL_RUNS:
                self.pos += 1
                if record_type == RecordType.OBJECT_NULL_MULTIPLE_256:
                    run = self.byte("a run of nulls")
                else:
                    run = self.int32("a run of nulls")
                if not 1 <= run <= total - len(values):
                    raise CodecError(f"a run of {run} nulls does not fit the {total - len(values)} elements left")
                self.charge(run, "a run of nulls")
                values.extend([None] * run)
            else:
                self.charge(1, "an array element")
                values.append(self.value(depth))

    def value(self, depth: int) -> Any:
        """A member or element that is a record: null, a string, a boxed primitive, a reference, or
        an object written in place (one level deeper)."""
        while True:
            record_type = self.byte("a value")
            if record_type != _BINARY_LIBRARY:
                break
            self.library()  # a library may precede the record that needs it
        if record_type == _OBJECT_NULL:
            return None
        if record_type == _MEMBER_REFERENCE:
            object_id = self.int32("a reference")
            self.references.append(object_id)
            return Ref(object_id)
        if record_type == _MEMBER_PRIMITIVE_TYPED:
            return self.primitive(self.primitive_type("a boxed value's type"))
        if record_type == _OBJECT_STRING:
            object_id = self.int32("a string id")
            value = self.text("a string")
            self.register(object_id, value)
            return value
        return Ref(self.record(record_type, depth + 1))

    def record(self, record_type: int, depth: int) -> int:
        """An object record; its id."""
        if depth > MAX_NESTING:
            raise CodecError(f"objects written in place nest more than {MAX_NESTING} deep")
        if record_type in CLASS_RECORDS:
            return self.class_record(record_type, depth)
        if record_type in ARRAY_RECORDS:
            return self.array_record(record_type, depth)
        if record_type == RecordType.OBJECT_STRING:
            object_id = self.int32("a string id")
            self.register(object_id, self.text("a string"))
            return object_id
        what = _MISPLACED.get(record_type, "an unknown record type")
        raise CodecError(f"record type {record_type} at offset {self.pos - 1}: {what}")

    def stream(self) -> int:
        """Every record up to MessageEnd; the root's id."""
        if self.byte("the header") != RecordType.HEADER:
            raise CodecError("not a BinaryFormatter stream: it does not start with a header record (0)")
        root_id = self.int32("the root id")
        self.int32("the header id")
        version = (self.int32("the major version"), self.int32("the minor version"))
        if version != (1, 0):
            raise CodecError(f"the stream's format version is {version[0]}.{version[1]}, not 1.0")
        while True:
            record_type = self.byte("a record")
            if record_type == RecordType.MESSAGE_END:
                break
            if record_type == RecordType.BINARY_LIBRARY:
                self.library()
            elif record_type in _VALUES_ONLY:
                raise CodecError(f"record type {record_type} at offset {self.pos - 1} stands outside any object")
            else:
                self.record(record_type, 1)
        if self.pos != len(self.data):
            raise CodecError(f"{len(self.data) - self.pos} bytes follow the stream's MessageEnd record")
        for object_id in self.references:
            if object_id not in self.objects:
                raise CodecError(f"a reference names object {object_id}, which the stream never defines")
        if root_id not in self.objects:
            raise CodecError(f"the root object {root_id} is not in the stream")
        return root_id
