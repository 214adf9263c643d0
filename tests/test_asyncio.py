"""asyncio: nothing blocks the event loop, and cancelling leaves everything usable and lossless."""

from __future__ import annotations

import asyncio
import struct
import threading
import time

import pytest

import copydata
from conftest import os_thread_count, receive_from_script


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def ticking_while(awaitable):
    """Await ``awaitable`` and count how often the event loop ran something else meanwhile."""
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        return await awaitable, ticks
    finally:
        task.cancel()


def test_arecv_waits_without_blocking_the_loop(start_peer):
    async def main():
        with copydata.Receiver() as receiver:
            peer = start_peer("send", str(receiver.hwnd), "6:100:1")
            message, ticks = await ticking_while(receiver.arecv(timeout=30))
            peer.finish()
            return message, ticks

    message, ticks = run(main())
    assert (message.tag, len(message.data)) == (6, 100)
    assert ticks > 5  # the loop kept running while a Windows process started and sent


def test_arecv_timeout_and_async_for_until_closed():
    async def main():
        receiver = copydata.Receiver()
        with pytest.raises(copydata.RecvTimeout):
            await receiver.arecv(timeout=0.2)
        for tag in range(3):
            await copydata.asend(receiver, b"x", tag=tag)
        asyncio.get_running_loop().call_later(0.3, receiver.close)
        return [message.tag async for message in receiver]

    assert run(main()) == [0, 1, 2]


def test_cancelled_arecv_loses_nothing_and_the_receiver_stays_usable():
    async def main():
        async with copydata.Receiver() as receiver:
            for round_ in range(5):
                waiting = asyncio.create_task(receiver.arecv())
                await asyncio.sleep(0.05)
                copydata.send(receiver, b"m", tag=round_)  # may arrive just as we cancel
                waiting.cancel()
                try:
                    got = [await waiting]
                except asyncio.CancelledError:
                    got = []
                await asyncio.sleep(0.2)  # let a cancelled wait finish and hand its message back
                if not got:
                    got = [await receiver.arecv(timeout=5)]
                assert [message.tag for message in got] == [round_]
            with pytest.raises(copydata.RecvTimeout):
                await receiver.arecv(timeout=0.2)

    run(main())


def test_asend_and_arequest_do_not_block_the_loop():
    def slow_answer(message):
        import time
        time.sleep(0.5)
        return message.data + b"!"

    async def main():
        with copydata.Receiver(on_message=slow_answer, sync=True) as receiver:
            reply, ticks = await ticking_while(copydata.arequest(receiver, b"hi", timeout=10))
            assert reply.data == b"hi!"
            assert ticks >= 20
            result, ticks = await ticking_while(copydata.asend(receiver, b"x", timeout=10))
            assert result == 1  # a non-int answer to a plain message in sync mode answers 1
            assert ticks >= 20

    run(main())


def test_cancelled_arequest_leaves_requests_working():
    def slow(message):
        import time
        time.sleep(0.3)
        return message.data

    async def main():
        with copydata.Receiver(on_message=slow) as receiver:
            pending = asyncio.create_task(copydata.arequest(receiver, b"first", timeout=10))
            await asyncio.sleep(0.05)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            assert (await copydata.arequest(receiver, b"second", timeout=10)).data == b"second"

    run(main())


def test_arequest_to_another_process(start_peer):
    peer = start_peer("serve")
    hwnd = peer.wait_ready()

    async def main():
        return await ticking_while(copydata.arequest(hwnd, b"abc", timeout=30))

    reply, _ = run(main())
    assert (reply.data, reply.sender) == (b"cba", hwnd)
    peer.finish()


# --- Sender ---------------------------------------------------------------------------------


def test_sender_asend_from_another_process_arrives_whole_and_in_order(tmp_path):
    with copydata.Receiver() as receiver:
        received = receive_from_script(
            receiver, tmp_path / "async_sender.py",
            "import asyncio, struct, sys, copydata\n"
            "async def main():\n"
            "    async with copydata.Sender(int(sys.argv[1]), max_batch_bytes=65536, timeout=30) as sender:\n"
            "        for n in range(20000):\n"
            "            await sender.asend(struct.pack('<Q', n) * (1 + n % 8), tag=n)\n"
            "            if n == 10000:\n"
            "                await sender.asend(bytes(range(256)) * 12288, tag=n + 1_000_000)  # 3 MiB: in parts\n"
            "asyncio.run(main())\n"
            "print('done', flush=True)\n", 20001)
        assert receiver.stats.received_messages == 20001
    tags = list(range(10001)) + [1_010_000] + list(range(10001, 20000))
    assert [message.tag for message in received] == tags
    assert received[10001].data == bytes(range(256)) * 12288
    del received[10001]
    assert all(message.data == struct.pack("<Q", message.tag) * (1 + message.tag % 8) for message in received)


