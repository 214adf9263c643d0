"""A Python stand-in for the C# article's NativeDataTransfer.Transfer: it finds a sink's window
through the memory-mapped file that holds its handle, and sends it objects as BinaryFormatter
streams, one WM_COPYDATA each, as Transfer does.

    python examples/seed_transfer.py [--name NAME]

The sink may be examples/seed_sink.py or a C# program of the article's kind, unchanged, which
publishes its handle so:

    var sink = new NativeReceiveDataSink();
    var file = MemoryMappedFile.CreateOrOpen("copydata.example.sink", 8);    // keep it open
    using (var view = file.CreateViewAccessor()) view.Write(0, sink.Handle.ToInt64());
    sink.DataReceived += (s, e) => Console.WriteLine(e.DataReceived);

and reads each object with BinaryFormatter.Deserialize: a string, a Hashtable and an object[].
"""

from __future__ import annotations

import argparse
import sys
import time

import copydata

DEFAULT_NAME = "copydata.example.sink"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=DEFAULT_NAME, help="the memory-mapped file that holds the handle")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the sink to appear")
    options = parser.parse_args()

    deadline = time.monotonic() + options.wait
    while (hwnd := copydata.find_published(options.name)) is None:
        if time.monotonic() > deadline:
            print(f"no live window is published in {options.name!r}", file=sys.stderr)
            return 3
        time.sleep(0.1)

    for graph in ("Hello World!", {"answer": 42, "pi": 3.14159}, [1, "two", None, b"\x03"]):
        # raw=True: the stream alone, no copydata envelope, so BinaryFormatter reads it; the
        # article's flags and timeout; a copydata sink answers 1, the article's sink 0 (check=False).
        copydata.send(hwnd, graph, codec="nrbf", raw=True, flags=copydata.SMTO_NOTIMEOUTIFNOTHUNG,
                      timeout=5.0, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
