"""copydata demo as a newcomer runs it: the installed command, every row there with every message
of it counted intact by the receiver process, and one line to remember, made of the figures
above it. Then what those counts rest on: the receiver's check, which counts nothing lost,
moved or damaged as intact, and the C floor and memcpy of the core, which do what they say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import copydata
from copydata import _native
from copydata._demo_receiver import Check, stamped_block, template

ROWS = [("C floor: SendMessage loop", "64 B"), ("copydata.send", "64 B"), ("Sender.send", "64 B"),
        ("Sender.send_many->recv_batch", "64 B"), ("C floor: SendMessage loop", "1 MiB"),
        ("Sender.send", "1 MiB"), ("Sender.send", "16 MiB")]
ROW = re.compile(r"^(?P<label>\S.*?)\s+(?P<size>\d+ (?:B|MiB))\s+(?P<sent>[\d,]+)\s+(?P<intact>[\d,]+)\s+"
                 r"(?P<seconds>[\d.]+)\s+(?P<rate>[\d,]+)\s+(?P<mbps>[\d,.]+)\s+(?P<floor>[\d,.]+x)\s+(?P<memcpy>[\d.]+%)$")
CLOSING = re.compile(r"^copydata's Sender moved 64-byte messages (?P<floor>[\d,.]+x) faster than a C loop of "
                     r"SendMessage, and 16 MiB ones at (?P<memcpy>[\d.]+%) of memcpy's speed; every message checked\.$")


def copydata_command() -> list[str]:
    """The console script pip installed; from a source tree, python -m copydata."""
    script = Path(sysconfig.get_path("scripts")) / "copydata.exe"
    if os.environ.get("COPYDATA_EXPECT_INSTALLED") == "1":
        assert script.is_file(), f"pip installed no console script at {script}"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "copydata"]


@pytest.mark.smoke
def test_the_installed_demo_checks_every_message_and_ends_with_its_figures():
    result = subprocess.run([*copydata_command(), "demo", "--scale", "0.01", "--rounds", "1",
                             "--memcpy-seconds", "0.02"],
                            capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {(match["label"], match["size"]): match
            for match in map(ROW.match, result.stdout.splitlines()) if match}
    assert sorted(rows) == sorted(ROWS), result.stdout
    for row in rows.values():
        assert row["sent"] == row["intact"] and int(row["intact"].replace(",", "")) > 0, row.group()
        assert int(row["rate"].replace(",", "")) > 0, row.group()
    closing = CLOSING.match(result.stdout.splitlines()[-1])
    assert closing, result.stdout
    # The line repeats the table's own figures: the better Sender row at 64 B, and 16 MiB's share.
    small = max((rows[label, "64 B"] for label in ("Sender.send", "Sender.send_many->recv_batch")),
                key=lambda row: int(row["rate"].replace(",", "")))
    assert (closing["floor"], closing["memcpy"]) == (small["floor"], rows["Sender.send", "16 MiB"]["memcpy"])
    assert "[1/1] Sender.send 16 MiB" in result.stderr and "100%" in result.stderr  # the progress bar


def payloads(size: int, count: int) -> list[bytes]:
    block = bytes(stamped_block(template(size), 0, count))
    return [block[start:start + size] for start in range(0, len(block), size)]


def test_the_check_counts_as_intact_only_the_right_message_next_whole():
    good = payloads(100, 8)
    assert int.from_bytes(good[5][:8], "little") == 5 and good[5][8:] == good[6][8:]
    damaged = bytearray(good[2])
    damaged[50] ^= 1
    arrived = [good[0], good[1], bytes(damaged), good[4], good[3], good[5] + b"!", good[6][:-1], good[7]]
    for check_as in ("run", "one"):
        check = Check(100)
        if check_as == "run":
            check.run(arrived)
        else:
            for data in arrived:
                check.one(data)
        assert (check.received, check.intact) == (8, 3)  # 0, 1 and 7: each the right one at its place
    check = Check(100)
    check.run(good)
    check.run([memoryview(data) for data in payloads(100, 12)[8:]])
    assert (check.received, check.intact) == (12, 12)


def test_the_check_of_a_message_batch_counts_a_damaged_message_out():
    sent = payloads(64, 1000)
    sent[400] = sent[400][:-1] + bytes([sent[400][-1] ^ 0x80])
    check = Check(64)
    with copydata.Receiver(copy=False) as receiver:
        with copydata.Sender(receiver.hwnd, timeout=30) as sender:
            sender.send_many(sent)
        while check.received < len(sent):
            check.batch(receiver.recv_batch(timeout=30))
    assert (check.received, check.intact) == (1000, 999)


def test_the_c_floor_sends_each_message_stamped_with_its_number():
    payload = bytearray(template(100))
    with copydata.Receiver() as receiver:
        assert _native.floor_send(receiver.hwnd, payload, 5, 3, 30_000, 30.0) == 3
        messages: list[copydata.Message] = []
        while len(messages) < 3:
            messages += receiver.recv_many(3 - len(messages), timeout=30)
    assert [(message.tag, message.data) for message in messages] == [
        (0, number.to_bytes(8, "little") + template(100)[8:]) for number in (5, 6, 7)]
    with copydata.Receiver(max_message_size=50) as small:
        assert _native.floor_send(small.hwnd, payload, 0, 3, 30_000, 30.0) == 0  # refused at the first
    with pytest.raises(ValueError):
        _native.floor_send(small.hwnd, bytearray(7), 0, 1, 30_000, 30.0)
    with pytest.raises(copydata.TargetNotFound):
        _native.floor_send(small.hwnd, payload, 0, 1, 30_000, 30.0)


def test_the_memcpy_floor_copies_every_time():
    source, target = bytearray(template(4096)), bytearray(4096)
    assert _native.floor_memcpy(target, source, 1000)
    assert target == (999).to_bytes(8, "little") + template(4096)[8:]
    assert not _native.floor_memcpy(target, source, 0)
