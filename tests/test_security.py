"""Receivers with a key: only messages sealed with it, for this window and tag, once each."""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import struct
import threading
import time

import pytest

import copydata
from copydata import _envelope
from copydata._core import lib
from peer import payload

KEY = bytes(range(32))
KEY_HEX = KEY.hex()
OTHER_KEY = bytes(range(1, 33))

_kernel32 = ctypes.WinDLL("kernel32")
_kernel32.GetTickCount64.restype = ctypes.c_uint64


def seal(inner: bytes, target: int, tag: int, *, key: bytes = KEY, sealer: int = 0x5EA1, counter: int = 1,
         age_ms: int = 0) -> bytes:
    """A sealed frame written out by hand from the layout in copydata/_seal.py."""
    signed = struct.pack("<4sBBBBQ", b"\x89CDE", 1, 0, 7, 0, 0) + struct.pack(
        "<QQQ", sealer, counter, _kernel32.GetTickCount64() - age_ms)
    mac = hmac.new(key, struct.pack("<QQ", target & 0xFFFFFFFF, tag) + signed + inner, hashlib.sha256).digest()
    return signed + mac + inner


def send_raw(target: int, frame: bytes, tag: int = 0) -> int:
    """The frame as it is, as a foreign program would send it: the receiver's answer."""
    return copydata.send(target, frame, tag=tag, check=False)


def drain(receiver: copydata.Receiver) -> list[copydata.Message]:
    messages: list[copydata.Message] = []
    while True:
        try:
            messages.extend(receiver.recv_many(1000, timeout=0.2))
        except copydata.RecvTimeout:
            return messages


def test_keys_are_checked_before_anything_is_opened():
    with pytest.raises(ValueError, match="16 to 1024 bytes"):
        copydata.Receiver(key=b"short")
    with pytest.raises(TypeError, match="key must be bytes"):
        copydata.Receiver(key="a text key of enough length")  # type: ignore[arg-type]
    with copydata.Receiver() as receiver:
        with pytest.raises(ValueError, match="16 to 1024 bytes"):
            copydata.send(receiver, b"x", key=bytes(2000))
        with pytest.raises(ValueError, match="16 to 1024 bytes"):
            copydata.Sender(receiver, key=b"")
        assert receiver.stats.received_messages == 0


def test_a_keyed_receiver_in_another_process_takes_only_what_is_sealed_with_its_key(start_peer):
    peer = start_peer("serve", "--key", KEY_HEX)
    hwnd = peer.wait_ready()
    assert copydata.send(hwnd, payload(100, 1), tag=11, key=KEY) == 1
    for unsealed in ({}, {"key": OTHER_KEY}):
        with pytest.raises(copydata.Rejected):
            copydata.send(hwnd, payload(100, 2), tag=12, **unsealed)
    # Right key, but the tag was changed on the way, or it was sealed for another window.
    frame = seal(payload(10, 3), hwnd, tag=13)
    assert send_raw(hwnd, frame, tag=14) == 0
    assert send_raw(hwnd, seal(payload(10, 3), hwnd + 4, tag=13, counter=2), tag=13) == 0
    # One changed byte anywhere: the inner payload, the counter, the MAC.
    for position in (len(frame) - 1, 24, 50):
        forged = bytearray(frame)
        forged[position] ^= 0x01
        assert send_raw(hwnd, bytes(forged), tag=13) == 0
    assert send_raw(hwnd, frame, tag=13) == 1  # the genuine frame, after all of that

    received = peer.read()
    assert (received["tag"], received["sha256"]) == (11, hashlib.sha256(payload(100, 1)).hexdigest())
    assert peer.read()["sha256"] == hashlib.sha256(payload(10, 3)).hexdigest()
    stats = peer.finish()[-1]["stats"]
    assert stats["received_messages"] == 2
    assert stats["refused_unauthenticated"] == 7
    assert stats["refused_messages"] == 7


