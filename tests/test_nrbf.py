"""The nrbf codec on its own: values both ways, and every class of hostile stream refused in time.

Streams are built here byte by byte (record by record, as MS-NRBF lays them out), independently
of the codec's writer. tests/test_nrbf_dotnet.py checks both directions against .NET's own
BinaryFormatter; fuzz/fuzz_nrbf.py fuzzes the reader natively in CI.
"""

from __future__ import annotations

import datetime
import decimal
import struct
import time
import tracemalloc
import uuid

import pytest

import copydata
from copydata import _codecs, _envelope
from conftest import receive_from_script

codec = copydata.NrbfCodec()
UTC = datetime.timezone.utc


# --- streams, record by record --------------------------------------------------------------

def i32(value: int) -> bytes:
    return struct.pack("<i", value)


def lps(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    prefix, length = bytearray(), len(raw)
    while length >= 0x80:
        prefix.append(length & 0x7F | 0x80)
        length >>= 7
    return bytes(prefix) + bytes([length]) + raw


def stream(*records: bytes, root: int = 1) -> bytes:
    return b"\x00" + i32(root) + i32(-1) + i32(1) + i32(0) + b"".join(records) + b"\x0b"


def string(object_id: int, text: str | bytes) -> bytes:
    return b"\x06" + i32(object_id) + lps(text)


def ref(object_id: int) -> bytes:
    return b"\x09" + i32(object_id)


def objects(object_id: int, *elements: bytes, length: int | None = None) -> bytes:
    """ArraySingleObject."""
    return b"\x10" + i32(object_id) + i32(len(elements) if length is None else length) + b"".join(elements)


def int32s(object_id: int, *values: int, length: int | None = None) -> bytes:
    """ArraySinglePrimitive of Int32."""
    return b"\x0f" + i32(object_id) + i32(len(values) if length is None else length) + b"\x08" + \
        b"".join(i32(v) for v in values)


def system_class(object_id: int, name: str, members: list[tuple[str, bytes, bytes]], values: bytes) -> bytes:
    """SystemClassWithMembersAndTypes: members are (name, binary type byte, additional info)."""
    return (b"\x04" + i32(object_id) + lps(name) + i32(len(members)) + b"".join(lps(m) for m, _, _ in members)
            + b"".join(kind for _, kind, _ in members) + b"".join(info for _, _, info in members) + values)


def primitive(name: str, code: int) -> tuple[str, bytes, bytes]:
    """A member typed as a primitive (PrimitiveTypeEnumeration ``code``)."""
    return name, b"\x00", bytes([code])


def hashtable(object_id: int, keys_id: int, values_id: int) -> bytes:
    return system_class(object_id, "System.Collections.Hashtable", [("Keys", b"\x05", b""), ("Values", b"\x05", b"")],
                        ref(keys_id) + ref(values_id))


def list_of(object_id: int, items_id: int, size: int) -> bytes:
    """A List<object> whose _items is another object (written apart)."""
    return system_class(object_id, "System.Collections.Generic.List`1[[System.Object, mscorlib]]",
                        [("_items", b"\x05", b""), ("_size", b"\x00", b"\x08"), ("_version", b"\x00", b"\x08")],
                        ref(items_id) + i32(size) + i32(0))


# --- values both ways -----------------------------------------------------------------------

def test_the_codec_is_registered_with_id_5_in_the_envelope_and_batch_frames():
    assert _codecs.resolve("nrbf").codec_id == 5 and _codecs.BY_ID[5].name == "nrbf"
    assert _codecs.codec_id(copydata.NrbfCodec(max_depth=10)) == 5
    assert _envelope.unwrap(_envelope.wrap(b"x", 5)) == (5, _envelope.MESSAGE, 0, b"x")
    assert issubclass(copydata.CodecError, copydata.CopyDataError) and issubclass(copydata.CodecError, ValueError)


@pytest.mark.parametrize("value", [
    "", "Hello World!", "h\u00e9llo \U0001F600" * 50, True, False, 0, -1, 2**31 - 1, -2**31, 2**31, -2**63, 2**63 - 1,
    0.1, -0.0, float("inf"), 1e-310, decimal.Decimal("1.50"), decimal.Decimal("-0"), decimal.Decimal("1E+3"),
    decimal.Decimal("79228162514264337593543950335"), decimal.Decimal("0.0000000000000000000000000001"),
    datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime.datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC), datetime.timedelta(days=-10675199, microseconds=1),
    uuid.UUID(int=0), uuid.uuid4(), b"", b"\x00" * 1000, [], ["a", "b", "a"], [1, 2**40], [True, False], [1.5, 2.5],
    [decimal.Decimal("1.1")], [datetime.datetime(2000, 1, 1)], [datetime.timedelta(seconds=1)],
    [1, "a", None, None, [None] * 300, {"k": [uuid.UUID(int=5)]}, b"\x01", 2.5, True],
    {"a": 1, 2: "b", 3.5: None, "nested": {"x": [[]]}},
    copydata.DotNetObject("My.Point", {"X": 1, "Y": -2, "Label": "p", "Tags": ["t"],
                                       "When": datetime.datetime(2000, 1, 1)},
                          "MyAssembly, Version=1.0.0.0, Culture=neutral, PublicKeyToken=null"),
    copydata.DotNetObject("System.Object"),
])
def test_values_round_trip(value):
    decoded = codec.decode(codec.encode(value))
    assert decoded == value and type(decoded) is type(value)
    if isinstance(value, float) and value == 0:
        assert str(decoded) == str(value)  # -0.0 stays negative


