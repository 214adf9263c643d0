"""The command line, each call a process of its own: listen and send talk to each other and to pywin32."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import unicodedata

import pytest

import copydata
from copydata import _cli
from peer import QUIT_TAG


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "copydata", *args], capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout)


def start_listener(name: str, *args: str) -> subprocess.Popen:
    listener = subprocess.Popen([sys.executable, "-m", "copydata", "listen", name, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    deadline = time.monotonic() + 60
    while copydata.find(name) is None:
        if listener.poll() is not None or time.monotonic() > deadline:
            listener.kill()
            pytest.fail(f"listen did not start: {listener.communicate()}")
        time.sleep(0.05)
    return listener


@pytest.mark.smoke
def test_listen_prints_what_send_sends(unique_name):
    listener = start_listener(unique_name, "--json-lines", "--count", "3", "--codec", "text")
    try:
        assert cli("send", unique_name, "héllo", "--codec", "text", "--tag", "5").stdout.strip() == "1"
        assert cli("send", unique_name, '{"n": [1, 2]}', "--codec", "json", "--tag", "0x10").returncode == 0
        assert cli("send", unique_name, "plain bytes").returncode == 0
        out, err = listener.communicate(timeout=60)
    finally:
        listener.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    sender = lines[0]["sender"]
    assert lines == [
        {"tag": 5, "sender": sender, "codec": "text", "data": "héllo"},
        {"tag": 16, "sender": sender, "codec": "json", "data": {"n": [1, 2]}},
        # plain bytes at a --codec text listener are decoded as UTF-8 text
        {"tag": 0, "sender": sender, "codec": "text", "data": "plain bytes"},
    ]
    assert f"listening as {unique_name!r}" in err
    assert listener.returncode == 0


def test_listen_prints_bytes_readably_and_as_base64(unique_name, tmp_path):
    data = bytes(range(256))
    source = tmp_path / "payload.bin"
    source.write_bytes(data)
    listener = start_listener(unique_name, "--json-lines", "--count", "1")
    assert cli("send", unique_name, "--file", str(source), "--tag", "9").returncode == 0
    out, _ = listener.communicate(timeout=60)
    record = json.loads(out)
    assert (record["tag"], base64.b64decode(record["data_base64"])) == (9, data)
    assert "tag=1 sender=0x0 codec=bytes: b'\\x00\\x01'" == _cli.message_as_text(copydata.Message(1, b"\0\1", 0))


def test_cli_send_reaches_a_pywin32_window_and_listen_hears_a_pywin32_sender(start_peer, unique_name):
    peer = start_peer("pywin32-serve")
    hwnd = peer.wait_ready()
    assert cli("send", hex(hwnd), "to pywin32", "--tag", "3").stdout.strip() == "1"
    report = peer.read()
    assert (report["tag"], report["size"]) == (3, len("to pywin32"))
    copydata.send(hwnd, b"", tag=QUIT_TAG)
    peer.finish()

    listener = start_listener(unique_name, "--json-lines", "--count", "1")
    hwnd = copydata.find(unique_name)
    sender = start_peer("pywin32-send", str(hwnd), "7:32:99")
    assert sender.read() == {"result": 1}
    out, _ = listener.communicate(timeout=60)
    from peer import payload
    record = json.loads(out)
    assert (record["tag"], base64.b64decode(record["data_base64"])) == (7, payload(32, 99))
    sender.finish()


def test_send_utf16_raw_with_terminating_nul(start_peer):
    peer = start_peer("serve")
    hwnd = peer.wait_ready()
    assert cli("send", str(hwnd), "AB", "--codec", "utf-16", "--raw", "--terminate").returncode == 0
    assert peer.read()["size"] == 6  # A\0 B\0 \0\0
    peer.finish()


def test_listen_and_send_with_a_key_file(unique_name, tmp_path):
    key_file, wrong_file, short_file = tmp_path / "key", tmp_path / "wrong", tmp_path / "short"
    key_file.write_bytes(bytes(range(32)))
    wrong_file.write_bytes(bytes(range(1, 33)))
    short_file.write_bytes(b"short")
    listener = start_listener(unique_name, "--json-lines", "--count", "1", "--codec", "text",
                              "--key-file", str(key_file))
    try:
        unsealed = cli("send", unique_name, "no key")
        assert (unsealed.returncode, "answered 0" in unsealed.stderr) == (_cli.EXIT_REFUSED, True)
        assert cli("send", unique_name, "wrong key", "--key-file", str(wrong_file)).returncode == _cli.EXIT_REFUSED
        short = cli("send", unique_name, "x", "--key-file", str(short_file))
        assert (short.returncode, "16 to 1024 bytes" in short.stderr) == (_cli.EXIT_USAGE, True)
        assert cli("send", unique_name, "sealed", "--key-file", str(key_file)).stdout.strip() == "1"
        out, _ = listener.communicate(timeout=60)
    finally:
        listener.kill()
    assert json.loads(out)["data"] == "sealed"


@pytest.mark.parametrize("args, code, text", [
    (["send", "copydata-no-such-receiver", "x"], _cli.EXIT_NOT_FOUND, "no live receiver is named"),
    (["find", "copydata-no-such-receiver"], _cli.EXIT_NOT_FOUND, "no live receiver is named"),
    (["send", "0x12345678", "x"], _cli.EXIT_NOT_FOUND, "does not exist"),
    (["send", "x", "{not json", "--codec", "json"], _cli.EXIT_USAGE, "Expecting property name"),
    (["send", "bad\\name", "x"], _cli.EXIT_USAGE, "backslash"),
    (["send", "somewhere"], _cli.EXIT_USAGE, "one of the arguments DATA --file is required"),
    (["listen"], _cli.EXIT_USAGE, "the following arguments are required: NAME"),
    (["frobnicate"], _cli.EXIT_USAGE, "invalid choice"),
])
def test_errors_give_a_message_and_an_exit_code(args, code, text):
    result = cli(*args)
    assert result.returncode == code, result
    assert text in result.stderr


def test_timeout_and_refusal_exit_codes(start_peer):
    slow = start_peer("serve", "--sync-sleep", "5")
    small = start_peer("serve", "--max-message-size", "4")
    slow_hwnd, small_hwnd = slow.wait_ready(), small.wait_ready()
    result = cli("send", str(slow_hwnd), "x", "--timeout", "0.5")
    assert (result.returncode, "did not answer within 0.5 s" in result.stderr) == (_cli.EXIT_TIMEOUT, True)
    result = cli("send", str(small_hwnd), "too long")
    assert (result.returncode, "answered 0" in result.stderr) == (_cli.EXIT_REFUSED, True)
    slow.kill()
    small.finish()


def test_listen_on_a_taken_name_exits_6(unique_name):
    with copydata.Receiver(unique_name):
        result = cli("listen", unique_name)
    assert result.returncode == _cli.EXIT_NAME_IN_USE
    assert "already holds the name" in result.stderr


def test_help_for_every_command():
    for command in ([], ["listen"], ["send"], ["find"], ["demo"]):
        result = cli(*command, "--help")
        assert result.returncode == 0
        assert "usage: copydata" in result.stdout


TERMINAL_TRICKS = "ok\x1b[2J\x1b]0;owned\x07\rfake line\nline two\u202eevil\x9b31m\x7f"


@pytest.mark.parametrize("mode", ["text", "json-lines"])
def test_listen_escapes_what_a_terminal_would_act_on(unique_name, mode):
    """Any sender chooses the text a listener prints: escape sequences, carriage returns, line
    breaks, bidirectional overrides and C1 controls arrive escaped, one message a line."""
    listener = start_listener(unique_name, "--count", "1", "--codec", "text",
                              *(["--json-lines"] if mode == "json-lines" else []))
    try:
        copydata.send(unique_name, TERMINAL_TRICKS, codec="text")
        out, _ = listener.communicate(timeout=60)
    finally:
        listener.kill()
    assert out.count("\n") == 1
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in out[:-1]), repr(out)
    if mode == "json-lines":
        assert json.loads(out)["data"] == TERMINAL_TRICKS  # still exactly what was sent
    else:
        assert out.endswith(r"ok\x1b[2J\x1b]0;owned\x07\x0dfake line\x0aline two\u202eevil\x9b31m\x7f" + "\n")