def test_a_sealed_frame_is_taken_once_late_ones_once_each_and_old_ones_never():
    with copydata.Receiver(key=KEY) as receiver:
        hwnd = receiver.hwnd
        frames = {n: seal(b"n%d" % n, hwnd, tag=n, counter=n) for n in range(1, 101)}
        assert send_raw(hwnd, frames[1], tag=1) == 1
        assert send_raw(hwnd, frames[1], tag=1) == 0                         # replayed
        assert send_raw(hwnd, frames[80], tag=80) == 1
        assert [send_raw(hwnd, frames[n], tag=n) for n in (79, 50, 17)] == [1, 1, 1]  # late, within 64
        assert send_raw(hwnd, frames[50], tag=50) == 0                       # late, but seen
        assert send_raw(hwnd, frames[16], tag=16) == 0                       # 64 behind the newest
        assert send_raw(hwnd, frames[81], tag=81) == 1
        # Another sealer's counters are its own.
        assert send_raw(hwnd, seal(b"other", hwnd, tag=1, sealer=0xB0B, counter=1), tag=1) == 1
        # A seal stamped more than 60 s ago, or more than 1 s ahead, is refused however new.
        assert send_raw(hwnd, seal(b"old", hwnd, tag=1, counter=500, age_ms=61_000), tag=1) == 0
        assert send_raw(hwnd, seal(b"ahead", hwnd, tag=1, counter=501, age_ms=-5_000), tag=1) == 0
        assert send_raw(hwnd, seal(b"recent", hwnd, tag=1, counter=502, age_ms=30_000), tag=1) == 1

        delivered = [(m.tag, m.data) for m in drain(receiver)]
        assert delivered == [(1, b"n1"), (80, b"n80"), (79, b"n79"), (50, b"n50"), (17, b"n17"), (81, b"n81"),
                             (1, b"other"), (1, b"recent")]
        stats = receiver.stats
        assert (stats.refused_replayed, stats.refused_unauthenticated, stats.received_messages) == (5, 0, 8)


def test_a_refused_sealed_frame_may_be_offered_again():
    with copydata.Receiver(key=KEY, max_queue_messages=1) as receiver:
        hwnd = receiver.hwnd
        assert send_raw(hwnd, seal(b"first", hwnd, tag=0, counter=1)) == 1
        second = seal(b"second", hwnd, tag=0, counter=2)
        assert send_raw(hwnd, second) == 0                  # the queue is full: not taken
        assert receiver.recv(timeout=5).data == b"first"
        assert send_raw(hwnd, second) == 1                  # so not counted as seen either
        assert receiver.recv(timeout=5).data == b"second"
        assert receiver.stats.refused_queue_full == 1
        assert receiver.stats.refused_replayed == 0


def test_a_sealed_frame_refused_for_its_size_is_not_counted_as_seen():
    three = _envelope.header(0, lib.CD_KIND_BATCH) + b"".join(struct.pack("<QI", tag, 1) + b"x" for tag in range(3))
    with copydata.Receiver(key=KEY, max_queue_messages=2) as receiver:
        hwnd = receiver.hwnd
        frame = seal(three, hwnd, tag=0, counter=1)
        assert send_raw(hwnd, frame) == lib.CD_ANSWER_NEVER_FITS  # 3 messages: never fits a queue of 2
        assert send_raw(hwnd, frame) == lib.CD_ANSWER_NEVER_FITS  # refused again for its size, not as replayed
        assert (receiver.stats.refused_too_large, receiver.stats.refused_replayed) == (2, 0)
        assert receiver.stats.received_messages == 0


def test_a_receiver_without_a_key_refuses_sealed_messages_it_cannot_check():
    with copydata.Receiver() as receiver:
        with pytest.raises(copydata.Rejected):
            copydata.send(receiver, b"sealed", key=KEY)
        assert receiver.stats.refused_unauthenticated == 1
    with copydata.Receiver(raw=True) as receiver:  # raw: every payload as it came
        frame = seal(b"sealed", receiver.hwnd, tag=0)
        assert send_raw(receiver.hwnd, frame) == 1
        assert receiver.recv(timeout=5).data == frame


