"""A Python stand-in for the C# article's NativeReceiveDataSink: a window that C# programs send
BinaryFormatter objects to, with its handle published in a memory-mapped file.

    python examples/seed_sink.py [--name NAME] [--count N]     on Windows (Ctrl-C ends it)
    python3 tools/winenv.py python examples/seed_sink.py --spawn-transfer     under Wine: it also
        starts examples/seed_transfer.py in another process, and ends once that has sent its 3 objects

A C# program of the article's kind finds it and sends to it, unchanged:

    using (var file = MemoryMappedFile.OpenExisting("copydata.example.sink"))
    using (var view = file.CreateViewAccessor())
        NativeDataTransfer.Transfer(new IntPtr(view.ReadInt64(0)), "Hello World!");

What arrives is decoded by copydata's nrbf codec into plain Python values: nothing the stream
names is ever loaded or run, unlike BinaryFormatter.Deserialize in the article's sink.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import copydata

DEFAULT_NAME = "copydata.example.sink"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=DEFAULT_NAME, help="the memory-mapped file that holds the handle")
    parser.add_argument("--count", type=int, default=None, help="end after N objects (default: run until Ctrl-C)")
    parser.add_argument("--spawn-transfer", action="store_true",
                        help="also run examples/seed_transfer.py in another process, and end after its 3 objects")
    options = parser.parse_args()
    count = 3 if options.spawn_transfer and options.count is None else options.count

    def on_error(refusal: copydata.Refusal) -> None:
        print(f"could not read a message ({refusal.reason}, {refusal.size} bytes)", flush=True)

    # codec="nrbf": payloads without copydata's envelope (the article's Transfer sends none) are
    # read as BinaryFormatter streams.
    with copydata.Receiver(codec="nrbf", on_error=on_error) as sink, \
            copydata.publish_handle(options.name, sink):
        print(f"sink {sink.hwnd:#x} published in {options.name!r}", flush=True)
        transfer = None
        if options.spawn_transfer:
            transfer = subprocess.Popen([sys.executable, str(Path(__file__).with_name("seed_transfer.py")),
                                         "--name", options.name])
        received = 0
        try:
            while count is None or received < count:
                message = sink.recv()
                received += 1
                print(f"received {message.data!r} ({message.codec})", flush=True)
        except KeyboardInterrupt:
            pass
        if transfer is not None and transfer.wait(timeout=60) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