def test_what_changes_on_the_way_is_documented():
    assert codec.decode(codec.encode((1, 2))) == [1, 2]                     # tuples become arrays
    assert codec.decode(codec.encode(bytearray(b"ab"))) == b"ab"           # any bytes-like: Byte[]
    assert codec.decode(codec.encode(datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone(
        datetime.timedelta(hours=2))))) == datetime.datetime(1999, 12, 31, 22, tzinfo=UTC)  # aware: in UTC
    assert codec.decode(codec.encode(datetime.timedelta(microseconds=3))) == datetime.timedelta(microseconds=3)


def test_shared_objects_and_cycles_survive_both_ways():
    shared = [1]
    node = copydata.DotNetObject("N", {"Items": shared, "Again": shared})
    cycle: list = [node, node]
    cycle.append(cycle)
    decoded = codec.decode(codec.encode(cycle))
    assert decoded[0] is decoded[1] and decoded[2] is decoded
    assert decoded[0]["Items"] is decoded[0]["Again"] and decoded[0]["Items"] == [1]
    assert repr(decoded).startswith("[DotNetObject('N'")  # a cycle's repr ends


def test_a_class_named_as_a_known_type_but_shaped_otherwise_is_a_dotnet_object():
    """Found by fuzzing: a List`1 whose members are not _items, _size and _version."""
    odd_list = system_class(1, "System.Collections.Generic.List`1[[System.Object, mscorlib]]",
                            [("_item1", b"\x05", b""), ("_size", b"\x00", b"\x08"), ("_version", b"\x00", b"\x08")],
                            ref(2) + i32(1) + i32(1))
    decoded = codec.decode(stream(odd_list, objects(2, b"\x0a")))
    assert decoded == copydata.DotNetObject("System.Collections.Generic.List`1[[System.Object, mscorlib]]",
                                            {"_item1": [None], "_size": 1, "_version": 1})
    empty_table = stream(hashtable(1, 2, 3)[:-5] + b"\x0a", objects(2))  # Values null, Keys empty
    assert codec.decode(empty_table) == {}
    odd_int = system_class(1, "System.Int32", [primitive("value", 8)], i32(5))
    assert codec.decode(stream(odd_int)) == copydata.DotNetObject("System.Int32", {"value": 5})


def test_dotnet_objects_are_read_only_mappings():
    point = copydata.DotNetObject("My.Point", {"X": 1}, "Lib")
    assert (point.type_name, point.library, dict(point), len(point)) == ("My.Point", "Lib", {"X": 1}, 1)
    with pytest.raises(TypeError):
        point["X"] = 2  # type: ignore[index]
    assert point == copydata.DotNetObject("My.Point", {"X": 1}, "Lib")
    assert point != copydata.DotNetObject("My.Point", {"X": 1})  # another library
    with pytest.raises(TypeError, match="type_name"):
        copydata.DotNetObject("")