def test_a_sender_with_a_key_streams_batches_parts_and_shared_memory_from_another_process(start_peer):
    specs = [(n, 64 + n % 300, n) for n in range(2000)]
    specs[500] = (500, 3_000_000, 500)     # through shared memory
    specs[1500] = (1500, 2_500_000, 1500)  # ... and another
    with copydata.Receiver(key=KEY, max_queue_bytes=256 << 20) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs),
                          "--key", KEY_HEX)
        assert peer.read(timeout=120) == {"sent": len(specs)}
        delivered = drain(receiver)
        assert [(m.tag, len(m.data)) for m in delivered] == [(t, s) for t, s, _ in specs]
        assert all(m.data == payload(s, seed) for m, (_, s, seed) in zip(delivered, specs))
        assert receiver.stats.refused_messages == 0

        # In parts instead of shared memory: each part is sealed.
        peer = start_peer("stream", str(receiver.hwnd), "7:3000000:7", "--key", KEY_HEX, "--no-shm",
                          "--chunk-size", "300000")
        assert peer.read(timeout=120) == {"sent": 1}
        (message,) = drain(receiver)
        assert (message.tag, message.data) == (7, payload(3_000_000, 7))

        # The same stream with the wrong key is refused from its first frame.
        peer = start_peer("stream", str(receiver.hwnd), "1:10:1", "--key", OTHER_KEY.hex())
        assert peer.read(timeout=120)["error"] == "Rejected"
        assert drain(receiver) == []
        assert receiver.stats.refused_unauthenticated > 0


def test_requests_and_replies_are_sealed_both_ways(start_peer):
    peer = start_peer("serve", "--key", KEY_HEX)
    hwnd = peer.wait_ready()
    reply = copydata.request(hwnd, b"abc", key=KEY, timeout=10)
    assert reply.data == b"cba"
    with pytest.raises(copydata.Rejected):
        copydata.request(hwnd, b"abc", timeout=10)  # no key: the request itself is refused
    peer.finish()

    # This process serves with a key; the peer requests with it, and also without it.
    with copydata.Receiver(key=KEY, on_message=lambda message: message.data.upper()) as receiver:
        asker = start_peer("request", str(receiver.hwnd), "text", '"hello"', "--key", KEY_HEX)
        assert asker.read()["reply"]["value"] == "HELLO"
        asker = start_peer("request", str(receiver.hwnd), "text", '"hello"')
        assert asker.read()["error"] == "Rejected"


def test_a_reply_not_sealed_with_the_requests_key_is_not_taken():
    # A window that answers every request twice: once unsealed (a forger), once sealed.
    from copydata import _envelope
    from copydata._seal import Sealer

    sealer = Sealer(KEY)

    def answer(message: copydata.Message) -> int:
        forged = _envelope.wrap(b"forged", 0, _envelope.REPLY, message.request_id)  # type: ignore[arg-type]
        copydata.send(message.sender, forged, tag=message.tag, sender=receiver)
        copydata.send(message.sender, sealer.seal(_envelope.wrap(b"genuine", 0, _envelope.REPLY,
                                                                 message.request_id),  # type: ignore[arg-type]
                                                  message.sender, message.tag), tag=message.tag, sender=receiver)
        return 1

    with copydata.Receiver(key=KEY, on_message=answer, sync=True) as receiver:
        assert copydata.request(receiver, b"?", key=KEY, timeout=10).data == b"genuine"


