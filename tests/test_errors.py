"""Every failure is a typed error that says what happened, within the time it should take."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import copydata


def test_send_to_a_closed_receiver_in_this_process_raises_target_not_found():
    receiver = copydata.Receiver()
    hwnd = receiver.hwnd
    receiver.close()
    with pytest.raises(copydata.TargetNotFound, match="does not exist"):
        copydata.send(hwnd, b"x")
    with pytest.raises(copydata.TargetNotFound, match="closed"):
        copydata.send(receiver, b"x")


def test_send_to_a_receiver_whose_process_ended_raises_target_not_found(start_peer):
    peer = start_peer("serve")
    hwnd = peer.wait_ready()
    assert copydata.send(hwnd, b"alive") == 1
    peer.finish()
    with pytest.raises(copydata.TargetNotFound):
        copydata.send(hwnd, b"gone")


def test_blocked_callback_makes_a_short_timeout_raise_send_timeout_in_time(start_peer):
    # The peer's sync callback sleeps 5 s while the sender waits for its answer.
    peer = start_peer("serve", "--sync-sleep", "5")
    hwnd = peer.wait_ready()
    started = time.monotonic()
    with pytest.raises(copydata.SendTimeout, match="did not answer within 0.5 s"):
        copydata.send(hwnd, b"slow", timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 2.0, f"SendTimeout after {elapsed:.2f} s for a 0.5 s timeout"
    assert peer.read()["size"] == 4  # the callback did get the message
    peer.finish()


def test_oversized_message_is_rejected_and_the_receiver_goes_on(start_peer):
    peer = start_peer("serve", "--max-message-size", "1000")
    hwnd = peer.wait_ready()
    with pytest.raises(copydata.Rejected, match="answered 0"):
        copydata.send(hwnd, b"x" * 1001, tag=1)
    assert copydata.send(hwnd, b"y" * 1000, tag=2) == 1
    assert peer.read()["tag"] == 2
    stats = peer.finish()[-1]["stats"]
    assert (stats["refused_too_large"], stats["refused_bytes"], stats["received_messages"]) == (1, 1001, 1)


def test_message_above_max_size_is_refused_before_sending():
    with copydata.Receiver() as receiver:
        with pytest.raises(copydata.MessageTooLarge, match="nothing was sent"):
            copydata.send(receiver, b"x" * 11, max_size=10)
        with pytest.raises(copydata.MessageTooLarge):
            copydata.send(receiver, bytes(copydata.MAX_MESSAGE_SIZE + 1))
        assert copydata.send(receiver, bytes(copydata.MAX_MESSAGE_SIZE)) == 1
        assert len(receiver.recv(timeout=10).data) == copydata.MAX_MESSAGE_SIZE
        assert receiver.stats.received_messages == 1
        assert receiver.stats.refused_messages == 0


def test_full_queue_refuses_without_losing_what_is_queued():
    with copydata.Receiver(max_queue_messages=3) as receiver:
        for tag in range(3):
            copydata.send(receiver, bytes([tag]), tag=tag)
        with pytest.raises(copydata.Rejected):
            copydata.send(receiver, b"\x03", tag=3)
        assert copydata.send(receiver, b"\x04", tag=4, check=False) == 0
        assert [receiver.recv(timeout=1).tag for _ in range(3)] == [0, 1, 2]
        copydata.send(receiver, b"\x05", tag=5)
        assert receiver.recv(timeout=1).tag == 5
        stats = receiver.stats
        assert (stats.received_messages, stats.refused_queue_full, stats.queued_messages) == (4, 2, 0)


def test_queue_byte_limit_refuses_too():
    with copydata.Receiver(max_message_size=100, max_queue_bytes=250) as receiver:
        copydata.send(receiver, bytes(100))
        copydata.send(receiver, bytes(100))
        with pytest.raises(copydata.Rejected):
            copydata.send(receiver, bytes(100))
        assert receiver.stats.queued_bytes == 200


def test_exception_in_on_message_is_logged_and_delivery_goes_on(caplog):
    delivered = []
    done = threading.Event()

    def on_message(message):
        if message.tag % 2:
            raise RuntimeError(f"bad message {message.tag}")
        delivered.append(message.tag)
        if message.tag == 8:
            done.set()

    with caplog.at_level(logging.ERROR, logger="copydata"):
        started = time.monotonic()
        with copydata.Receiver(on_message=on_message) as receiver:
            for tag in range(9):
                copydata.send(receiver, b"m", tag=tag)
            assert done.wait(10)
        elapsed = time.monotonic() - started
    assert delivered == [0, 2, 4, 6, 8]
    errors = [record for record in caplog.records if record.name == "copydata"]
    # Logged with its traceback, at most once a second: any sender can make a callback raise.
    assert 1 <= len(errors) <= min(4, 1 + elapsed)
    assert all(record.exc_info and isinstance(record.exc_info[1], RuntimeError) for record in errors)


def test_sync_mode_returns_the_callbacks_answer_to_the_sender(caplog):
    def on_message(message):
        if message.tag == 0:
            return None
        if message.tag == 1:
            return 42
        if message.tag == 2:
            return -7
        if message.tag == 3:
            return "not an int"
        if message.tag == 4:
            return 1 << 63
        raise ValueError("refuse this one")

    with copydata.Receiver(on_message=on_message, sync=True) as receiver:
        assert copydata.send(receiver, b"a", tag=0) == 1
        assert copydata.send(receiver, b"b", tag=1) == 42
        assert copydata.send(receiver, b"c", tag=2) == -7
        assert copydata.send(receiver, b"d", tag=3) == 1
        with caplog.at_level(logging.ERROR, logger="copydata"):
            with pytest.raises(copydata.Rejected):
                copydata.send(receiver, b"e", tag=4)
            with pytest.raises(copydata.Rejected):
                copydata.send(receiver, b"f", tag=5)
        assert any("LRESULT" in record.getMessage() for record in caplog.records)
        assert any("on_message raised" in record.getMessage() for record in caplog.records)


def test_sync_mode_answer_reaches_a_sender_in_another_process(start_peer):
    peer = start_peer("serve", "--sync-sleep", "0.01")
    hwnd = peer.wait_ready()
    assert [copydata.send(hwnd, b"x", tag=tag) for tag in (0, 5, 77)] == [1000, 1005, 1077]
    peer.finish()


def test_recv_times_out_with_recv_timeout_and_ends_with_receiver_closed():
    receiver = copydata.Receiver()
    started = time.monotonic()
    with pytest.raises(copydata.RecvTimeout):
        receiver.recv(timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    with pytest.raises(copydata.RecvTimeout):
        receiver.recv(timeout=0)
    copydata.send(receiver, b"last", tag=3)
    closer = threading.Timer(0.3, receiver.close)
    closer.start()
    # Iteration yields what is queued, then waits, and ends when the receiver closes.
    assert list(receiver) == [copydata.Message(tag=3, data=b"last", sender=0)]
    closer.join()
    with pytest.raises(copydata.ReceiverClosed):
        receiver.recv(timeout=1)


def test_queue_mode_close_drops_and_counts_what_nobody_received():
    receiver = copydata.Receiver()
    for tag in range(3):
        copydata.send(receiver, b"abcd", tag=tag)
    receiver.close()
    stats = receiver.stats
    assert (stats.dropped_messages, stats.dropped_bytes, stats.queued_messages) == (3, 12, 0)
    with pytest.raises(copydata.ReceiverClosed):
        receiver.recv(timeout=0)


def test_typed_errors_for_bad_arguments():
    with copydata.Receiver() as receiver:
        with pytest.raises(TypeError, match="encode"):
            copydata.send(receiver, "text")
        with pytest.raises(ValueError, match="tag"):
            copydata.send(receiver, b"x", tag=-1)
        with pytest.raises(ValueError, match="tag"):
            copydata.send(receiver, b"x", tag=1 << 64)
        with pytest.raises(ValueError, match="timeout"):
            copydata.send(receiver, b"x", timeout=0)
        with pytest.raises(TypeError, match="target"):
            copydata.send(3.5, b"x")
        with pytest.raises(ValueError, match="HWND_BROADCAST"):
            copydata.send(0xFFFF, b"x")
        with copydata.Receiver(on_message=print) as callback_receiver:
            with pytest.raises(RuntimeError, match="on_message"):
                callback_receiver.recv()
        with pytest.raises(ValueError, match="sync=True needs on_message"):
            copydata.Receiver(sync=True)
        with pytest.raises(ValueError, match="max_queue_bytes"):
            copydata.Receiver(max_message_size=10, max_queue_bytes=5)
    assert issubclass(copydata.SendTimeout, TimeoutError)
    assert all(issubclass(error, copydata.CopyDataError) for error in (
        copydata.TargetNotFound, copydata.SendTimeout, copydata.Rejected, copydata.MessageTooLarge,
        copydata.SendFailed, copydata.NameInUse, copydata.ReceiverClosed, copydata.RecvTimeout))
