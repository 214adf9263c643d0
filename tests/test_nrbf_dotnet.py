"""The nrbf codec against .NET's own BinaryFormatter (Mono's, run natively on Linux), across processes.

.NET to Python: tests/dotnet/NrbfProbe.cs serializes a table of values with BinaryFormatter, the
C# article's Transfer("Hello World!") first; another Windows process sends each stream as one
plain WM_COPYDATA, exactly as the article's NativeDataTransfer.Transfer does, to a
Receiver(codec="nrbf"), which must decode each to the expected Python value.

Python to .NET: another Windows process sends values with copydata.send(..., codec="nrbf",
raw=True) to a raw receiver, which keeps the bytes; NrbfProbe deserializes each with
BinaryFormatter and prints its .NET type and value, which must be what was sent.

Mono runs outside Wine: tests/unix.py starts it from this process, and files carry the bytes.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import os
import pickle
import struct
import sys
import uuid
from pathlib import Path

import pytest

import copydata
from conftest import receive_from_script
from unix import run_unix, unix_path

UTC = datetime.timezone.utc
PROBE_LIBRARY = "NrbfProbe, Version=0.0.0.0, Culture=neutral, PublicKeyToken=null"
HELLO_WORLD = base64.b64decode("AAEAAAD/////AQAAAAAAAAAGAQAAAAxIZWxsbyBXb3JsZCEL")  # MS-NRBF's own 36 bytes


@pytest.fixture(scope="module")
def probe() -> str:
    """The Linux path of NrbfProbe.exe, built by tools/dotnet.py (through tools/winenv.py)."""
    folder = os.environ.get("COPYDATA_DOTNET_PROGRAMS")
    if not folder:
        pytest.skip("COPYDATA_DOTNET_PROGRAMS is not set: tools/winenv.py builds tests/dotnet/ with Mono's mcs")
    return f"{folder}/NrbfProbe.exe"


def mono(probe: str, *args: str) -> str:
    result = run_unix(["mono", probe, *args])
    assert result.returncode == 0, f"mono NrbfProbe.exe {args[0]} failed ({result.returncode}): {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dotnet_streams(probe, tmp_path_factory) -> dict[str, bytes]:
    """What BinaryFormatter wrote for each case of NrbfProbe.cs, by name."""
    folder = tmp_path_factory.mktemp("from-dotnet")
    mono(probe, "serialize", unix_path(folder))
    return {path.stem: path.read_bytes() for path in sorted(folder.glob("*.bin"))}


# --- .NET to Python -------------------------------------------------------------------------

EXPECTED_FROM_DOTNET = {
    "hello": "Hello World!",
    "empty_string": "",
    "unicode_string": "h\u00e9llo \u20ac \U0001F600",
    "int32": 42, "int32_min": -2**31, "int64": -9_000_000_000, "int16": -1234, "byte": 200, "sbyte": -100,
    "uint16": 65535, "uint32": 4_000_000_000, "uint64": 2**64 - 1,
    "bool": True, "char": "\u00e9", "double": 0.1, "single": 1.5,
    "decimal": decimal.Decimal("12345.678"), "decimal_negative": decimal.Decimal("-0.5"),
    "datetime_utc": datetime.datetime(2013, 7, 11, 12, 30, 45, 123456, tzinfo=UTC),
    "datetime_unspecified": datetime.datetime(1999, 12, 31, 23, 59, 59),
    "timespan": datetime.timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5),
    "timespan_negative": datetime.timedelta(microseconds=-1),  # -15 ticks: microseconds, toward zero
    "guid": uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"),
    "enum": 40, "system_enum": 5,
    "byte_array": bytes([0, 1, 2, 254, 255]), "int_array": [1, -2, 3], "double_array": [0.5, -1e300],
    "string_array": ["a", None, "b", "a"], "object_array": [1, "two", 3.0, None, None, True, [4]],
    "jagged_array": [[1, 2], [], [3]], "rectangular_array": [[1, 2, 3], [4, 5, 6]], "sparse_array": [None] * 300,
    "list_int": [1, 2, 3], "list_string": ["x", "y"], "list_object": [1, "a", None], "list_empty": [],
    "dictionary": {"one": 1, "two": 2}, "dictionary_empty": {}, "dictionary_int_keys": {1: "one", -5: "minus five"},
    "dictionary_nested": {"primes": [2, 3, 5]}, "hashtable": {"k": "v", 7: 1.25},
    "person": copydata.DotNetObject("NrbfProbe.Person", {
        "Name": "Ada", "Age": 36, "Height": 1.65, "Admin": True,
        "Born": datetime.datetime(1815, 12, 10, tzinfo=UTC), "Id": uuid.UUID("12345678-9abc-def0-1234-56789abcdef0"),
        "Balance": decimal.Decimal("1.50"), "Favourite": 2, "Tags": ["math"], "Extra": 5}, PROBE_LIBRARY),
    "employee": copydata.DotNetObject("NrbfProbe.Employee", {
        "Team": "ops", "Name": "Bob", "Age": 0, "Height": 0.0, "Admin": False, "Born": datetime.datetime(1, 1, 1),
        "Id": uuid.UUID(int=0), "Balance": decimal.Decimal("0"), "Favourite": 0, "Tags": None, "Extra": None},
        PROBE_LIBRARY),
}
GRAPHS = ("self_reference", "shared_reference", "list_cycle")  # checked by identity, below


def assert_same(actual, expected, where="value"):
    """Equal, and of the same Python types all the way down (True is not 1, 1.0 is not 1)."""
    assert type(actual) is type(expected), \
        f"{where}: {actual!r} is a {type(actual).__name__}, not {type(expected).__name__}"
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{where}: {actual!r} != {expected!r}"
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{index}]")
    elif isinstance(expected, (dict, copydata.DotNetObject)):
        if isinstance(expected, copydata.DotNetObject):  # members in the stream's order
            assert (actual.type_name, actual.library) == (expected.type_name, expected.library), where
            assert list(actual) == list(expected), where
        else:
            assert set(actual) == set(expected)
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


SEED_TRANSFER = """
import ctypes, ctypes.wintypes, sys
from pathlib import Path

