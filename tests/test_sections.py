"""Large messages through shared memory: copied in once, out once; hostile descriptors refused."""

from __future__ import annotations

import ctypes
import ctypes.wintypes
import hashlib
import secrets
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import copydata
from copydata._core import ffi, lib
from copydata._sender import SECTION_PREFIX
from frames import (DATA, SEC_RESERVE, TEN, UNWRITTEN, USER, MiB, Section, batch_frame, descriptor, failing_once,
                    kernel32, part, read_section)
from peer import payload

@pytest.mark.smoke
def test_a_64_mib_message_from_another_process_through_shared_memory(tmp_path):
    size = 64 << 20
    script = tmp_path / "section_sender.py"
    script.write_text(
        "import sys, copydata\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from peer import payload\n"
        "with copydata.Sender(int(sys.argv[1]), timeout=60) as sender:\n"
        f"    sender.send(payload({size}, 1), tag=64)\n"
        "    sender.send(b'after', tag=65)\n")
    with copydata.Receiver() as receiver:
        # Read while it sends: a 64 MiB message fills the default queue, so the next one waits
        # (the sender backs off) until this one is taken.
        process = subprocess.Popen([sys.executable, str(script), str(receiver.hwnd), str(Path(__file__).parent)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        big, after = receiver.recv(timeout=60), receiver.recv(timeout=60)
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors
        assert (big.tag, len(big.data), after.tag, after.data) == (64, size, 65, b"after")
        assert hashlib.sha256(big.data).digest() == hashlib.sha256(payload(size, 1)).digest()
        assert receiver.stats.refused_messages == 0


def test_large_blocks_are_reused_while_messages_stream_then_freed_when_idle(start_peer):
    from conftest import private_bytes

    specs = [(n, (8 << 20) + n, n) for n in range(12)]
    with copydata.Receiver(copy=False, max_queue_bytes=24 << 20) as receiver:
        before = private_bytes()
        # Above 8 times max_batch_bytes: in parts, which the receiver puts together in its blocks.
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs),
                          "--max-batch-bytes", str(1 << 20))
        highest = 0
        for tag, size, seed in specs:
            message = receiver.recv(timeout=60)
            highest = max(highest, private_bytes() - before)  # before the expected bytes are made
            assert (message.tag, message.data) == (tag, payload(size, seed))
            del message
        assert peer.read(timeout=60) == {"sent": len(specs)}
        # 96 MiB went through; the queue (24 MiB), the message held (8 MiB) and the spare
        # blocks (two, or more while they hold at most 32 MiB) hold at most 64 MiB of it.
        assert highest < 68 << 20, f"{highest} bytes held at once"
        print(f"at most {highest} bytes held at once while 96 MiB went through")
        time.sleep(2.5)  # spare blocks unused for a second are freed by the next sweep
        assert private_bytes() - before < 4 << 20


def test_every_kind_of_frame_alternates_between_the_halves_without_overwriting(start_peer):
    """A peer's Sender with 256 KiB halves: small messages in inline frames, mid-sized ones in
    section frames, large ones in parts through the halves. The receiver answers a section
    frame before it copies it out; were the sender to write its next frame into the same
    half, the bytes still being copied would change."""
    sizes = [10, 200_000, 3 << 20, 70_000, 5, 900_000, (2 << 20) + 7, 100, 150_000, 1 << 20]
    specs = [(n, size, n + 1) for n, size in enumerate(sizes * 3)]
    with copydata.Receiver(copy=False) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs),
                          "--max-batch-bytes", str(256 << 10), "--shm-threshold", str(64 << 10))
        for tag, size, seed in specs:
            message = receiver.recv(timeout=60)
            assert (message.tag, len(message.data)) == (tag, size)
            assert message.data == payload(size, seed), f"message {tag} ({size} bytes) arrived changed"
        assert peer.read(timeout=60) == {"sent": len(specs)}
        assert receiver.stats.refused_messages == 0


