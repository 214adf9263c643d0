"""A plain send is a plain WM_COPYDATA: programs that know nothing of copydata talk to it."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

import copydata
from peer import QUIT_TAG, payload

SPECS = [(0, 0, 11), (42, 5, 12), (0xFFFFFFFF, 4096, 13), (1 << 40, 1 << 20, 14)]


def test_pywin32_window_receives_plain_send_unchanged(start_peer):
    peer = start_peer("pywin32-serve")
    hwnd = peer.wait_ready()
    with copydata.Receiver() as receiver:
        for tag, size, seed in SPECS:
            assert copydata.send(hwnd, payload(size, seed), tag=tag, sender=receiver) == 1
        for tag, size, seed in SPECS:
            assert peer.read() == {"tag": tag, "size": size, "sender": receiver.hwnd,
                                   "sha256": hashlib.sha256(payload(size, seed)).hexdigest()}
    copydata.send(hwnd, b"", tag=QUIT_TAG)
    assert peer.finish() == [{"done": True}]


def test_pywin32_sender_reaches_a_receiver_byte_exact(start_peer):
    with copydata.Receiver() as receiver:
        peer = start_peer("pywin32-send", str(receiver.hwnd), *(f"{t}:{s}:{d}" for t, s, d in SPECS))
        for tag, size, seed in SPECS:
            assert peer.read() == {"result": 1}
            message = receiver.recv(timeout=30)
            assert (message.tag, message.data) == (tag, payload(size, seed))
        peer.finish()


# What tests/native/utf16_sender.c sends: (tag, text, whether cbData counts the NUL)
C_MESSAGES = [(1, "Hello from C", True), (2, "héllo wörld ✓", True), (3, "no terminating NUL", False),
              (4, "", True), (0xFFFFFFFF, "clef 𝄞 surrogate pair", True)]


@pytest.mark.parametrize("bits", [64, 32])
def test_c_sender_of_utf16_strings_is_read_as_str(test_program, bits):
    with copydata.Receiver(codec="utf-16") as text_receiver, copydata.Receiver() as byte_receiver:
        for receiver in (text_receiver, byte_receiver):
            result = subprocess.run([test_program("utf16_sender", bits), str(receiver.hwnd)],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            assert result.stdout.split() == ["1"] * len(C_MESSAGES)
        texts = [text_receiver.recv(timeout=10) for _ in C_MESSAGES]
        assert [(message.tag, message.data, message.codec) for message in texts] == [
            (tag, text, "utf-16") for tag, text, _ in C_MESSAGES]
        raw = [byte_receiver.recv(timeout=10).data for _ in C_MESSAGES]
        assert raw == [text.encode("utf-16-le") + (b"\0\0" if nul else b"") for _, text, nul in C_MESSAGES]