class COPYDATASTRUCT(ctypes.Structure):
    _fields_ = [("dwData", ctypes.c_size_t), ("cbData", ctypes.wintypes.DWORD), ("lpData", ctypes.c_void_p)]

user32 = ctypes.WinDLL("user32", use_last_error=True)
user32.SendMessageTimeoutW.argtypes = [ctypes.wintypes.HWND, ctypes.wintypes.UINT, ctypes.wintypes.WPARAM,
                                       ctypes.c_void_p, ctypes.wintypes.UINT, ctypes.wintypes.UINT,
                                       ctypes.POINTER(ctypes.c_size_t)]
WM_COPYDATA, SMTO_NOTIMEOUTIFNOTHUNG = 0x004A, 0x0008
hwnd = int(sys.argv[1])
for path in sorted(Path(FOLDER).glob("*.bin")):
    # NativeDataTransfer.Transfer(hwnd, graph): the stream, copied to unmanaged memory, one WM_COPYDATA
    data = path.read_bytes()
    buffer = ctypes.create_string_buffer(data, len(data))
    cds = COPYDATASTRUCT(0, len(data), ctypes.addressof(buffer))
    result = ctypes.c_size_t()
    if not user32.SendMessageTimeoutW(hwnd, WM_COPYDATA, 0, ctypes.byref(cds), SMTO_NOTIMEOUTIFNOTHUNG, 5000,
                                      ctypes.byref(result)):
        sys.exit(f"SendMessageTimeoutW failed for {path.name}: {ctypes.get_last_error()}")