def test_on_error_hears_of_every_refusal_in_order_and_they_add_up_to_the_stats():
    heard: list[copydata.Refusal] = []
    with copydata.Receiver(key=KEY, max_message_size=1000, on_error=heard.append) as receiver:
        hwnd = receiver.hwnd
        assert send_raw(hwnd, b"not sealed", tag=1) == 0
        assert send_raw(hwnd, bytes(1001), tag=2) == 0
        frame = seal(b"once", hwnd, tag=3)
        assert send_raw(hwnd, frame, tag=3) == 1
        assert send_raw(hwnd, frame, tag=3) == 0
        batch = struct.pack("<4sBBBBQ", b"\x89CDE", 1, 0, 4, 0, 0) + struct.pack("<QI", 1, 99)  # past its end
        assert send_raw(hwnd, seal(batch, hwnd, tag=4, counter=2), tag=4) == 0
        pickled = struct.pack("<4sBBBBQ", b"\x89CDE", 1, 4, 0, 0, 0) + b"\x80\x04N."
        assert send_raw(hwnd, seal(pickled, hwnd, tag=5, counter=3), tag=5) == 1
        receiver.recv(timeout=5)  # "once"; the pickle is refused as it is read
        with pytest.raises(copydata.RecvTimeout):
            receiver.recv(timeout=0.3)
    assert [(r.reason, r.tag, r.size, r.occurrences) for r in heard] == [
        ("unauthenticated", 1, 10, 1), ("too_large", 2, 1001, 1), ("replayed", 3, len(frame), 1),
        ("malformed", 4, len(batch), 1), ("pickle", 5, 4, 1)]
    stats = receiver.stats
    assert (stats.refused_unauthenticated, stats.refused_too_large, stats.refused_replayed,
            stats.refused_malformed, stats.refused_pickle) == (1, 1, 1, 1, 1)


def test_on_error_falling_behind_merges_refusals_and_loses_none():
    release = threading.Event()
    heard: list[copydata.Refusal] = []

    def slow(refusal: copydata.Refusal) -> None:
        release.wait(30)
        heard.append(refusal)

    with copydata.Receiver(key=KEY, on_error=slow) as receiver:
        for n in range(3000):
            send_raw(receiver.hwnd, b"x" * (n % 7), tag=n)
        release.set()
        deadline = time.monotonic() + 30
        while sum(r.occurrences for r in heard) < 3000 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sum(r.occurrences for r in heard) == receiver.stats.refused_unauthenticated == 3000
    assert sum(r.size for r in heard) == sum(n % 7 for n in range(3000))
    assert len(heard) < 3000  # some were merged: the ring holds 1024
    assert [r.tag for r in heard[:1024]] == list(range(1024))


def test_a_failing_on_error_is_logged_and_reporting_goes_on(caplog):
    calls = []

    def broken(refusal: copydata.Refusal) -> None:
        calls.append(refusal)
        raise RuntimeError("broken hook")

    with copydata.Receiver(key=KEY, on_error=broken) as receiver:
        send_raw(receiver.hwnd, b"a")
        send_raw(receiver.hwnd, b"b")
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(calls) == 2
    assert "broken hook" in caplog.text


def test_a_sync_receiver_with_a_key_answers_sealed_messages_once():
    with copydata.Receiver(key=KEY, on_message=lambda message: 40 + message.tag, sync=True) as receiver:
        frame = seal(b"x", receiver.hwnd, tag=2)
        assert send_raw(receiver.hwnd, frame, tag=2) == 42
        assert send_raw(receiver.hwnd, frame, tag=2) == 0
        assert copydata.send(receiver, b"y", tag=3, key=KEY) == 43
        assert receiver.stats.refused_replayed == 1


def test_on_error_hears_of_dropped_split_messages_and_undecodable_ones():
    heard: list[copydata.Refusal] = []
    with copydata.Receiver(part_timeout=0.5, on_error=heard.append) as receiver:
        first_part = struct.pack("<4sBBBBQ", b"\x89CDE", 1, 0, 5, 0, 77) + struct.pack("<QQ", 100, 0) + bytes(40)
        assert send_raw(receiver.hwnd, first_part, tag=8) == 1  # and the rest never comes
        broken_json = struct.pack("<4sBBBBQ", b"\x89CDE", 1, 3, 0, 0, 0) + b"{not json"
        assert send_raw(receiver.hwnd, broken_json, tag=9) == 1
        message = receiver.recv(timeout=5)
        assert (message.codec, message.data) == ("bytes", b"{not json")  # delivered as bytes, and reported
        deadline = time.monotonic() + 10
        while len(heard) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sorted((r.reason, r.tag, r.size) for r in heard) == [("incomplete", 8, 40), ("undecodable", 9, 9)]
    assert (receiver.stats.dropped_incomplete, receiver.stats.undecodable) == (1, 1)
