"""Request and reply: the answer is a message, it reaches the right caller, failures are typed."""

from __future__ import annotations

import json
import logging
import pickle
import random
import threading
import time

import pytest

import copydata
from frames import wait_for


@pytest.mark.smoke
def test_request_to_another_process_returns_its_reply(start_peer, unique_name):
    peer = start_peer("serve", unique_name, "--fail-tag", "13")
    hwnd = peer.wait_ready()
    reply = copydata.request(unique_name, b"abc", tag=4)
    assert (reply.tag, reply.data, reply.sender, reply.codec) == (4, b"cba", hwnd, "bytes")
    assert copydata.request(hwnd, "shout", codec="text").data == "SHOUT"
    assert copydata.request(hwnd, [1, "x"], codec="json").data == {"echo": [1, "x"]}
    with pytest.raises(copydata.RequestFailed, match="tag 13 is refused") as failure:
        copydata.request(hwnd, b"no", tag=13)
    assert failure.value.remote_error == "ValueError: tag 13 is refused"
    reports = [peer.read() for _ in range(4)]
    assert all(report["request"] for report in reports)
    peer.finish()


@pytest.mark.smoke
def test_another_process_requests_and_a_callback_replies(start_peer):
    def on_message(message):
        return {"got": message.data, "tag": message.tag}

    with copydata.Receiver(on_message=on_message, codec="json") as receiver:
        peer = start_peer("request", str(receiver.hwnd), "json", json.dumps([1, 2]), "--tag", "8")
        assert peer.read() == {"reply": {"tag": 8, "value": {"got": [1, 2], "tag": 8},
                                         "sender": receiver.hwnd, "codec": "json"}}
        peer.finish()


def test_queue_mode_replies_with_reply():
    with copydata.Receiver() as receiver:
        result = []
        thread = threading.Thread(target=lambda: result.append(copydata.request(receiver, b"q", timeout=10)))
        thread.start()
        message = receiver.recv(timeout=10)
        assert message.is_request
        receiver.reply(message, b"answer")
        thread.join(10)
        assert result[0].data == b"answer"
        with pytest.raises(ValueError, match="not a request"):
            copydata.send(receiver, b"plain")
            receiver.reply(receiver.recv(timeout=5), b"x")


def test_sync_mode_replies_while_the_requester_waits():
    with copydata.Receiver(on_message=lambda m: m.data.upper(), sync=True, codec="text") as receiver:
        assert copydata.request(receiver, "sync", codec="text").data == "SYNC"


def test_concurrent_requests_from_many_threads_each_get_their_own_reply(start_peer):
    peer = start_peer("serve")
    hwnd = peer.wait_ready()
    answers: dict[int, list[bytes]] = {}

    def worker(index):
        answers[index] = [copydata.request(hwnd, f"{index}:{n}".encode(), timeout=30).data
                          for n in range(25)]

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert {index: answers[index] for index in range(8)} == {
        index: [f"{index}:{n}".encode()[::-1] for n in range(25)] for index in range(8)}
    peer.finish()


def test_request_to_a_window_that_never_replies_times_out(start_peer):
    peer = start_peer("pywin32-serve")  # answers 1 but knows nothing of replies
    hwnd = peer.wait_ready()
    started = time.monotonic()
    with pytest.raises(copydata.RequestTimeout):
        copydata.request(hwnd, b"hello?", timeout=0.5)
    assert 0.45 <= time.monotonic() - started < 3
    peer.kill()


def test_pickle_requests_need_allow_pickle_on_both_sides(start_peer):
    with pytest.raises(ValueError, match="allow_pickle"):
        copydata.request(1234, {1}, codec="pickle")
    peer = start_peer("serve")  # no --allow-pickle
    hwnd = peer.wait_ready()
    with pytest.raises(copydata.RequestFailed, match="does not accept pickle"):
        copydata.request(hwnd, {1}, codec="pickle", allow_pickle=True)
    peer.finish()
    with copydata.Receiver(on_message=lambda m: {"set": m.data}, allow_pickle=True) as receiver:
        assert copydata.request(receiver, {1, 2}, codec="pickle", allow_pickle=True).data == {"set": {1, 2}}


def test_a_forged_reply_is_counted_and_ignored():
    from copydata import _envelope, _request

    window = _request.reply_window()
    before = window.stats.stray_replies
    forged = _envelope.wrap(b"forged", 0, _envelope.REPLY, 987654321)
    copydata.send(window.hwnd, forged, check=False)
    deadline = time.monotonic() + 5
    while window.stats.stray_replies == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert window.stats.stray_replies == before + 1


