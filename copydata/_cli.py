"""The command line: python -m copydata (or the copydata script) listen | send | find | demo."""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from typing import Any, Sequence

from . import _codecs, _demo
from ._errors import (CopyDataError, MessageTooLarge, NameInUse, Rejected, RecvTimeout, SendTimeout, TagTooLarge,
                      TargetNotFound)
from ._receiver import Message, Receiver
from ._send import DEFAULT_TIMEOUT, find, send

EXIT_OK = 0
EXIT_ERROR = 1        # any other copydata error
EXIT_USAGE = 2        # bad arguments (argparse's own code)
EXIT_NOT_FOUND = 3    # no such receiver or window
EXIT_TIMEOUT = 4      # the receiver did not answer in time
EXIT_REFUSED = 5      # the receiver refused the message, or it was too large to send
EXIT_NAME_IN_USE = 6  # another live receiver holds the name

EXIT_CODES = """exit codes: 0 success, 1 other error, 2 bad arguments, 3 no such receiver or window,
4 timed out, 5 refused or too large, 6 name in use"""

CLI_CODECS = ["bytes", "text", "utf-16", "json"]  # pickle is never offered here


def parse_target(text: str) -> int | str:
    """A window handle (decimal or 0x hex) or a receiver's name."""
    try:
        return int(text, 0)
    except ValueError:
        return text


def codec_for(name: str, terminate: bool = False) -> _codecs.Codec:
    return _codecs.Utf16Codec(terminate=True) if name == "utf-16" and terminate else _codecs.resolve(name)


# What a terminal may act on rather than show: control characters (C0, DEL, C1: escape sequences,
# carriage returns), format characters (bidirectional overrides, zero-width ones), line and
# paragraph separators, and lone surrogates. Any sender chooses the text a listener prints.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                          "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]")


