"""Faults across processes: every wait ends, with a typed error, within its timeout."""

from __future__ import annotations

import threading
import time

import pytest

import copydata


def test_receiver_killed_mid_stream_gives_the_sender_an_error_in_time(start_peer):
    peer = start_peer("serve")
    hwnd = peer.wait_ready()
    for tag in range(200):
        copydata.send(hwnd, b"stream", tag=tag, timeout=2)
    peer.kill()
    started = time.monotonic()
    errors = []
    for tag in range(5):
        try:
            copydata.send(hwnd, b"after the kill", tag=tag, timeout=2)
        except (copydata.TargetNotFound, copydata.SendTimeout) as error:
            errors.append(type(error))
    assert len(errors) == 5
    assert time.monotonic() - started < 5 * 2 + 2


def test_a_sender_streaming_to_a_receiver_that_is_killed_gets_an_error(start_peer):
    peer = start_peer("serve")
    hwnd = peer.wait_ready()
    outcome = []

    def stream():
        try:
            with copydata.Sender(hwnd, linger=0, timeout=2) as sender:
                for tag in range(1_000_000):
                    sender.send(b"x" * 64, tag=tag)
        except copydata.CopyDataError as error:
            outcome.append(type(error))

    thread = threading.Thread(target=stream)
    thread.start()
    time.sleep(0.5)
    peer.kill()
    thread.join(15)
    assert not thread.is_alive(), "the sender hung after its receiver was killed"
    assert outcome and issubclass(outcome[0], (copydata.TargetNotFound, copydata.SendTimeout))


def test_a_hung_receiver_times_senders_out_as_configured(start_peer):
    peer = start_peer("hang")
    hwnd = peer.wait_ready()
    for timeout in (0.3, 1.0):
        started = time.monotonic()
        with pytest.raises(copydata.SendTimeout):
            copydata.send(hwnd, b"anyone?", timeout=timeout)
        elapsed = time.monotonic() - started
        assert timeout * 0.9 <= elapsed < timeout + 1.5, (timeout, elapsed)
    peer.kill()


def test_a_receiver_closed_while_senders_are_blocked_releases_them_all():
    entered = threading.Event()

    def slow(message):
        entered.set()
        time.sleep(1.0)
        return 7

    receiver = copydata.Receiver(on_message=slow, sync=True)
    outcomes: list = []
    lock = threading.Lock()

    def sender(tag):
        try:
            result = copydata.send(receiver.hwnd, b"x", tag=tag, timeout=30)
        except copydata.CopyDataError as error:
            result = type(error)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=sender, args=(tag,)) for tag in range(6)]
    for thread in threads:
        thread.start()
    assert entered.wait(10)
    time.sleep(0.2)  # the other five are blocked in SendMessageTimeoutW now
    started = time.monotonic()
    receiver.close()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert time.monotonic() - started < 5
    # The message being handled is answered; the others get an error, none hangs.
    assert outcomes.count(7) == 1
    assert all(outcome in (copydata.TargetNotFound, copydata.Rejected) for outcome in outcomes if outcome != 7)