print("done")
"""


def test_the_seeds_hello_world_is_the_36_bytes_of_ms_nrbf(dotnet_streams):
    assert dotnet_streams["hello"] == HELLO_WORLD
    assert copydata.NrbfCodec().encode("Hello World!") == HELLO_WORLD


def test_what_dotnet_serialized_arrives_decoded_from_another_process(dotnet_streams, tmp_path):
    folder = tmp_path / "streams"
    folder.mkdir()
    names = sorted(dotnet_streams)
    assert set(names) == set(EXPECTED_FROM_DOTNET) | set(GRAPHS)
    for name in names:
        (folder / f"{name}.bin").write_bytes(dotnet_streams[name])
    with copydata.Receiver(codec="nrbf") as receiver:
        received = receive_from_script(receiver, tmp_path / "transfer.py",
                                       f"FOLDER = {str(folder)!r}\n" + SEED_TRANSFER, len(names))
        assert receiver.stats.undecodable == 0
    by_name = dict(zip(names, received))
    for name, message in by_name.items():
        assert (message.codec, message.tag) == ("nrbf", 0), name
        if name in EXPECTED_FROM_DOTNET:
            assert_same(message.data, EXPECTED_FROM_DOTNET[name], name)

    loop = by_name["self_reference"].data  # a [Serializable] class that refers to itself
    assert (loop.type_name, loop.library) == ("NrbfProbe.Node", PROBE_LIBRARY)
    assert (loop["Name"], loop["Values"]) == ("loop", [1, 2])
    assert loop["Next"] is loop
    shared, same, other = by_name["shared_reference"].data
    assert shared is same and other["Next"] is shared and other["Name"] == "other"
    cycle = by_name["list_cycle"].data
    assert len(cycle) == 1 and cycle[0] is cycle


def test_the_pypi_nrbf_parser_reads_dotnets_streams_as_we_do(dotnet_streams):
    """An independent reader of the format (nrbf on PyPI, which we do not use: see docs/guide/dotnet.md) agrees
    on every case both map to plain values."""
    import nrbf

    def plain(value):  # nrbf's forms of what we map further: boxed primitives, bytes
        if isinstance(value, dict) and set(value) == {"m_value", "__class__"}:
            return value["m_value"]
        if isinstance(value, dict):
            return {plain(key): plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    same_mapping = ["hello", "empty_string", "unicode_string", "int32", "int32_min", "int64", "int16", "byte", "sbyte",
                    "uint16", "uint32", "uint64", "bool", "double", "single", "enum", "system_enum", "int_array",
                    "double_array", "string_array", "object_array", "jagged_array", "sparse_array", "list_int",
                    "list_string", "list_object", "list_empty", "dictionary", "dictionary_int_keys",
                    "dictionary_nested"]
    codec = copydata.NrbfCodec()
    for name in same_mapping:
        assert plain(nrbf.loads(dotnet_streams[name])) == codec.decode(dotnet_streams[name]), name
    assert list(nrbf.loads(dotnet_streams["byte_array"])) == list(codec.decode(dotnet_streams["byte_array"]))


# --- Python to .NET -------------------------------------------------------------------------

def net(type_name, value):
    return {"type": type_name, "value": value}


def double_bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


def ticks(moment: datetime.datetime) -> int:
    naive = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    return (naive - datetime.datetime(1, 1, 1)) // datetime.timedelta(microseconds=1) * 10


def sample(name, child=None, things=()):
    return copydata.DotNetObject("NrbfProbe.Sample", {
        "Name": name, "Count": 7, "Big": 2**40, "Ratio": 0.25, "Flag": True, "Money": decimal.Decimal("-12.30"),
        "When": datetime.datetime(2024, 2, 29, 12, 0, tzinfo=UTC), "Span": datetime.timedelta(minutes=90),
        "Id": uuid.UUID(int=0x0102), "Blob": bytes([0, 255]), "Names": ["p", "q"], "Numbers": [3, 4],
        "Things": list(things), "Table": {"t": 1}, "Anything": None, "Child": child}, PROBE_LIBRARY)


def described_sample(name, child, things):
    return net("NrbfProbe.Sample", {
        "Name": net("System.String", name), "Count": net("System.Int32", 7), "Big": net("System.Int64", 2**40),
        "Ratio": net("System.Double", double_bits(0.25)), "Flag": net("System.Boolean", True),
        "Money": net("System.Decimal", "-12.30"),
        "When": net("System.DateTime", {"ticks": ticks(datetime.datetime(2024, 2, 29, 12, 0)), "kind": "Utc"}),
        "Span": net("System.TimeSpan", 90 * 60 * 10**7),
        "Id": net("System.Guid", "00000000-0000-0000-0000-000000000102"),
        "Blob": net("System.Byte[]", "00-FF"),
        "Names": net("System.String[]", [net("System.String", "p"), net("System.String", "q")]),
        "Numbers": net("System.Int32[]", [net("System.Int32", 3), net("System.Int32", 4)]),
        "Things": net("System.Object[]", things), "Table": net("System.Collections.Hashtable",
                                                               [[net("System.String", "t"), net("System.Int32", 1)]]),
        "Anything": None, "Child": child})


def to_dotnet_cases():
    """(name, Python value, what BinaryFormatter must make of it)."""
    cycle: list = []
    cycle.append(cycle)
    leaf = sample("leaf")
    aware = datetime.datetime(2020, 6, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    naive = datetime.datetime(2020, 1, 2, 3, 4, 5, 678901)
    guid = "00112233-4455-6677-8899-aabbccddeeff"
    described_leaf = described_sample("leaf", None, [])
    return [
        ("hello", "Hello World!", net("System.String", "Hello World!")),
        ("empty", "", net("System.String", "")),
        ("unicode", "h\u00e9llo \U0001F600", net("System.String", "h\u00e9llo \U0001F600")),
        ("true", True, net("System.Boolean", True)),
        ("int32", 42, net("System.Int32", 42)),
        ("int32_min", -2**31, net("System.Int32", -2**31)),
        ("int64", 2**31, net("System.Int64", 2**31)),
        ("int64_min", -2**63, net("System.Int64", -2**63)),
        ("double", 0.1, net("System.Double", double_bits(0.1))),
        ("negative_zero", -0.0, net("System.Double", double_bits(-0.0))),
        ("infinity", float("inf"), net("System.Double", double_bits(float("inf")))),
        ("decimal", decimal.Decimal("1.50"), net("System.Decimal", "1.50")),
        ("decimal_max", decimal.Decimal("-79228162514264337593543950335"),
         net("System.Decimal", "-79228162514264337593543950335")),
        ("decimal_tiny", decimal.Decimal("1E-28"), net("System.Decimal", "0.0000000000000000000000000001")),
        ("datetime_naive", naive, net("System.DateTime", {"ticks": ticks(naive), "kind": "Unspecified"})),
        ("datetime_aware", aware, net("System.DateTime", {"ticks": ticks(aware), "kind": "Utc"})),
        ("timedelta", datetime.timedelta(days=-3, microseconds=7),
         net("System.TimeSpan", (-3 * 86400 * 10**6 + 7) * 10)),
        ("guid", uuid.UUID(guid), net("System.Guid", guid)),
        ("bytes", b"\x00\x01\xff", net("System.Byte[]", "00-01-FF")),
        ("bytearray", bytearray(b"ab"), net("System.Byte[]", "61-62")),
        ("strings", ["a", "b", "a"], net("System.String[]", [net("System.String", s) for s in "aba"])),
        ("ints", (1, 2), net("System.Int32[]", [net("System.Int32", 1), net("System.Int32", 2)])),
        ("longs", [1, 2**40], net("System.Int64[]", [net("System.Int64", 1), net("System.Int64", 2**40)])),
        ("bools", [True, False], net("System.Boolean[]", [net("System.Boolean", True), net("System.Boolean", False)])),
        ("doubles", [1.5], net("System.Double[]", [net("System.Double", double_bits(1.5))])),
        ("decimals", [decimal.Decimal("2.5")], net("System.Decimal[]", [net("System.Decimal", "2.5")])),
        ("empty_list", [], net("System.Object[]", [])),
        ("objects", [1, "a", None, None, None, [2], uuid.UUID(int=1), 2.5],
         net("System.Object[]", [net("System.Int32", 1), net("System.String", "a"), None, None, None,
                                 net("System.Int32[]", [net("System.Int32", 2)]),
                                 net("System.Guid", "00000000-0000-0000-0000-000000000001"),
                                 net("System.Double", double_bits(2.5))])),
        ("cycle", cycle, net("System.Object[]", [{"ref": 1}])),
        ("dict", {"a": 1, 2: ["x"], "n": None},
         net("System.Collections.Hashtable", [
             [net("System.Int32", 2), net("System.String[]", [net("System.String", "x")])],
             [net("System.String", "a"), net("System.Int32", 1)],
             [net("System.String", "n"), None]])),
        # leaf is described where BinaryFormatter's reader meets it first, in Things; the Describer
        # numbers reference objects 1 root, 2 Blob, 3 Names, 4 Numbers, 5 Things, 6 leaf
        ("class", sample("root", child=leaf, things=[leaf, "s"]),
         described_sample("root", {"ref": 6}, [described_leaf, net("System.String", "s")])),
    ]


def canonical(description):
    """Hashtable pairs in a fixed order (a Hashtable enumerates in bucket order)."""
    if isinstance(description, dict) and "type" in description:
        value = canonical(description["value"])
        if description["type"] == "System.Collections.Hashtable":
            value = sorted(value, key=lambda pair: json.dumps(pair, sort_keys=True))
        return {"type": description["type"], "value": value}
    if isinstance(description, dict):
        return {key: canonical(item) for key, item in description.items()}
    if isinstance(description, list):
        return [canonical(item) for item in description]
    return description


SEND_RAW = """
import pickle, sys
import copydata
hwnd = int(sys.argv[1])
for name, value in pickle.loads(open(CASES, "rb").read()):
    assert copydata.send(hwnd, value, codec="nrbf", raw=True, tag=len(name)) == 1
