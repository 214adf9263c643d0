"""Window handles published in a named memory-mapped file, as the C# article shares its sink's.

The other program is another process: one that publishes the way .NET's
MemoryMappedFile.CreateOrOpen(name, 8) + Write(0, handle.ToInt64()) does (Python's mmap with a
tagname makes the same paging-file section), or one that reads with find_published and sends.
"""

from __future__ import annotations

import mmap
import struct
import subprocess
import sys

import pytest

import copydata
from conftest import receive_from_script

DOTNET_STYLE_SINK = """
import mmap, struct, sys
import copydata
name, size, offset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with copydata.Receiver(codec="nrbf") as sink:
    # MemoryMappedFile.CreateOrOpen(name, offset + size); accessor.Write(offset, sink.Handle.ToInt64())
    view = mmap.mmap(-1, offset + size, tagname=name)
    view[offset:offset + size] = sink.hwnd.to_bytes(size, "little")
    print(sink.hwnd, flush=True)
    message = sink.recv(timeout=60)
    print(repr(message.data), flush=True)
    view.close()
"""


@pytest.mark.parametrize("size, offset", [(8, 0), (4, 12)])
def test_find_published_reads_a_handle_another_program_published_and_sends_to_it(tmp_path, unique_name, size, offset):
    script = tmp_path / "sink.py"
    script.write_text(DOTNET_STYLE_SINK)
    sink = subprocess.Popen([sys.executable, str(script), unique_name, str(size), str(offset)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        hwnd = int(sink.stdout.readline())
        assert copydata.find_published(unique_name, size=size, offset=offset) == hwnd
        copydata.send(copydata.find_published(unique_name, size=size, offset=offset), "Hello World!",
                      codec="nrbf", raw=True)
        assert sink.stdout.readline().strip() == "'Hello World!'"
        assert sink.wait(timeout=30) == 0, sink.stderr.read()
    finally:
        if sink.poll() is None:
            sink.kill()
    # the sink's window is gone, and so is the mapping (no program has it open)
    assert copydata.find_published(unique_name, size=size, offset=offset) is None


SEED_TRANSFER = """
import sys, time
import copydata
hwnd = copydata.find_published(NAME)
copydata.send(hwnd, {"from": "another process"}, codec="nrbf", raw=True)
print("done")
"""


def test_a_published_receiver_is_found_and_reached_from_another_process(tmp_path, unique_name):
    with copydata.Receiver(codec="nrbf") as receiver, copydata.publish_handle(unique_name, receiver) as published:
        assert (published.hwnd, published.closed) == (receiver.hwnd, False)
        received = receive_from_script(receiver, tmp_path / "transfer.py",
                                       f"NAME = {unique_name!r}\n" + SEED_TRANSFER, 1)
        assert received[0].data == {"from": "another process"}
        # what a C# reader sees: 8 little-endian bytes at offset 0 (ReadInt64(0))
        view = mmap.mmap(-1, 8, tagname=unique_name)
        assert struct.unpack("<q", view[:8])[0] == receiver.hwnd
        assert copydata.find_published(unique_name) == receiver.hwnd
    assert published.closed
    assert view[:8] == bytes(8)  # withdrawn: the mapping still open here holds 0
    assert copydata.find_published(unique_name) is None
    view.close()
    published.close()  # twice is harmless


def test_four_bytes_at_an_offset(unique_name):
    with copydata.Receiver() as receiver, copydata.publish_handle(unique_name, receiver.hwnd, size=4, offset=8):
        view = mmap.mmap(-1, 12, tagname=unique_name)
        assert struct.unpack("<I", view[8:12])[0] == receiver.hwnd and view[:8] == bytes(8)
        assert copydata.find_published(unique_name, size=4, offset=8) == receiver.hwnd
        # Past the section's end: Windows knows it has 12 bytes; Wine rounds sections up to a
        # page (NtQuerySection says 4096), so past that page is what fails under both.
        assert copydata.find_published(unique_name, size=8, offset=4096) is None
        with pytest.raises(ValueError, match="fewer than offset \\+ size \\(4104\\)"):
            copydata.publish_handle(unique_name, receiver, size=8, offset=4096)
        view.close()


def test_find_published_returns_none_for_what_is_not_a_live_window(unique_name):
    assert copydata.find_published(unique_name) is None  # no such mapping
    view = mmap.mmap(-1, 8, tagname=unique_name)
    assert copydata.find_published(unique_name) is None  # 0
    receiver = copydata.Receiver()
    view[:8] = receiver.hwnd.to_bytes(8, "little")
    assert copydata.find_published(unique_name) == receiver.hwnd
    receiver.close()
    assert copydata.find_published(unique_name) is None  # a window that closed
    view[:8] = (0xDEAD0000).to_bytes(8, "little")
    assert copydata.find_published(unique_name) is None  # never a window
    view.close()


def test_publishing_refuses_a_name_that_holds_another_live_window(unique_name):
    with copydata.Receiver() as first, copydata.Receiver() as second:
        with copydata.publish_handle(unique_name, first):
            with pytest.raises(copydata.NameInUse, match="already holds live window"):
                copydata.publish_handle(unique_name, second)
            with copydata.publish_handle(unique_name, first):  # the same window again is fine
                pass
        second_publication = copydata.publish_handle(unique_name, second)  # a stale or zero handle is taken over
        assert copydata.find_published(unique_name) == second.hwnd
        second_publication.close()


def test_publish_handle_checks_its_arguments(unique_name):
    closed = copydata.Receiver()
    closed.close()
    with pytest.raises(copydata.TargetNotFound, match="closed"):
        copydata.publish_handle(unique_name, closed)
    with pytest.raises(copydata.TargetNotFound, match="not a live window"):
        copydata.publish_handle(unique_name, 0xDEAD0000)
    with copydata.Receiver() as receiver:
        for bad in ({"size": 3}, {"size": True}, {"offset": -1}, {"offset": 1.5}):
            with pytest.raises(ValueError):
                copydata.publish_handle(unique_name, receiver, **bad)
        with pytest.raises(ValueError, match="mapping_name"):
            copydata.publish_handle("", receiver)
        with pytest.raises(ValueError, match="mapping_name"):
            copydata.find_published("a\0b")