def _escape(character: re.Match) -> str:
    code = ord(character.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal could act on written as an escape: one message
    is one line, and a sender can neither move the cursor nor fake lines."""
    return _UNPRINTABLE.sub(_escape, text)


def message_as_json(message: Message) -> str:
    record: dict[str, Any] = {"tag": message.tag, "sender": message.sender, "codec": message.codec}
    if isinstance(message.data, bytes):
        record["data_base64"] = base64.b64encode(message.data).decode("ascii")
    else:
        record["data"] = message.data
    # json escapes C0 characters itself; the rest become \\u escapes, which JSON reads back.
    return _UNPRINTABLE.sub(lambda character: f"\\u{ord(character.group()):04x}", json.dumps(record, ensure_ascii=False))


def message_as_text(message: Message) -> str:
    data = message.data
    if isinstance(data, bytes):
        shown = repr(data[:200]) + (f"... ({len(data)} bytes)" if len(data) > 200 else "")
    elif isinstance(data, str):
        shown = printable(data)
    else:
        shown = printable(json.dumps(data, ensure_ascii=False))
    return f"tag={message.tag} sender={message.sender:#x} codec={printable(message.codec)}: {shown}"


def read_key(path: str | None) -> bytes | None:
    """The key in a file: its bytes as they are (a key on the command line would show in
    every process listing)."""
    if path is None:
        return None
    with open(path, "rb") as source:
        return source.read()


def listen(options: argparse.Namespace) -> int:
    show = message_as_json if options.json_lines else message_as_text
    with Receiver(options.name, codec=options.codec, key=read_key(options.key_file)) as receiver:
        print(f"listening as {options.name!r} (window {receiver.hwnd:#x}); Ctrl-C to stop",
              file=sys.stderr, flush=True)
        received = 0
        try:
            while options.count is None or received < options.count:
                try:
                    message = receiver.recv(timeout=1.0)
                except RecvTimeout:
                    continue
                print(show(message), flush=True)
                received += 1
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr, flush=True)
    return EXIT_OK


def send_command(options: argparse.Namespace) -> int:
    codec = codec_for(options.codec, options.terminate)
    if options.file is not None:
        with open(options.file, "rb") as source:
            content = source.read()
        data: Any = content if options.codec == "bytes" else content.decode("utf-8")
    elif options.codec == "bytes":
        data = options.data.encode("utf-8")
    else:
        data = options.data
    if options.codec == "json":
        data = json.loads(data)
    result = send(parse_target(options.target), data, tag=options.tag, codec=codec, raw=options.raw,
                  timeout=options.timeout, key=read_key(options.key_file))
    print(result)
    return EXIT_OK


def find_command(options: argparse.Namespace) -> int:
    hwnd = find(options.name)
    if hwnd is None:
        print(f"copydata: no live receiver is named {options.name!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"{hwnd:#x}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="copydata", description="WM_COPYDATA messages between processes on Windows.",
        epilog=EXIT_CODES)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listen_parser = commands.add_parser(
        "listen", help="print every message sent to a named receiver", epilog=EXIT_CODES,
        description="Open a receiver under NAME and print each message with its tag and sender, "
                    "until Ctrl-C (or --count messages).")
    listen_parser.add_argument("name", metavar="NAME")
    listen_parser.add_argument("--codec", choices=CLI_CODECS, default="bytes",
                               help="how to decode payloads that come without an envelope (default: bytes)")
    listen_parser.add_argument("--json-lines", action="store_true",
                               help="one JSON object per message (bytes as data_base64)")
    listen_parser.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    listen_parser.add_argument("--key-file", metavar="PATH",
                               help="accept only messages sealed with the key in this file (16 to 1024 bytes)")

    send_parser = commands.add_parser(
        "send", help="send one message to a receiver or window", epilog=EXIT_CODES,
        description="Send DATA (or a file's content) as one WM_COPYDATA and print the receiver's answer.")
    send_parser.add_argument("target", metavar="TARGET", help="a receiver's name, or a window handle (0x...)")
    content = send_parser.add_mutually_exclusive_group(required=True)
    content.add_argument("data", nargs="?", metavar="DATA", help="the message: UTF-8 text, or JSON with --codec json")
    content.add_argument("--file", metavar="PATH", help="send this file's content")
    send_parser.add_argument("--tag", type=lambda text: int(text, 0), default=0, help="dwData (default 0)")
    send_parser.add_argument("--codec", choices=CLI_CODECS, default="bytes",
                             help="bytes: DATA's UTF-8 bytes, unchanged (default); others travel in "
                                  "copydata's envelope unless --raw")
    send_parser.add_argument("--raw", action="store_true", help="no envelope: for programs that are not copydata")
    send_parser.add_argument("--terminate", action="store_true",
                             help="with --codec utf-16: add a trailing NUL, as C# and AutoHotkey expect")
    send_parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                             help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT})")
    send_parser.add_argument("--key-file", metavar="PATH",
                             help="seal the message with the key in this file, for a receiver that has it")

    find_parser = commands.add_parser("find", help="print the window handle of a named receiver",
                                      epilog=EXIT_CODES)
    find_parser.add_argument("name", metavar="NAME")

    _demo.add_arguments(commands.add_parser(
        "demo", help="copydata beside a C loop of SendMessage and memcpy, every message checked",
        description="Send 64-byte, 1 MiB and 16 MiB messages to a receiver process, which checks every one, "
                    "with copydata.send, a Sender and a plain C loop of SendMessageTimeoutW, and time them "
                    "beside memcpy: under a minute, ending with one line to remember."))
    return parser


def exit_code_for(error: Exception) -> int:
    for kind, code in ((TargetNotFound, EXIT_NOT_FOUND), (SendTimeout, EXIT_TIMEOUT),
                       ((Rejected, MessageTooLarge, TagTooLarge), EXIT_REFUSED), (NameInUse, EXIT_NAME_IN_USE),
                       (CopyDataError, EXIT_ERROR), (ValueError, EXIT_USAGE)):
        if isinstance(error, kind):
            return code
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    handlers = {"listen": listen, "send": send_command, "find": find_command, "demo": _demo.main}
    try:
        return handlers[options.command](options)
    except (CopyDataError, ValueError, TypeError, OSError) as error:
        print(f"copydata: {error}", file=sys.stderr)
        return exit_code_for(error)