@pytest.mark.parametrize("value, error, words", [
    ({1, 2}, TypeError, "not set"), (object(), TypeError, "not object"),
    (datetime.date(2000, 1, 1), TypeError, "not date"),
    ([1j], TypeError, "not complex"), (copydata.DotNetObject("X", {"m": frozenset()}), TypeError, "not frozenset"),
    (None, copydata.CodecError, "Serialize\\(null\\)"), (2**63, copydata.CodecError, "Int64"),
    ([-2**63 - 1], copydata.CodecError, "Int64"), (decimal.Decimal("NaN"), copydata.CodecError, "no .NET Decimal"),
    (decimal.Decimal("1E-29"), copydata.CodecError, "28 decimals"),
    (decimal.Decimal(2**96), copydata.CodecError, "range"),
    ("\ud800", copydata.CodecError, "surrogate"), ({None: 1}, copydata.CodecError, "None key"),
    (datetime.timedelta(days=999_999_999), copydata.CodecError, "TimeSpan"),
    (copydata.DotNetObject("System.Decimal", {"flags": 3 << 24, "hi": 0, "lo": 0, "mid": 0}), copydata.CodecError,
     "cannot stand for System.Decimal"),  # found by fuzzing: it would read back as an invalid Decimal
    ([copydata.DotNetObject("System.Collections.Generic.List`1[[System.Int32, mscorlib]]", {"_size": 1})],
     copydata.CodecError, "send the Python value"),
])
def test_what_cannot_be_sent_raises_a_typed_error_that_says_why(value, error, words):
    with pytest.raises(error, match=words):
        codec.encode(value)


def test_codec_bounds_are_checked():
    with pytest.raises(ValueError, match="max_depth"):
        copydata.NrbfCodec(max_depth=0)
    with pytest.raises(ValueError, match="max_items"):
        copydata.NrbfCodec(max_items=True)


# --- hostile streams: each class refused with CodecError, quickly, in little memory ----------

HELLO = stream(string(1, "Hello World!"))
NESTED = stream(objects(1, ref(2), string(3, "s"), b"\x0a"), int32s(2, 1, 2, 3))

