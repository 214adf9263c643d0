"""Channels: broadcast reaches every live subscriber, skips the dead, and waits for no hung one."""

from __future__ import annotations

import mmap
import struct
import threading
import time

import pytest

import copydata


def test_broadcast_reaches_subscribers_in_other_processes_and_this_one(start_peer, unique_name):
    peers = [start_peer("serve", "--channel", unique_name) for _ in range(3)]
    hwnds = [peer.wait_ready() for peer in peers]
    got = []
    with copydata.Receiver(channels=[unique_name], on_message=got.append) as local:
        assert sorted(copydata.subscribers(unique_name)) == sorted(hwnds + [local.hwnd])
        accepted = copydata.broadcast(unique_name, b"to everyone", tag=21)
        assert accepted == {hwnd: True for hwnd in hwnds + [local.hwnd]}
        for peer in peers:
            assert peer.read()["tag"] == 21
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [(message.tag, message.data) for message in got] == [(21, b"to everyone")]
    for peer in peers:
        peer.finish()
    assert copydata.subscribers(unique_name) == []
    assert copydata.broadcast(unique_name, b"nobody") == {}


def test_broadcast_with_a_codec(unique_name):
    with copydata.Receiver(channels=[unique_name, unique_name + "-other"]) as receiver:
        copydata.broadcast(unique_name, {"event": "saved"}, codec="json")
        assert receiver.recv(timeout=5).data == {"event": "saved"}
        assert receiver.channels == (unique_name, unique_name + "-other")


def test_dead_subscribers_are_cleaned_up(start_peer, unique_name):
    peer = start_peer("serve", "--channel", unique_name)
    dead = peer.wait_ready()
    # Hold the section open so that the killed peer's entry stays behind, stale.
    section = mmap.mmap(-1, 256 * 8, tagname=f"Local\\copydata.v1.channel.{unique_name}")
    try:
        peer.kill()
        with copydata.Receiver(channels=[unique_name]) as alive:
            assert copydata.subscribers(unique_name) == [alive.hwnd]
            assert copydata.broadcast(unique_name, b"x") == {alive.hwnd: True}
            entries = [value for (value,) in struct.iter_unpack("<Q", section[:256 * 8]) if value]
            assert [entry & 0xFFFFFFFF for entry in entries] == [alive.hwnd & 0xFFFFFFFF]
            assert dead & 0xFFFFFFFF not in [entry & 0xFFFFFFFF for entry in entries]
    finally:
        section.close()


def test_a_hung_subscriber_does_not_hold_up_the_others(start_peer, unique_name):
    hung_peer = start_peer("serve", "--channel", unique_name, "--sync-sleep", "10")
    hung = hung_peer.wait_ready()
    with copydata.Receiver(channels=[unique_name]) as first, copydata.Receiver(channels=[unique_name]) as second:
        started = time.monotonic()
        accepted = copydata.broadcast(unique_name, b"event", timeout=1.0)
        elapsed = time.monotonic() - started
        assert accepted == {hung: False, first.hwnd: True, second.hwnd: True}
        assert elapsed < 3.0, f"broadcast took {elapsed:.1f} s with a 1 s timeout"
        assert first.recv(timeout=1).data == second.recv(timeout=1).data == b"event"
    hung_peer.kill()


def test_a_full_channel_says_so(unique_name):
    receivers = [copydata.Receiver(channels=[unique_name]) for _ in range(256)]
    try:
        with pytest.raises(copydata.ChannelFull, match="256"):
            copydata.Receiver(channels=[unique_name])
        receivers.pop().close()
        copydata.Receiver(channels=[unique_name]).close()
    finally:
        for receiver in receivers:
            receiver.close()


def test_channel_arguments_are_checked():
    with pytest.raises(TypeError, match="list of channel names"):
        copydata.Receiver(channels="events")
    with pytest.raises(ValueError):
        copydata.Receiver(channels=["a\\b"])
    with pytest.raises(ValueError):
        copydata.subscribers("")


def test_find_window_finds_a_foreign_message_only_window(start_peer):
    peer = start_peer("pywin32-serve")
    hwnd = peer.wait_ready()
    assert copydata.find_window(class_name="copydata-tests-pywin32-peer") == hwnd
    assert copydata.find_window(title="pywin32 peer") == hwnd
    assert copydata.find_window("copydata-tests-pywin32-peer", "pywin32 peer") == hwnd
    assert copydata.find_window(class_name="no such class, surely") is None
    with pytest.raises(ValueError, match="class_name, a title"):
        copydata.find_window()
    peer.kill()


def test_find_window_finds_a_top_level_window():
    import win32con
    import win32gui

    ready = threading.Event()
    created = []

    def window_thread():
        hwnd = win32gui.CreateWindow("STATIC", "copydata top-level test window", win32con.WS_OVERLAPPED,
                                     0, 0, 10, 10, 0, 0, 0, None)
        created.append(hwnd)
        ready.set()
        win32gui.PumpMessages()

    thread = threading.Thread(target=window_thread, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        assert copydata.find_window(title="copydata top-level test window") == created[0]
    finally:
        win32gui.PostMessage(created[0], win32con.WM_CLOSE, 0, 0)


def test_allow_lower_integrity_receiver_receives_from_another_process(start_peer):
    # Wine has no integrity levels: this shows only that the filter call succeeds and the
    # window works across processes; what UIPI lets through is Windows' to enforce.
    with copydata.Receiver(allow_lower_integrity=True) as receiver:
        peer = start_peer("send", str(receiver.hwnd), "2:64:7")
        assert peer.read() == {"result": 1}
        assert receiver.recv(timeout=30).tag == 2
        peer.finish()
