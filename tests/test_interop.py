"""A plain send is a plain WM_COPYDATA: programs that know nothing of copydata talk to it."""

from __future__ import annotations

import hashlib

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