def test_a_callback_reply_the_codec_cannot_encode_fails_the_request_at_once(start_peer):
    """Not a RequestTimeout after the whole timeout: the requester hears why at once."""
    with copydata.Receiver(on_message=lambda message: {1, 2}, codec="json") as receiver:
        peer = start_peer("request", str(receiver.hwnd), "json", json.dumps([1]))  # waits up to 10 s
        started = time.monotonic()
        report = peer.read(timeout=30)
        assert report["error"] == "RequestFailed"
        assert "could not be encoded: TypeError" in report["message"]
        assert time.monotonic() - started < 8
        peer.finish()


def test_queue_mode_reply_raises_the_codec_error_and_may_reply_again():
    with copydata.Receiver() as receiver:
        result = []
        thread = threading.Thread(
            target=lambda: result.append(copydata.request(receiver, "q", codec="text", timeout=10)))
        thread.start()
        message = receiver.recv(timeout=10)
        with pytest.raises(TypeError, match="the text codec sends str, not int"):
            receiver.reply(message, 42)
        receiver.reply(message, "forty-two")
        thread.join(10)
        assert result[0].data == "forty-two"


def test_forged_pickled_replies_never_reach_a_request_that_allows_pickle(start_peer, tmp_path):
    """While a request with allow_pickle=True waits, another process sprays its reply window
    with pickled replies under every likely request id, claiming to come from the target: none
    is taken, so no code of theirs runs, and the genuine reply still arrives."""
    from copydata import _envelope, _request
    from peer import Evil

    ran = tmp_path / "forged-reply-ran"
    target = start_peer("serve", "--sync-sleep", "2", "--allow-pickle")
    hwnd = target.wait_ready()
    window = _request.reply_window()
    result: list = []
    requester = threading.Thread(target=lambda: result.append(
        copydata.request(hwnd, {"question": 1}, codec="pickle", allow_pickle=True, timeout=20)))
    requester.start()
    assert target.read(timeout=10)["request"]  # the request waits for its reply now
    evil = pickle.dumps(Evil(str(ran)))
    ids = [*range(1, 65), *(random.getrandbits(64) | 1 for _ in range(16))]
    strays = window.stats.stray_replies
    forger = start_peer("send-raw", str(window.hwnd), "--sender", str(hwnd),
                        *(_envelope.wrap(evil, 4, _envelope.REPLY, request_id).hex() for request_id in ids))
    assert [forger.read()["result"] for _ in ids] == [1] * len(ids)  # queued: they reach the reply window
    wait_for(lambda: window.stats.stray_replies == strays + len(ids))  # ... which takes none of them
    requester.join(30)
    assert result and result[0].data == {"echo": {"question": 1}}
    assert not ran.exists(), "a forged pickled reply was unpickled"
    target.finish()


@pytest.mark.parametrize("sync", [False, True], ids=["queue", "sync"])
def test_forged_requests_naming_a_hung_window_do_not_hold_up_delivery(start_peer, sync):
    """Each request's reply goes to the window it names; three naming a window that never answers
    held every message behind them for the reply timeout (5 s) each."""
    from copydata import _envelope

    hung = start_peer("hang").wait_ready()
    delivered: dict[bytes, float] = {}
    with copydata.Receiver(on_message=lambda message: delivered.setdefault(message.data, time.monotonic()),
                           sync=sync, reply_timeout=5) as receiver:
        forged = [_envelope.wrap(b"?", 0, _envelope.REQUEST, n).hex() for n in (11, 12, 13)]
        forger = start_peer("send-raw", str(receiver.hwnd), "--sender", str(hung), *forged, b"legit".hex())
        assert [forger.read(timeout=30) for _ in range(4)] == [{"result": 1}] * 4
        deadline = time.monotonic() + 10
        while b"legit" not in delivered and time.monotonic() < deadline:
            time.sleep(0.01)
        # From the first forged request's delivery (the peer's start-up is not what is measured).
        waited = delivered.get(b"legit", deadline) - delivered[b"?"]
        assert waited < 3, f"the legitimate message waited {waited:.1f} s for the forged replies"


def test_replies_that_fail_warn_at_most_once_a_second(start_peer, caplog):
    """Any process can send requests whose replies fail (to window 0, say): the warnings they
    cause are throttled, one a second, as documented."""
    from copydata import _envelope

    with copydata.Receiver(on_message=lambda message: None) as receiver:
        forged = [_envelope.wrap(b"?", 0, _envelope.REQUEST, n).hex() for n in range(1, 201)]
        with caplog.at_level(logging.WARNING, logger="copydata"):
            started = time.monotonic()
            forger = start_peer("send-raw", str(receiver.hwnd), *forged)
            assert [forger.read(timeout=30)["result"] for _ in forged] == [1] * len(forged)
            time.sleep(0.5)
            elapsed = time.monotonic() - started
    warnings = [record for record in caplog.records if record.name == "copydata"]
    assert len(warnings) <= 1 + elapsed, f"{len(warnings)} warnings in {elapsed:.1f} s"
    assert warnings, "a failed reply says so"