def test_a_sync_receiver_gets_messages_above_max_batch_bytes_whole(start_peer):
    """Sync mode takes no parts: it answers the first part so, and the Sender sends that
    message and every later large one whole, in its section."""
    specs = [(1, 300_000, 1), (2, 100, 2), (3, 1_000_000, 3), (4, 70_000, 4)]
    seen = []
    with copydata.Receiver(sync=True, copy=False,
                           on_message=lambda m: seen.append((m.tag, type(m.data).__name__, bytes(m.data)))) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs),
                          "--max-batch-bytes", str(64 << 10), "--shm-threshold", str(16 << 10))
        assert peer.read(timeout=60) == {"sent": len(specs)}
        peer.finish()
        assert [(tag, data) for tag, _, data in seen] == [(tag, payload(size, seed)) for tag, size, seed in specs]
        # Read in place, whole (the small one too if the linger put it in a section frame).
        assert [kind for tag, kind, _ in seen if tag != 2] == ["memoryview"] * 3
        assert receiver.stats.refused_parts_in_sync_mode == 1  # only the first part, once


def test_parts_in_a_section_are_put_together_and_checked_like_inline_parts(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    first, second = part(77, 30, 0, b"a" * 20), part(77, 30, 20, b"b" * 10)
    wrong_codec = part(78, 10, 0, b"c" * 10, codec=1)
    beyond = part(79, 10, 5, b"d" * 10)
    content = first + second + wrong_codec + beyond
    ours = Section(name, 65536, f"O:{USER}D:P(A;;GA;;;{USER})", content)
    try:
        with copydata.Receiver() as receiver:
            assert copydata.send(receiver, descriptor(name, DATA, len(first)), tag=9) == 1
            assert copydata.send(receiver, descriptor(name, DATA + len(first), len(second)), tag=9) == 1
            start = DATA + len(first) + len(second)
            with pytest.raises(copydata.Rejected):  # a codec other than the descriptor's
                copydata.send(receiver, descriptor(name, start, len(wrong_codec)), tag=9)
            with pytest.raises(copydata.Rejected):  # past its total
                copydata.send(receiver, descriptor(name, start + len(wrong_codec), len(beyond)), tag=9)
            message = receiver.recv(timeout=5)
            assert (message.tag, message.data) == (9, b"a" * 20 + b"b" * 10)
            assert receiver.stats.refused_malformed == 2
            with pytest.raises(copydata.RecvTimeout):
                receiver.recv(timeout=0.2)
        with copydata.Receiver(sync=True, on_message=lambda m: 1) as receiver:
            assert copydata.send(receiver, descriptor(name, DATA, len(first)), tag=9) == lib.CD_ANSWER_NO_PARTS
            assert receiver.stats.refused_parts_in_sync_mode == 1
    finally:
        ours.close()


def test_sections_keep_the_codec_and_parts_remain_for_shm_threshold_none():
    with copydata.Receiver() as receiver:
        with copydata.Sender(receiver, codec="text", shm_threshold=1000) as sender:
            sender.send("é" * 5000, tag=1)
        with copydata.Sender(receiver, shm_threshold=None, chunk_size=1000) as sender:
            sender.send(bytes(5000), tag=2)
        assert [(m.tag, m.data, m.codec) for m in receiver.recv_many(2, timeout=5)] == [
            (1, "é" * 5000, "text"), (2, bytes(5000), "bytes")]


def test_a_descriptor_without_the_sections_secret_is_refused_and_nothing_is_written_there(unique_name, start_peer):
    """Sections of one user are all owned by that user, and their names can be listed: the owner
    check alone let any process that can send to a keyless receiver have it read another
    process's section as a message, and write a release word into it. Only a descriptor that
    carries the secret in the section's header is taken."""
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    big = payload(MiB, 3)
    frame = batch_frame((1, big))
    release = DATA + -(-len(frame) // 8) * 8
    victim = Section(name, release + 4096, f"O:{USER}D:P(A;;GA;;;{USER})", frame)  # as its Sender makes it
    near_miss = victim.secret[:-1] + bytes([victim.secret[-1] ^ 1])
    forged = [descriptor(name, DATA, len(frame), request_id=7, release_offset=release, secret=secret)
              for secret in (bytes(16), secrets.token_bytes(16), near_miss)]
    try:
        with copydata.Receiver(copy=False) as receiver:
            intruder = start_peer("send-raw", str(receiver.hwnd), *(frame.hex() for frame in forged))
            assert [intruder.read() for _ in forged] == [{"result": 0}] * len(forged)
            assert (receiver.stats.refused_section, receiver.stats.received_messages) == (len(forged), 0)
            assert read_section(name, release, 8) == UNWRITTEN
            owner = start_peer("send-raw", str(receiver.hwnd),
                               descriptor(name, DATA, len(frame), request_id=7, release_offset=release).hex())
            assert owner.read() == {"result": lib.CD_ANSWER_LEASED}
            message = receiver.recv(timeout=5)
            assert message.data == big
            del message
            assert read_section(name, release, 8) == struct.pack("<Q", 7)
    finally:
        victim.close()


def test_sections_that_are_not_committed_page_file_memory_are_refused(unique_name, tmp_path):
    """A section merely reserved (SEC_RESERVE) faults where its pages are not committed, and one
    backed by a file may fail to read: neither is read, whatever its header says."""
    user_only = f"O:{USER}D:P(A;;GA;;;{USER})"
    reserved_name = f"{SECTION_PREFIX}{unique_name}-reserved"[:120]
    reserved = Section(reserved_name, DATA + 65536, user_only, flags=SEC_RESERVE, commit=DATA)
    backed_name = f"{SECTION_PREFIX}{unique_name}-file"[:120]
    backing = tmp_path / "backing"
    backing.write_bytes(bytes(DATA + 4096))
    backed = Section(backed_name, DATA + 4096, user_only, TEN, file=backing)
    try:
        with copydata.Receiver() as receiver:
            for frame in (descriptor(reserved_name, DATA, 4096), descriptor(reserved_name, 0, 64),
                          descriptor(backed_name, DATA, len(TEN))):
                with pytest.raises(copydata.Rejected):
                    copydata.send(receiver, frame)
            assert receiver.stats.refused_section == 3
            assert copydata.send(receiver, b"still here") == 1
            assert receiver.recv(timeout=5).data == b"still here"
    finally:
        reserved.close()
        backed.close()


def test_a_section_owned_by_someone_else_is_refused(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    assert USER != "S-1-5-32-544"
    try:
        foreign = Section(name, DATA + 4096, "O:BAD:(A;;GA;;;WD)", TEN)  # owned by Administrators, open to all
    except OSError as error:
        pytest.fail(f"could not create a section owned by another SID: {error}")
    try:
        with copydata.Receiver() as receiver:
            with pytest.raises(copydata.Rejected):
                copydata.send(receiver, descriptor(name, DATA, len(TEN)))
            assert receiver.stats.refused_section == 1
    finally:
        foreign.close()


def test_ranges_outside_the_section_and_missing_sections_are_refused(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    end = 65536 - len(TEN)
    ours = Section(name, 65536, f"O:{USER}D:P(A;;GA;;;{USER})", TEN, at=end)  # ours, as a Sender makes them
    try:
        with copydata.Receiver() as receiver:
            assert copydata.send(receiver, descriptor(name, end, len(TEN))) == 1
            assert (receiver.recv(timeout=5).data, receiver.stats.received_messages) == (b"\x5a" * 10, 1)
            for offset, length in [(end, len(TEN) + 1), (65536, 1), (1 << 40, 1), (0, 1 << 32)]:
                with pytest.raises(copydata.Rejected):
                    copydata.send(receiver, descriptor(name, offset, length))
            with pytest.raises(copydata.Rejected):
                copydata.send(receiver, descriptor(name + "-missing", 0, 1))
            assert receiver.stats.refused_section == 5
            with pytest.raises(copydata.RecvTimeout):
                receiver.recv(timeout=0.1)
    finally:
        ours.close()


@pytest.mark.parametrize("content, refusal", [
    (b"\x5a" * 64, "malformed"),                                      # no frame at all
    (batch_frame(), "malformed"),                                       # a frame of no record
    (batch_frame((1, b"abc"), claimed_size=1000), "malformed"),          # a record past the range
    (batch_frame((1, b"abc"), codec=3), "malformed"),                   # not the descriptor's codec
    (batch_frame((1, bytes(600)), (2, bytes(600))), "too_large"),       # 1,200 bytes of messages
], ids=["no-frame", "no-record", "past-the-range", "another-codec", "too-large"])
def test_what_a_section_holds_is_checked_before_anything_is_queued(unique_name, content, refusal):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    ours = Section(name, DATA + 4096, f"O:{USER}D:P(A;;GA;;;{USER})", content)
    try:
        with copydata.Receiver(max_transfer_size=1000) as receiver:
            if refusal == "too_large":  # refused for its size alone: a Sender gives up at once
                assert copydata.send(receiver, descriptor(name, DATA, len(content))) == lib.CD_ANSWER_NEVER_FITS
            else:
                with pytest.raises(copydata.Rejected):
                    copydata.send(receiver, descriptor(name, DATA, len(content)))
            assert getattr(receiver.stats, f"refused_{refusal}") == 1
            assert receiver.stats.received_messages == 0
    finally:
        ours.close()


def test_a_section_rewritten_while_the_receiver_reads_it_never_takes_it_outside(unique_name):
    """A sender may go on writing into its section while the receiver walks the frame there:
    the receiver reads each record length once, so it queues what it checked or nothing."""
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    frame = batch_frame((1, b"a" * 100), (2, b"b" * 100))
    ours = Section(name, DATA + 4096, f"O:{USER}D:P(A;;GA;;;{USER})", frame)
    view = kernel32.MapViewOfFile(ctypes.wintypes.HANDLE(ours.handle), 0x2, 0, 0, DATA + 4096)
    length_field = view + DATA + 16 + 8  # the first record's length
    stop = threading.Event()

    def rewrite() -> None:  # the first record's length: right, then far past the range, again and again
        right, wrong = struct.pack("<I", 100), struct.pack("<I", 0xFFFFFF00)
        while not stop.is_set():
            for value in (wrong, right):
                ctypes.memmove(length_field, value, 4)

    writer = threading.Thread(target=rewrite)
    try:
        with copydata.Receiver(max_queue_messages=1_000_000) as receiver:
            writer.start()
            accepted = sum(copydata.send(receiver, descriptor(name, DATA, len(frame)), check=False)
                           for _ in range(300))
            stop.set()
            writer.join()
            messages = receiver.recv_many(1000, timeout=5) if accepted else []
            stats = receiver.stats
        assert accepted + stats.refused_malformed == 300
        assert len(messages) == 2 * accepted
        assert all((m.tag, m.data) in ((1, b"a" * 100), (2, b"b" * 100)) for m in messages)
        print(f"{accepted} of 300 accepted while the length changed under the receiver")
    finally:
        stop.set()
        kernel32.UnmapViewOfFile(ctypes.c_void_p(view))
        ours.close()


@pytest.mark.parametrize("frame", [
    descriptor("Local\\some-other-program's-section", 0, 10),          # outside our namespace
    descriptor("Global\\copydata.v1.shm.x", 0, 10),                    # another namespace
    descriptor(SECTION_PREFIX + "a\\b", 0, 10),                        # a backslash after the prefix
    descriptor(SECTION_PREFIX + "x", 0, 10, characters=5),             # name length that lies
    descriptor(SECTION_PREFIX + "x\0y", 0, 10),                        # a NUL inside the name
    descriptor(SECTION_PREFIX + "x", 0, 0),                            # nothing to copy
    descriptor(SECTION_PREFIX + "x", (1 << 64) - 5, 10),               # offset + length overflows
    descriptor(SECTION_PREFIX + "x", 0, 10, flags=1),
    descriptor(SECTION_PREFIX + "x", 0, 10, request_id=3),                 # release word inside the range
    descriptor(SECTION_PREFIX + "x", 0, 10, request_id=3, release_offset=4),
    descriptor(SECTION_PREFIX + "x", 16, 10, request_id=3, release_offset=12),  # ... across its start
    descriptor(SECTION_PREFIX + "x", 0, 10, request_id=3, release_offset=4100),  # not on 8 bytes
    descriptor(SECTION_PREFIX + "x", 0, 10, request_id=3, release_offset=(1 << 64) - 8),  # past the end
    descriptor(SECTION_PREFIX + "x", 0, 10, release_offset=4096),       # a release word but no lease
    descriptor(SECTION_PREFIX + "x", 0, 10, ring_offset=4096),          # a ring block but no lease
    descriptor(SECTION_PREFIX + "x", 0, 10, request_id=3, release_offset=4096, ring_offset=8),  # inside the range
    descriptor(SECTION_PREFIX + "x", 64, 10, request_id=3, release_offset=4096, ring_offset=24),  # across its start
    descriptor(SECTION_PREFIX + "x", 0, 10, request_id=3, release_offset=4096, ring_offset=4100),  # not on 8 bytes
    descriptor(SECTION_PREFIX + "x", 0, 10, request_id=3, release_offset=4096, ring_offset=(1 << 64) - 40),
    descriptor(SECTION_PREFIX + "x" * 200, 0, 10),                     # name too long
    descriptor(SECTION_PREFIX + "x", 0, 10, codec=9),                  # unknown codec
])
def test_malformed_descriptors_are_refused_as_malformed(frame):
    with copydata.Receiver() as receiver:
        with pytest.raises(copydata.Rejected):
            copydata.send(receiver, frame)
        assert receiver.stats.refused_malformed == 1


def test_an_unknown_codec_on_a_real_section_neither_passes_nor_stops_delivery(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    ours = Section(name, DATA + 4096, f"O:{USER}D:P(A;;GA;;;{USER})", batch_frame((1, b"x"), codec=9))
    delivered: list = []
    try:
        with copydata.Receiver(on_message=delivered.append) as receiver:
            with pytest.raises(copydata.Rejected):
                copydata.send(receiver, descriptor(name, DATA, 29, codec=9))
            copydata.send(receiver, b"still delivering", tag=2)
            deadline = time.monotonic() + 5
            while not delivered and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [(m.tag, m.data) for m in delivered] == [(2, b"still delivering")]
    finally:
        ours.close()


def test_a_sync_receiver_reads_a_senders_shared_memory_in_place(start_peer):
    """Sync mode with copy=False: a Sender's large messages reach on_message as views of its
    section (no copy), its small ones one at a time from their batch frame, all in order."""

    specs = [(1, 100, 1), (2, (3 << 20) + 5, 2), (3, 5000, 3), (4, 2 << 20, 4), (5, 10, 5)]
    seen, kept = [], {}

    def on_message(message):
        seen.append((message.tag, type(message.data).__name__, hashlib.sha256(message.data).digest()))
        if message.tag == 2:
            kept["message"] = message               # released when on_message returns
        if message.tag == 4:
            kept["slice"] = message.data[1000:2000]  # keeps the section mapped

    with copydata.Receiver(sync=True, copy=False, on_message=on_message) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), *(f"{t}:{s}:{seed}" for t, s, seed in specs))
        assert peer.read(timeout=60) == {"sent": len(specs)}
        peer.finish()
        # Those above the peer's shm_threshold (1 MiB) are in shared memory whatever the timing;
        # the small ones too when the linger put them in the same frame.
        assert [(tag, digest) for tag, _, digest in seen] == [(tag, hashlib.sha256(payload(size, seed)).digest())
                                                               for tag, size, seed in specs]
        assert all(kind == "memoryview" for (_, kind, _), (_, size, _) in zip(seen, specs) if size > 1 << 20)
        with pytest.raises(ValueError, match="released"):
            bytes(kept["message"].data)
        # The sender has ended, and the receiver's sweep has unmapped the sections it cached:
        # the slice still reads the bytes it was given.
        time.sleep(1.5)
        assert bytes(kept["slice"]) == payload(2 << 20, 4)[1000:2000]
        address = int(ffi.cast("uintptr_t", ffi.from_buffer(kept["slice"])))
        assert memory_state(address) == MEM_COMMIT
        del kept["slice"]
        assert memory_state(address) == MEM_FREE, "the last view went, and its section stayed mapped"
        assert receiver.stats.refused_messages == 0


@pytest.mark.parametrize("new_section_fails", [False, True])
def test_a_section_kept_by_a_sync_receiver_is_never_written_again(new_section_fails):
    """A view kept past its callback keeps the sender's section mapped; the receiver answers
    so, and the sender writes its next frames into a new section, not over the view. Should
    that section not be made at once, the next frame waits in private memory meanwhile."""
    kept = []

    def on_message(message):
        if message.tag == 1:
            kept.append(message.data[:1000])

    with copydata.Receiver(sync=True, copy=False, on_message=on_message) as receiver:
        with copydata.Sender(receiver, linger=60, shm_threshold=1000) as sender:
            sender.send(b"a" * 5000, tag=1)
            if new_section_fails:
                calls = failing_once(sender)
                with pytest.raises(copydata.CopyDataError, match="no section this time"):
                    sender.flush()  # accepted and kept: the sender must write elsewhere, and cannot
                assert len(calls) == 1
            else:
                sender.flush()
            sender.send(b"b" * 5000, tag=2)  # the same place in the section as the first one
            sender.flush()
        assert receiver.stats.received_messages == 2
    assert bytes(kept[0]) == b"a" * 1000


def test_a_sync_receiver_copies_shared_memory_by_default(start_peer):
    received = []
    with copydata.Receiver(sync=True, on_message=lambda message: received.append(message.data)) as receiver:
        peer = start_peer("stream", str(receiver.hwnd), "7:3000000:7", "8:20:8")
        assert peer.read(timeout=60) == {"sent": 2}
    assert received == [payload(3000000, 7), payload(20, 8)]


def test_a_sync_receiver_checks_descriptors_as_a_queue_does(unique_name):
    name = f"{SECTION_PREFIX}{unique_name}"[:120]
    end = 65536 - len(TEN)
    ours = Section(name, 65536, f"O:{USER}D:P(A;;GA;;;{USER})", TEN, at=end)
    received = []
    try:
        with copydata.Receiver(sync=True, copy=False, on_message=lambda m: received.append(bytes(m.data))) as receiver:
            assert copydata.send(receiver, descriptor(name, end, len(TEN))) == 1
            for offset, length in [(end, len(TEN) + 1), (65536, 1), (1 << 40, 1)]:
                with pytest.raises(copydata.Rejected):
                    copydata.send(receiver, descriptor(name, offset, length))
            with pytest.raises(copydata.Rejected):
                copydata.send(receiver, descriptor(name + "-missing", 0, 1))
            with pytest.raises(copydata.Rejected):
                copydata.send(receiver, descriptor(name, DATA, 64))  # 0x5a bytes: no frame
            assert (receiver.stats.refused_section, receiver.stats.refused_malformed) == (4, 1)
        assert received == [b"\x5a" * 10]
    finally:
        ours.close()


MEM_COMMIT, MEM_FREE = 0x1000, 0x10000


def memory_state(address: int) -> int:
    class MEMORY_BASIC_INFORMATION(ctypes.Structure):
        _fields_ = [("BaseAddress", ctypes.c_void_p), ("AllocationBase", ctypes.c_void_p),
                    ("AllocationProtect", ctypes.wintypes.DWORD), ("PartitionId", ctypes.wintypes.WORD),
                    ("RegionSize", ctypes.c_size_t), ("State", ctypes.wintypes.DWORD),
                    ("Protect", ctypes.wintypes.DWORD), ("Type", ctypes.wintypes.DWORD)]

    info = MEMORY_BASIC_INFORMATION()
    if not kernel32.VirtualQuery(ctypes.c_void_p(address), ctypes.byref(info), ctypes.sizeof(info)):
        raise ctypes.WinError(ctypes.get_last_error())
    return info.State
