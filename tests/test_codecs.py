"""Codecs and the envelope: objects arrive as objects, foreign bytes stay bytes, pickle runs nothing."""

from __future__ import annotations

import json
import os
import pickle

import pytest

import copydata
from copydata import _codecs, _envelope


# --- the pure parts -------------------------------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("text", "héllo ✓"), ("utf-16", "héllo ✓ 𝄞"), ("json", {"a": [1, 2.5, None, "ü"]}), ("pickle", {1, 2}),
])
def test_built_in_codecs_round_trip(name, value):
    codec = _codecs.resolve(name)
    assert codec.decode(codec.encode(value)) == value


def test_utf16_is_little_endian_and_handles_the_trailing_nul():
    assert copydata.Utf16Codec().encode("AB") == b"A\0B\0"
    assert copydata.Utf16Codec(terminate=True).encode("AB") == b"A\0B\0\0\0"
    assert copydata.Utf16Codec().decode(b"A\0B\0\0\0") == "AB"
    assert copydata.Utf16Codec().decode(b"A\0B\0") == "AB"
    with pytest.raises(ValueError, match="even"):
        copydata.Utf16Codec().decode(b"A\0B")


def test_codec_resolution_errors():
    with pytest.raises(ValueError, match="unknown codec 'yaml'"):
        _codecs.resolve("yaml")
    with pytest.raises(TypeError, match="encode"):
        _codecs.resolve(42)
    with pytest.raises(TypeError, match="str"):
        _codecs.resolve("text").encode(b"bytes")


def test_envelope_layout_is_as_documented():
    wrapped = _envelope.wrap(b"body", codec_id=3, kind=_envelope.REQUEST, request_id=0x0102030405060708)
    assert wrapped == b"\x89CDE" + bytes([1, 3, 1, 0]) + bytes.fromhex("0807060504030201") + b"body"
    assert _envelope.unwrap(wrapped) == (3, _envelope.REQUEST, 0x0102030405060708, b"body")


@pytest.mark.parametrize("payload", [
    b"", b"\x89CDE", b"\x89CDE" + bytes(11),                         # too short
    _envelope.wrap(b"x", 1)[:4] + b"\x02" + _envelope.wrap(b"x", 1)[5:],  # version 2
    _envelope.wrap(b"x", 9),                                           # unknown codec
    _envelope.wrap(b"x", 1, kind=9, request_id=1),                     # unknown kind
    _envelope.wrap(b"x", 1)[:7] + b"\x01" + _envelope.wrap(b"x", 1)[8:],  # flags set
    _envelope.wrap(b"x", 1, kind=_envelope.MESSAGE, request_id=5),     # id on a plain message
    _envelope.wrap(b"x", 1, kind=_envelope.REQUEST, request_id=0),     # request without id
    b"plain text", "plain UTF-16 text".encode("utf-16-le"),
])
def test_anything_but_a_valid_envelope_is_plain_bytes(payload):
    assert _envelope.unwrap(payload) is None
    with copydata.Receiver() as receiver:
        copydata.send(receiver, payload, tag=5)
        assert receiver.recv(timeout=5) == copydata.Message(5, payload, 0, "bytes", None)


# --- across processes -----------------------------------------------------------------------

@pytest.mark.parametrize("codec, value", [
    ("text", "héllo wörld"), ("utf-16", "héllo ✓"), ("json", {"job": 7, "args": ["a", None, 1.5]}),
])
def test_enveloped_values_from_another_process_arrive_decoded(start_peer, codec, value):
    with copydata.Receiver() as receiver:
        peer = start_peer("send-value", str(receiver.hwnd), codec, json.dumps(value), "--tag", "3")
        assert peer.read() == {"result": 1}
        assert receiver.recv(timeout=30) == copydata.Message(3, value, 0, codec, None)
        peer.finish()


def test_values_sent_to_another_process_arrive_decoded(start_peer):
    peer = start_peer("serve")
    hwnd = peer.wait_ready()
    copydata.send(hwnd, "text ✓", codec="text", tag=1)
    copydata.send(hwnd, {"k": [1, 2]}, codec="json", tag=2)
    copydata.send(hwnd, b"raw", tag=3)
    assert peer.read() == {"tag": 1, "value": "text ✓", "sender": 0, "codec": "text"}
    assert peer.read() == {"tag": 2, "value": {"k": [1, 2]}, "sender": 0, "codec": "json"}
    assert peer.read()["size"] == 3
    peer.finish()