def test_sender_asend_adds_at_once_and_aflush_delivers_everything():
    async def main():
        with copydata.Receiver() as receiver:
            async with copydata.Sender(receiver, linger=60) as sender:
                for n in range(500):
                    await sender.asend(b"m" * 64, tag=n)
                assert (sender.pending, receiver.stats.received_messages) == (500, 0)
                await sender.aflush()
                assert (sender.pending, receiver.stats.received_messages) == (0, 500)
                await sender.asend(b"last", tag=500)
            # leaving the block flushed the last one
            return [(m.tag, m.data) for m in receiver.recv_many(1000, timeout=5)]

    received = run(main())
    assert received == [(n, b"m" * 64) for n in range(500)] + [(500, b"last")]


def test_sender_waits_for_a_slow_receiver_without_blocking_the_loop(start_peer):
    peer = start_peer("serve", "--sync-sleep", "0.3")  # each message takes 0.3 s to answer
    hwnd = peer.wait_ready()

    async def main():
        async with copydata.Sender(hwnd, linger=0, timeout=30) as sender:
            _, ticks_send = await ticking_while(sender.asend(b"one", tag=1))  # linger=0: sends at once
        async with copydata.Sender(hwnd, linger=60, timeout=30) as sender:
            await sender.asend(b"two", tag=2)
            await sender.asend(b"three", tag=3)
            _, ticks_flush = await ticking_while(sender.aflush())
        return ticks_send, ticks_flush

    ticks_send, ticks_flush = run(main())
    assert ticks_send >= 10 and ticks_flush >= 20
    reports = peer.finish()
    assert [(r["tag"], r["size"]) for r in reports if "tag" in r] == [(1, 3), (2, 3), (3, 5)]


def test_cancelled_sender_calls_still_deliver_in_order_and_the_sender_stays_usable(start_peer):
    peer = start_peer("serve", "--sync-sleep", "0.2")  # each message takes 0.2 s to answer
    hwnd = peer.wait_ready()

    async def cancelled(call):
        task = asyncio.create_task(call)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def main():
        # A frame holds one 1-byte message: every asend after the first sends a frame.
        async with copydata.Sender(hwnd, linger=60, max_batch_bytes=29, timeout=30) as sender:
            await sender.asend(b"0", tag=0)  # joins the empty frame at once
            await cancelled(sender.asend(b"1", tag=1))
            await cancelled(sender.asend(b"2", tag=2))
            await cancelled(sender.aflush())
            await sender.asend(b"3", tag=3)  # after the cancelled calls, though they still wait
            assert sender.pending == 1
            await sender.aflush()
            assert sender.pending == 0

    run(main())
    reports = peer.finish()
    assert [r["tag"] for r in reports if "tag" in r] == [0, 1, 2, 3]


def test_sender_async_errors_are_typed():
    async def main():
        receiver = copydata.Receiver()
        sender = copydata.Sender(receiver, linger=60, timeout=5)
        with pytest.raises(ValueError):
            await sender.asend(b"x", tag=-1)
        await sender.asend(b"x")  # joins the frame: nothing is sent yet
        receiver.close()
        with pytest.raises(copydata.TargetNotFound):
            await sender.aflush()
        assert sender.pending == 1  # still pending, not lost unseen
        with pytest.raises(copydata.TargetNotFound):
            await sender.aclose()
        with pytest.raises(ValueError, match="closed"):
            await sender.asend(b"x")

    run(main())


def test_async_senders_opened_and_closed_leave_no_threads_behind():
    kept = []  # closed Senders still referenced: their threads must end all the same

    async def cycle(receiver, count):
        for _ in range(count):
            async with copydata.Sender(receiver, linger=0) as sender:  # linger=0: asend uses the worker
                await sender.asend(b"x")
            kept.append(sender)
            sender = copydata.Sender(receiver, linger=60)
            await sender.asend(b"y")
            await sender.aflush()
            sender.close()  # the plain close ends the worker too
            kept.append(sender)

    async def main():
        with copydata.Receiver() as receiver:
            await cycle(receiver, 3)
            time.sleep(0.5)  # idle workers end just after their Sender closed
            threads, python_threads = os_thread_count(), threading.active_count()
            await cycle(receiver, 30)
            time.sleep(0.5)
            assert (os_thread_count(), threading.active_count()) == (threads, python_threads)
            assert len(receiver.recv_many(1000, timeout=5)) == 66

    run(main())
