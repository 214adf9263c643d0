"""libFuzzer target (atheris) for copydata's reader of .NET BinaryFormatter streams, run natively on
Linux by tools/fuzz_nrbf.py. Any byte string may arrive as a WM_COPYDATA payload at a
Receiver(codec="nrbf"), so for every input:
  - decoding returns a value or raises CodecError: never another exception, a crash or a hang
    (libFuzzer's -timeout), nor memory past -rss_limit_mb;
  - a value decoded that the writer can write again (not every one: a UInt64 past Int64, say)
    is written as a stream that decodes without error: the writer writes only what the reader reads.
Seeds: fuzz/corpus/nrbf (streams Mono's BinaryFormatter wrote, from tests/dotnet/NrbfProbe.cs).
"""

import importlib
import sys
import types
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent

# copydata/__init__.py needs Windows; the codec's modules do not: an empty package object lets
# them import one another as they do inside copydata.
package = types.ModuleType("copydata")
package.__path__ = [str(ROOT / "copydata")]
sys.modules["copydata"] = package

with atheris.instrument_imports():
    nrbf = importlib.import_module("copydata._nrbf")
    writer = importlib.import_module("copydata._nrbf_writer")
    from copydata._errors import CodecError


def test_one_input(data: bytes) -> None:
    try:
        value = nrbf.decode(data)
    except CodecError:
        return
    try:
        again = writer.encode(value)
    except (CodecError, TypeError):
        return
    nrbf.decode(again)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