def test_receiver_codec_decodes_foreign_payloads_and_raw_turns_envelopes_off(start_peer):
    with copydata.Receiver(codec="json") as json_receiver, copydata.Receiver(raw=True) as raw_receiver:
        copydata.send(json_receiver, b'{"plain": "json"}')
        assert json_receiver.recv(timeout=5) == copydata.Message(0, {"plain": "json"}, 0, "json", None)
        copydata.send(json_receiver, b"not json")  # undecodable: delivered as bytes, counted
        assert json_receiver.recv(timeout=5) == copydata.Message(0, b"not json", 0, "bytes", None)
        assert json_receiver.stats.undecodable == 1

        enveloped = _envelope.wrap(b"hi", _codecs.TextCodec.codec_id)
        copydata.send(raw_receiver, "hi", codec="text")
        assert raw_receiver.recv(timeout=5).data == enveloped


def test_send_raw_codec_leaves_the_envelope_out():
    with copydata.Receiver() as receiver:
        copydata.send(receiver, "AB", codec=copydata.Utf16Codec(terminate=True), raw=True)
        assert receiver.recv(timeout=5).data == b"A\0B\0\0\0"


def test_custom_codec_object_on_both_sides():
    class Reversed:
        def encode(self, obj):
            return obj.encode()[::-1]

        def decode(self, data):
            return data[::-1].decode()

    with copydata.Receiver(codec=Reversed()) as custom, copydata.Receiver() as plain:
        copydata.send(custom, "custom", codec=Reversed())
        assert custom.recv(timeout=5) == copydata.Message(0, "custom", 0, "Reversed", None)
        copydata.send(plain, "custom", codec=Reversed())
        assert plain.recv(timeout=5) == copydata.Message(0, b"motsuc", 0, "custom", None)


def test_pickle_at_a_default_receiver_runs_nothing_and_is_counted(start_peer, tmp_path, caplog):
    proof = tmp_path / "pickle-ran"
    with copydata.Receiver() as receiver:
        peer = start_peer("send-evil-pickle", str(receiver.hwnd), str(proof))
        assert peer.read() == {"result": 1}  # accepted by the window, then refused by decoding
        peer.finish()
        with pytest.raises(copydata.RecvTimeout):
            receiver.recv(timeout=0.5)
        assert receiver.stats.refused_pickle == 1
    assert not proof.exists()
    assert any("allow_pickle=True" in record.getMessage() for record in caplog.records)


def test_pickle_is_decoded_only_with_allow_pickle(start_peer, tmp_path):
    proof = tmp_path / "pickle-ran"
    with copydata.Receiver(allow_pickle=True) as receiver:
        copydata.send(receiver, {"set": {1, 2}}, codec="pickle")
        assert receiver.recv(timeout=5).data == {"set": {1, 2}}
        peer = start_peer("send-evil-pickle", str(receiver.hwnd), str(proof))
        peer.finish()
        receiver.recv(timeout=10)
    assert proof.is_dir()  # allow_pickle really unpickles, so only trusted senders may use it
    os.rmdir(proof)


def test_pickle_module_is_not_what_decides(monkeypatch):
    # A receiver without allow_pickle never calls pickle.loads, whatever the payload.
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle.loads was called")

    monkeypatch.setattr(pickle, "loads", forbidden)
    with copydata.Receiver() as receiver:
        copydata.send(receiver, [1, 2], codec="pickle")
        copydata.send(receiver, b"after", tag=9)
        assert receiver.recv(timeout=5).tag == 9
        assert receiver.stats.refused_pickle == 1


REVERSED_CODEC = """
class Reversed:
    name = "reversed"

    def encode(self, obj):
        return obj.encode()[::-1]

    def decode(self, data):
        return data[::-1].decode()
"""


def test_custom_codec_across_processes(tmp_path):
    import subprocess
    import sys

    (tmp_path / "reversed_codec.py").write_text(REVERSED_CODEC)
    (tmp_path / "custom_sender.py").write_text(
        "import sys, copydata\n"
        "from reversed_codec import Reversed\n"
        "copydata.send(int(sys.argv[1]), 'made by a custom codec', codec=Reversed(), tag=12)\n")
    namespace: dict = {}
    exec(REVERSED_CODEC, namespace)
    with copydata.Receiver(codec=namespace["Reversed"]()) as receiver:
        result = subprocess.run([sys.executable, str(tmp_path / "custom_sender.py"), str(receiver.hwnd)],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert receiver.recv(timeout=30) == copydata.Message(12, "made by a custom codec", 0, "reversed", None)
