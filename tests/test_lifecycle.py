"""Opening and closing: nothing delivered twice or lost at close, nothing leaked after it."""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
import threading
import time

import copydata
from conftest import os_thread_count, process_handle_count


def test_close_delivers_everything_accepted_before_it():
    delivered = []
    release = threading.Event()

    def on_message(message):
        release.wait(10)  # hold the dispatcher so that messages pile up in the queue
        delivered.append(message.tag)

    receiver = copydata.Receiver(on_message=on_message)
    for tag in range(50):
        assert copydata.send(receiver, b"m", tag=tag) == 1
    threading.Timer(0.2, release.set).start()
    receiver.close()
    assert delivered == list(range(50))
    assert receiver.stats.dropped_messages == 0


def test_close_from_inside_on_message_closes_after_the_callback():
    closed_inside = threading.Event()
    receiver_box = []

    def on_message(message):
        receiver_box[0].close()
        closed_inside.set()

    with copydata.Receiver(on_message=on_message) as receiver:
        receiver_box.append(receiver)
        copydata.send(receiver, b"close yourself")
        assert closed_inside.wait(10)
        deadline = time.monotonic() + 10
        while copydata._native.lib.cd_receiver_hwnd(receiver._native._handle) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver.closed
        try:
            copydata.send(receiver.hwnd, b"too late")
        except copydata.TargetNotFound:
            pass
        else:
            raise AssertionError("the window still accepted messages after closing itself")


def test_closing_twice_and_closing_a_closed_sync_receiver_is_harmless():
    receiver = copydata.Receiver(on_message=lambda m: 5, sync=True)
    assert copydata.send(receiver, b"x") == 5
    receiver.close()
    receiver.close()
    assert receiver.closed


def test_sync_receiver_closed_while_a_sender_waits_releases_the_sender():
    started = threading.Event()

    def on_message(message):
        started.set()
        time.sleep(1.0)
        return 9

    outcome = []
    receiver = copydata.Receiver(on_message=on_message, sync=True)

    def sender():
        try:
            outcome.append(copydata.send(receiver.hwnd, b"x", timeout=30))
        except copydata.CopyDataError as error:
            outcome.append(type(error))

    thread = threading.Thread(target=sender)
    thread.start()
    assert started.wait(10)
    began = time.monotonic()
    receiver.close()  # waits for the running callback, whose answer still reaches the sender
    thread.join(10)
    assert not thread.is_alive()
    assert outcome == [9]
    assert time.monotonic() - began < 5


def test_200_receivers_opened_and_closed_leak_no_handles_or_threads(unique_name):
    def cycle(count):
        for index in range(count):
            receiver = copydata.Receiver(f"{unique_name}-{index}", on_message=lambda m: None)
            copydata.send(receiver, b"x")
            receiver.close()
        gc.collect()

    cycle(5)  # let the window class and lazily created handles exist first
    handles, threads, python_threads = process_handle_count(), os_thread_count(), threading.active_count()
    cycle(200)
    assert threading.active_count() == python_threads
    assert os_thread_count() == threads
    # A leak of one handle per receiver would show as 200; allow a few for the runtime's own.
    assert process_handle_count() - handles < 10, (handles, process_handle_count())


def test_import_on_another_platform_says_it_needs_windows():
    code = "import sys; sys.platform = 'linux'; import copydata"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "ImportError: copydata needs Windows" in result.stderr
    assert "tools/winenv.py" in result.stderr


def test_handle_count_sees_handles_come_and_go():
    # The leak test is only as good as its counter: make sure it counts.
    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.CreateEventW.restype = ctypes.c_void_p
    before = process_handle_count()
    events = [kernel32.CreateEventW(None, 0, 0, None) for _ in range(50)]
    assert process_handle_count() - before == 50
    for event in events:
        kernel32.CloseHandle(ctypes.c_void_p(event))
    assert process_handle_count() == before
