"""32-bit programs on the other end of WM_COPYDATA, as AutoHotkey 32-bit or an older C# program is.

The peer is tests/native/wm_peer.c, built by i686 mingw-w64 (and by x86_64 mingw-w64 for
comparison), each run in a process of its own. Windows converts the COPYDATASTRUCT between a
64-bit and a 32-bit process; its dwData (the tag) is a ULONG_PTR, 32 bits wide in the 32-bit one.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import copydata
from copydata._core import ffi, lib
from peer import payload

# (tag, size): the widest tag a 32-bit program can hold, and sizes up to 1 MiB
SPECS = [(0, 0), (7, 5), (0xFFFFFFFF, 4096), (1, 1 << 20)]
WIDE_TAG = (1 << 40) | 0x1234


def running_under_wine() -> bool:
    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


class WindowPeer:
    """wm_peer.exe receive: a plain Win32 window in another process, reporting what it receives."""

    def __init__(self, program: str, kind: str, class_name: str, title: str, count: int) -> None:
        self.process = subprocess.Popen([program, "receive", kind, class_name, title, str(count)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().split()
        if not ready:
            self.process.kill()
            pytest.fail(f"wm_peer did not start: {self.process.communicate(timeout=30)}")
        self.hwnd, self.bits = int(ready[1]), int(ready[2])
        # Read while the sends go on: the peer prints inside its window procedure, so a full
        # pipe would hold the sender up.
        self.output: list[str] = []
        self.reader = threading.Thread(target=lambda: self.output.extend(self.process.communicate()), daemon=True)
        self.reader.start()

    def received(self) -> list[tuple[int, bytes]]:
        """(tag, payload) of every message, once the peer has had all it waits for and ended."""
        self.reader.join(timeout=120)
        assert not self.reader.is_alive(), "wm_peer did not end"
        out, err = self.output
        assert self.process.returncode == 0, err
        messages = []
        for line in out.splitlines():
            tag, size, *data = line.split()
            body = bytes.fromhex(data[0]) if data else b""
            assert len(body) == int(size)
            messages.append((int(tag), body))
        return messages

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def window_peer(test_program, unique_name):
    """window_peer(bits, count, kind="message") -> a WindowPeer whose class and title are unique."""
    peers: list[WindowPeer] = []

    def start(bits: int, count: int, kind: str = "message") -> WindowPeer:
        peer = WindowPeer(test_program("wm_peer", bits), kind, f"{unique_name}-class",
                          f"{unique_name}-title-{len(peers)}", count)
        peers.append(peer)
        assert peer.bits == bits
        return peer

    yield start
    for peer in peers:
        peer.kill()


def test_32bit_sender_reaches_a_receiver_tag_and_payload_exact(test_program, tmp_path: Path):
    program = test_program("wm_peer", 32)
    with copydata.Receiver() as receiver:
        for seed, (tag, size) in enumerate(SPECS):
            data_file = tmp_path / f"{seed}.bin"
            data_file.write_bytes(payload(size, seed))
            result = subprocess.run([program, "send", str(receiver.hwnd), str(tag), str(data_file)],
                                    capture_output=True, text=True, timeout=60)
            assert (result.returncode, result.stdout.split()) == (0, ["32", "1"]), result.stderr
        received = [receiver.recv(timeout=30) for _ in SPECS]
    assert [(message.tag, message.data) for message in received] == [
        (tag, payload(size, seed)) for seed, (tag, size) in enumerate(SPECS)]


def test_32bit_receiver_gets_a_plain_send_byte_exact(window_peer):
    peer = window_peer(32, len(SPECS))
    for seed, (tag, size) in enumerate(SPECS):
        assert copydata.send(peer.hwnd, payload(size, seed), tag=tag) == 1
    assert peer.received() == [(tag, payload(size, seed)) for seed, (tag, size) in enumerate(SPECS)]


def test_a_tag_above_32_bits_to_a_32bit_window_is_refused_and_nothing_is_sent(window_peer):
    peer = window_peer(32, 1)
    for tag in (1 << 32, WIDE_TAG, (1 << 64) - 1):
        with pytest.raises(copydata.TagTooLarge, match="32-bit program"):
            copydata.send(peer.hwnd, b"never", tag=tag)
    refused = subprocess.run([sys.executable, "-m", "copydata", "send", str(peer.hwnd), "never", "--tag", "0x100000000"],
                             capture_output=True, text=True, timeout=60)
    assert (refused.returncode, refused.stdout) == (5, ""), refused.stderr
    assert "32-bit program" in refused.stderr
    assert copydata.send(peer.hwnd, b"after", tag=0xFFFFFFFF) == 1
    assert peer.received() == [(0xFFFFFFFF, b"after")]


def test_a_tag_above_32_bits_reaches_a_64bit_program_whole(window_peer):
    peer = window_peer(64, 2)
    assert copydata.send(peer.hwnd, b"wide", tag=WIDE_TAG) == 1
    assert copydata.send(peer.hwnd, b"widest", tag=(1 << 64) - 1) == 1
    assert peer.received() == [(WIDE_TAG, b"wide"), ((1 << 64) - 1, b"widest")]


def test_what_a_wide_tag_becomes_in_a_32bit_window_without_the_check(window_peer):
    """Measured under Wine 8.0: 0 (Wine unpacks a dwData that does not fit as 0). Real Windows
    was not observed; it can at best keep the low 32 bits. Either way the tag is lost, which is
    why send refuses it."""
    peer = window_peer(32, 1)
    result = ffi.new("intptr_t *")
    error = ffi.new("uint32_t *")
    assert lib.cd_send(peer.hwnd, WIDE_TAG, 0, b"raw", 3, 10_000, copydata.SMTO_ABORTIFHUNG, result, error) == lib.CD_OK
    [(tag, data)] = peer.received()
    assert data == b"raw"
    assert tag == 0 if running_under_wine() else tag in (0, WIDE_TAG & 0xFFFFFFFF)


@pytest.mark.parametrize("kind", ["top", "message"])
def test_find_window_finds_a_32bit_programs_window(window_peer, unique_name, kind):
    peer = window_peer(32, 1, kind)
    title = f"{unique_name}-title-0"
    assert copydata.find_window(f"{unique_name}-class", title) == peer.hwnd
    assert copydata.find_window(title=title) == peer.hwnd
    assert copydata.find_window(f"{unique_name}-class") == peer.hwnd
    assert copydata.send(peer.hwnd, b"found", tag=3) == 1
    assert peer.received() == [(3, b"found")]
