"""Receivers found by name: published in shared memory, unique, withdrawn at close."""

from __future__ import annotations

import mmap
import os
import struct

import pytest

import copydata


def test_find_returns_the_receivers_window_and_none_after_close(unique_name):
    with copydata.Receiver(unique_name) as receiver:
        assert receiver.name == unique_name
        assert copydata.find(unique_name) == receiver.hwnd
    assert copydata.find(unique_name) is None


def test_find_unknown_name_is_none_and_send_to_it_raises_target_not_found(unique_name):
    assert copydata.find(unique_name) is None
    with pytest.raises(copydata.TargetNotFound, match="no live receiver is named"):
        copydata.send(unique_name, b"x")


def test_second_receiver_with_the_same_name_in_one_process_is_refused(unique_name):
    with copydata.Receiver(unique_name) as first:
        with pytest.raises(copydata.NameInUse, match=unique_name):
            copydata.Receiver(unique_name)
        assert copydata.find(unique_name) == first.hwnd
    with copydata.Receiver(unique_name) as again:
        assert copydata.find(unique_name) == again.hwnd


def test_name_held_by_another_process_is_refused_until_it_exits(start_peer, unique_name):
    peer = start_peer("serve", unique_name)
    hwnd = peer.wait_ready()
    assert copydata.find(unique_name) == hwnd
    with pytest.raises(copydata.NameInUse):
        copydata.Receiver(unique_name)
    peer.finish()
    with copydata.Receiver(unique_name) as receiver:
        assert copydata.find(unique_name) == receiver.hwnd


def test_a_dead_holders_stale_entry_is_ignored_and_taken_over(start_peer, unique_name):
    peer = start_peer("serve", unique_name)
    hwnd = peer.wait_ready()
    # Holding the section open keeps the dead peer's entry in it: a stale entry.
    section = mmap.mmap(-1, 8, tagname=f"Local\\copydata.v1.name.{unique_name}")
    try:
        assert struct.unpack("<Q", section[:8])[0] & 0xFFFFFFFF == hwnd & 0xFFFFFFFF
        peer.kill()
        assert copydata.find(unique_name) is None
        with copydata.Receiver(unique_name) as receiver:
            assert copydata.find(unique_name) == receiver.hwnd
            assert struct.unpack("<Q", section[:8])[0] >> 32 == os.getpid()
        assert struct.unpack("<Q", section[:8])[0] == 0
    finally:
        section.close()


@pytest.mark.parametrize("name, error", [
    ("", ValueError), ("a" * 129, ValueError), ("back\\slash", ValueError), ("nul\0", ValueError),
    (b"bytes", TypeError), (7, TypeError),
])
def test_invalid_names_are_refused_everywhere(name, error):
    with pytest.raises(error):
        copydata.find(name)
    with pytest.raises(error):
        copydata.Receiver(name)


def test_longest_name_and_any_unicode_work():
    for name in ["n" * 128, "jöbs/ünïcode ✓ 名前"]:
        with copydata.Receiver(name) as receiver:
            assert copydata.find(name) == receiver.hwnd
            copydata.send(name, b"hi")
            assert receiver.recv(timeout=5).data == b"hi"
