"""copydata's hot paths in one process, for pytest-benchmark: regressions show in its compare.

    python3 tools/winenv.py python -m pytest bench/test_hot_paths.py \
        --benchmark-autosave --benchmark-storage=bench/results/hot-paths
    python3 tools/winenv.py python -m pytest_benchmark --storage bench/results/hot-paths \
        compare 0001 0002 --group-by name

Needs pytest-benchmark in the Windows Python; without it the module is skipped. The sender
and the receiver's window are in this process (on different threads), so a send is a
cross-thread SendMessage: cheaper than cross-process, but the same C and Python code.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_benchmark")
copydata = pytest.importorskip("copydata")

SMALL = b"\x5a" * 64
MEDIUM = b"\xa5" * 65536
BATCH = 256


@pytest.fixture
def draining_receiver():
    """A callback receiver whose dispatch thread empties the queue as fast as sends fill it."""
    with copydata.Receiver("bench-hot-paths", on_message=lambda message: None) as receiver:
        yield receiver


def test_send_64_bytes_to_handle(benchmark, draining_receiver):
    assert benchmark(copydata.send, draining_receiver.hwnd, SMALL) == 1


def test_send_64_kib_to_handle(benchmark, draining_receiver):
    assert benchmark(copydata.send, draining_receiver.hwnd, MEDIUM) == 1


def test_send_64_bytes_by_name(benchmark, draining_receiver):
    """Includes the name look-up (a shared-memory read and window checks) on every send."""
    assert benchmark(copydata.send, draining_receiver.name, SMALL) == 1


def test_sender_send_64_bytes(benchmark, draining_receiver):
    """One message into a batch frame; a frame goes out when full, its time shared among them."""
    with copydata.Sender(draining_receiver.hwnd, linger=60) as sender:
        benchmark(sender.send, SMALL)


@pytest.mark.parametrize("copy", [True, False], ids=["bytes", "views"])
def test_recv_many_256_queued(benchmark, copy):
    """Taking a batch of queued 64-byte messages into Python in one call (sends not timed);
    C packs them into one block, handed over as bytes or as views of it."""
    with copydata.Receiver(copy=copy) as receiver:
        def queue_a_batch():
            for _ in range(BATCH):
                copydata.send(receiver.hwnd, SMALL)
            return (BATCH,), {"timeout": 5}

        batch = benchmark.pedantic(receiver.recv_many, setup=queue_a_batch, rounds=30)
        assert len(batch) == BATCH and all(message.data == SMALL for message in batch)


def test_sender_send_many_64_bytes(benchmark, draining_receiver):
    """A call of 1,024 messages of 64 B: one call into C for all that join a frame as they are."""
    messages = [SMALL] * 1024
    with copydata.Sender(draining_receiver.hwnd, linger=60) as sender:
        benchmark(sender.send_many, messages)


def queued_by_a_sender(receiver, count: int):
    """A pedantic setup: ``count`` 64-byte messages queued in one batch frame (not timed), then
    the arguments of a take of them all."""
    def setup():
        with copydata.Sender(receiver.hwnd, linger=60) as sender:
            sender.send_many([SMALL] * count)
        return (count,), {"timeout": 5}
    return setup


@pytest.mark.parametrize("copy", [True, False], ids=["bytes", "views"])
def test_recv_batch_4096_queued(benchmark, copy):
    """Taking 4,096 queued 64-byte messages as one MessageBatch (sends not timed): no object per
    message, the block handed over as bytes or as a view."""
    with copydata.Receiver(copy=copy) as receiver:
        batch = benchmark.pedantic(receiver.recv_batch, setup=queued_by_a_sender(receiver, 4096), rounds=30)
        assert len(batch) == 4096 and batch[0] == SMALL and bytes(batch.data) == SMALL * 4096


@pytest.mark.parametrize("copy", [True, False], ids=["bytes", "views"])
def test_recv_many_4096_queued(benchmark, copy):
    """The same 4,096 messages taken as Messages, for the comparison with recv_batch."""
    with copydata.Receiver(copy=copy) as receiver:
        messages = benchmark.pedantic(receiver.recv_many, setup=queued_by_a_sender(receiver, 4096), rounds=30)
        assert len(messages) == 4096 and all(message.data == SMALL for message in messages)