MALFORMED = {
    "empty": (b"", "ends inside the header"),
    "not a header": (b"\x01" + HELLO[1:], "header record"),
    "version 2.0": (HELLO[:9] + i32(2) + HELLO[13:], "version is 2.0"),
    "truncated string": (HELLO[:-3], "ends inside a string"),
    "no MessageEnd": (HELLO[:-1], "ends inside a record"),
    "bytes after MessageEnd": (HELLO + b"\x00", "follow the stream's MessageEnd"),
    "unknown record type": (stream(b"\x7f"), "unknown record type"),
    "remoting MethodCall": (stream(b"\x15" + i32(0)), "method call"),
    "reference never defined": (stream(objects(1, ref(9))), "never defines"),
    "root never defined": (stream(string(2, "x")), "root object 1"),
    "duplicate object id": (stream(objects(1, string(1, "again"))), "two objects have id 1"),
    "object id 0": (stream(string(0, "x"), root=0), "id 0"),
    "duplicate library id": (stream(b"\x0c" + i32(5) + lps("A"), b"\x0c" + i32(5) + lps("B"), string(1, "x")),
                             "two libraries have id 5"),
    "class of an unknown library": (stream(b"\x05" + i32(1) + lps("C") + i32(0) + i32(77)), "library id 77"),
    "ClassWithId of no earlier class": (stream(b"\x01" + i32(1) + i32(42)), "object 42"),
    "class with an empty name": (stream(system_class(1, "", [], b"")), "empty name"),  # found by fuzzing
    "unknown member type": (stream(system_class(1, "C", [("m", b"\x08", b"")], b"")), "not a member type"),
    "primitive type Null": (stream(system_class(1, "C", [primitive("m", 17)], b"")), "primitive type"),
    "primitive type String in an array": (stream(b"\x0f" + i32(1) + i32(1) + b"\x12" + lps("x")), "primitive type"),
    "string of invalid UTF-8": (stream(string(1, b"\xff\xfe")), "not valid UTF-8"),
    "string length in 6 bytes": (stream(b"\x06" + i32(1) + b"\x80" * 5 + b"\x01"), "more than 5 bytes"),
    "string length above 2**31": (stream(b"\x06" + i32(1) + b"\xff\xff\xff\xff\x0f"), "above 2\\*\\*31"),
    "negative array length": (stream(int32s(1, length=-1)), "negative"),
    "array longer than the stream": (stream(int32s(1, length=2**31 - 1)), "2147483647 Int32"),
    "run of nulls past the array": (stream(objects(1, b"\x0d\x05", length=3)), "does not fit"),
    "run of 0 nulls": (stream(objects(1, b"\x0e" + i32(0), length=3)), "does not fit"),
    "run of nulls outside an array": (stream(b"\x0d\x01"), "outside an array"),
    "null outside any object": (stream(b"\x0a", string(1, "x")), "outside any object"),
    "reference outside any object": (stream(ref(1), string(1, "x")), "outside any object"),
    "array with lower bounds": (stream(b"\x07" + i32(1) + b"\x03" + i32(1) + i32(1) + i32(5) + b"\x00\x08" + i32(1)),
                                "lower bounds"),
    "array of rank 0": (stream(b"\x07" + i32(1) + b"\x02" + i32(0) + b"\x00\x08"), "rank 0"),
    "array of rank 33": (stream(b"\x07" + i32(1) + b"\x02" + i32(33) + i32(1) * 33 + b"\x00\x08"), "rank 33"),
    "Char that is not UTF-8": (stream(system_class(1, "System.Char", [primitive("m_value", 3)], b"\xff")), "Char"),
    "Decimal that is not a number": (stream(system_class(1, "C", [primitive("d", 5)], lps("1e5"))),
                                     "not a .NET Decimal"),
    "Decimal NaN": (stream(objects(1, b"\x08\x05" + lps("NaN"))), "not a .NET Decimal"),
    "DateTime past MaxValue": (stream(system_class(1, "C", [primitive("d", 13)], struct.pack("<Q", (1 << 62) - 1))),
                               "past DateTime.MaxValue"),
    "Decimal with scale 29": (stream(system_class(1, "System.Decimal",
                                                  [primitive(name, 8) for name in ("flags", "hi", "lo", "mid")],
                                                  i32(29 << 16) + i32(0) + i32(1) + i32(0))), "invalid flags"),
    "List with _size past its items": (stream(list_of(1, 2, 5), objects(2, b"\x0a")), "_size 5"),
    "Hashtable with unequal Keys and Values": (stream(hashtable(1, 2, 3), objects(2, string(4, "k")), objects(3)),
                                               "one length"),
    "Hashtable with Keys and no Values": (stream(hashtable(1, 2, 3), objects(2, string(4, "k")), string(3, "v")),
                                          "one length"),
    "dictionary with a key twice": (stream(hashtable(1, 2, 3), objects(2, string(4, "k"), ref(4)),
                                           objects(3, b"\x0a", b"\x0a")), "twice"),
    "dictionary key Python cannot hash": (stream(hashtable(1, 2, 3), objects(2, ref(2)), objects(3, b"\x0a")),
                                          "cannot hash"),
    "class with a member named twice": (stream(system_class(1, "C", [primitive("m", 8), primitive("m", 8)],
                                                            i32(1) + i32(2))), "two members named 'm'"),
    "member count past the stream": (stream(b"\x04" + i32(1) + lps("C") + i32(10**9)), "1000000000 entries"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_each_class_of_malformed_stream_raises_codec_error(name):
    data, words = MALFORMED[name]
    with pytest.raises(copydata.CodecError, match=words):
        codec.decode(data)


def decode_in_bounds(data: bytes, codec_: copydata.NrbfCodec = codec, seconds: float = 2.0,
                     megabytes: float = 5.0) -> copydata.CodecError:
    """The CodecError decoding raises, checked to come within the time and memory given."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(copydata.CodecError) as raised:
            codec_.decode(data)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, f"{elapsed:.2f} s"
    assert peak < megabytes * 2**20, f"peak {peak / 2**20:.1f} MiB"
    return raised.value


def test_a_40_byte_stream_cannot_declare_a_gigabyte():
    for data in (stream(int32s(1, length=2**31 - 1)),                       # primitives, held against the bytes left
                 stream(objects(1, b"\x0e" + i32(2**31 - 1), length=2**31 - 1)),  # one run of nulls: 16 GiB of slots
                 # 2**31 empty rows, and 2**60 elements of one run of nulls
                 stream(b"\x07" + i32(1) + b"\x02" + i32(2) + i32(2**31 - 1) + i32(0) + b"\x00\x08"),
                 stream(b"\x07" + i32(1) + b"\x02" + i32(3) + i32(2**20) * 3 + b"\x02" + b"\x0e" + i32(2**31 - 1))):
        assert len(data) <= 60
        message = str(decode_in_bounds(data))
        assert "max_items" in message or "remain" in message, message


def test_shared_arrays_cannot_multiply_into_copies():
    """1000 List records that share one 20,000-item array would copy 20 million slots."""
    first = list_of(10, 2, 20_000)
    others = b"".join(b"\x01" + i32(11 + n) + i32(10) + ref(2) + i32(20_000) + i32(0) for n in range(999))
    items = objects(2, b"\x0e" + i32(20_000), length=20_000)
    data = stream(objects(1, *[ref(10 + n) for n in range(1000)]), first, others, items)
    assert len(data) < 30_000
    assert "max_items" in str(decode_in_bounds(data, seconds=5, megabytes=20))
    assert codec.decode(stream(objects(1, ref(10)), first, items)) == [[None] * 20_000]  # one such List is fine


def test_depth_is_bounded_in_place_and_by_reference():
    in_place = stream(b"".join(b"\x10" + i32(n) + i32(1) for n in range(1, 66)) + b"\x0a")
    assert "nest more than 64" in str(decode_in_bounds(in_place))
    chain = stream(*[objects(n, ref(n + 1)) for n in range(1, 600)], objects(600, b"\x0a"))
    assert "max_depth" in str(decode_in_bounds(chain))
    deep = copydata.NrbfCodec(max_depth=1000).decode(chain)
    for _ in range(599):
        deep = deep[0]
    assert deep == [None]


def test_object_count_is_bounded():
    data = stream(objects(1, *[string(n, "") for n in range(2, 200)]))
    assert "max_objects" in str(decode_in_bounds(data, copydata.NrbfCodec(max_objects=100)))
    assert copydata.NrbfCodec(max_objects=200).decode(data) == [""] * 198


def test_every_prefix_and_every_single_byte_change_of_real_streams_is_decoded_or_refused():
    """Mutations of the codec's own streams: a decoded value or CodecError, never another exception."""
    samples = [codec.encode(value) for value in (
        "Hello", 42, [1, "a", None, None, [2.5]], {"k": [True]}, decimal.Decimal("1.5"), uuid.UUID(int=3),
        copydata.DotNetObject("N", {"a": "x", "b": [1], "c": datetime.datetime(2000, 1, 1)}, "L"))]
    checked = 0
    for data in samples:
        for cut in range(len(data)):
            with pytest.raises(copydata.CodecError):
                codec.decode(data[:cut])
        for position in range(len(data)):
            for replacement in (0x00, 0x01, 0x7F, 0x80, 0xFF, data[position] ^ 0x10):
                try:
                    codec.decode(data[:position] + bytes([replacement]) + data[position + 1:])
                except copydata.CodecError:
                    pass
                checked += 1
    assert checked > 2000


# --- across processes: a receiver counts a malformed stream and goes on ---------------------

HOSTILE_SENDER = """
import sys
import copydata
from copydata import _envelope
hwnd = int(sys.argv[1])
for data in STREAMS:
    copydata.send(hwnd, data)                                  # plain WM_COPYDATA, as a seed sender
copydata.send(hwnd, _envelope.wrap(STREAMS[0], 5))             # enveloped as nrbf, and malformed
copydata.send(hwnd, "after", codec="nrbf", raw=True)           # then a good one
print("done")
"""


def test_a_receiver_counts_malformed_streams_from_another_process_and_goes_on(tmp_path):
    streams = [data for data, _ in MALFORMED.values() if data[:4] != b"\x89CDE"]
    refusals: list = []
    with copydata.Receiver(codec="nrbf", on_error=refusals.append) as receiver:
        received = receive_from_script(receiver, tmp_path / "hostile.py", f"STREAMS = {streams!r}\n" + HOSTILE_SENDER,
                                       len(streams) + 2)
        assert receiver.stats.undecodable == len(streams) + 1
        deadline = time.monotonic() + 10
        while len(refusals) < len(streams) + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    # delivered as the bytes they were, in order, and the good one decoded
    assert [(m.data, m.codec) for m in received[:-2]] == [(data, "bytes") for data in streams]
    assert (received[-2].codec, received[-1].data, received[-1].codec) == ("bytes", "after", "nrbf")
    assert [r.reason for r in refusals] == ["undecodable"] * (len(streams) + 1)
    assert [r.size for r in refusals[:-1]] == [len(data) for data in streams]