print("done")
"""


def test_what_python_sends_raw_is_what_dotnet_deserializes(probe, dotnet_streams, tmp_path):
    cases = to_dotnet_cases()
    (tmp_path / "cases.pickle").write_bytes(pickle.dumps([(name, value) for name, value, _ in cases]))
    with copydata.Receiver(raw=True) as receiver:  # captures the bytes as they came
        received = receive_from_script(receiver, tmp_path / "send.py",
                                       f"CASES = {str(tmp_path / 'cases.pickle')!r}\n" + SEND_RAW, len(cases))
    folder = tmp_path / "from-python"
    folder.mkdir()
    files = []
    for (name, _, _), message in zip(cases, received):
        assert message.tag == len(name) and message.codec == "bytes"
        files.append(folder / f"{name}.bin")
        files[-1].write_bytes(message.data)
    assert (folder / "hello.bin").read_bytes() == dotnet_streams["hello"]  # byte for byte what .NET writes
    lines = mono(probe, "deserialize", *map(unix_path, files)).splitlines()
    results = {line["name"]: line for line in map(json.loads, lines)}
    for name, _, expected in cases:
        assert "error" not in results[name], f"{name}: BinaryFormatter refused it: {results[name]['error']}"
        assert canonical(results[name]["value"]) == canonical(expected), name


def test_mono_refuses_what_is_not_a_stream_so_the_comparison_can_fail(probe, tmp_path):
    """The deserializing side reports errors rather than inventing values."""
    (tmp_path / "broken.bin").write_bytes(HELLO_WORLD[:-5])
    result = json.loads(mono(probe, "deserialize", unix_path(tmp_path / "broken.bin")))
    assert result["name"] == "broken" and "error" in result


# --- between copydata peers: the envelope and batch frames carry codec id 5 -----------------

ENVELOPED = """
import sys, uuid
import copydata
hwnd = int(sys.argv[1])
copydata.send(hwnd, {"job": [1, "x"], "id": uuid.UUID(int=9)}, codec="nrbf", tag=1)
with copydata.Sender(hwnd, codec="nrbf") as sender:
    for index in range(100):
        sender.send([index, "v" * index], tag=2)
print("done")
"""


def test_nrbf_between_copydata_peers_travels_in_the_envelope_and_in_batches(tmp_path):
    with copydata.Receiver() as receiver:  # a bytes receiver: the envelope says nrbf
        received = receive_from_script(receiver, tmp_path / "peer.py", ENVELOPED, 101)
        # a batch frame whose codec id C did not know would have been refused as malformed
        assert (receiver.stats.undecodable, receiver.stats.refused_messages) == (0, 0)
    assert received[0] == copydata.Message(1, {"job": [1, "x"], "id": uuid.UUID(int=9)}, 0, "nrbf", None)
    assert [(m.tag, m.data, m.codec) for m in received[1:]] == [(2, [i, "v" * i], "nrbf") for i in range(100)]


# --- the examples ---------------------------------------------------------------------------

def test_the_seed_examples_talk_to_each_other():
    import subprocess
    examples = Path(__file__).resolve().parent.parent / "examples"
    result = subprocess.run([sys.executable, str(examples / "seed_sink.py"), "--spawn-transfer"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "received 'Hello World!'" in result.stdout
    assert result.stdout.count("received") == 3
