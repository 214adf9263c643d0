"""asyncio: nothing blocks the event loop, and cancelling leaves everything usable and lossless."""

from __future__ import annotations

import asyncio

import pytest

import copydata


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
