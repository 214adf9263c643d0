"""copydata: fast, safe inter-process messages on Windows through WM_COPYDATA.

    import copydata

    with copydata.Receiver("jobs", on_message=print) as rx:
        copydata.send("jobs", b"payload", tag=7)
"""

import sys

if sys.platform != "win32":
    raise ImportError(
        "copydata needs Windows: it sends and receives WM_COPYDATA window messages. "
        "On Linux, run it in Windows Python under Wine: python3 tools/winenv.py python "
        "(see README.md)."
    )

try:
    from ._core import lib as _lib  # noqa: F401
except ImportError as error:  # pragma: no cover - only without a built extension
    raise ImportError(
        f"copydata's C core (copydata._core) is not built: {error}. "
        "Install with 'pip install .', or build with 'python3 tools/winenv.py build' under Wine."
    ) from error

from ._codecs import BytesCodec, Codec, JsonCodec, NrbfCodec, PickleCodec, TextCodec, Utf16Codec
from ._errors import (
    ChannelFull,
    CodecError,
    CopyDataError,
    MessageTooLarge,
    NameInUse,
    ReceiverClosed,
    Rejected,
    RecvTimeout,
    RequestFailed,
    RequestTimeout,
    SendFailed,
    SendTimeout,
    TagTooLarge,
    TargetNotFound,
)
from ._nrbf_format import DotNetObject
from ._published import HandlePublication, find_published, publish_handle
from ._constants import (
    DEFAULT_TIMEOUT,
    MAX_MESSAGE_SIZE,
    REFUSAL_REASONS,
    SMTO_ABORTIFHUNG,
    SMTO_BLOCK,
    SMTO_ERRORONEXIT,
    SMTO_NORMAL,
    SMTO_NOTIMEOUTIFNOTHUNG,
    Reason,
    SendFlags,
)
from ._messages import Message, MessageBatch, ReceiverStats, Refusal
from ._receiver import Receiver
from ._request import arequest, request
from ._sender import Sender
from ._send import asend, broadcast, find, find_window, send, subscribers
from ._version import __version__

__all__ = [
    "BytesCodec", "Codec", "JsonCodec", "NrbfCodec", "PickleCodec", "TextCodec", "Utf16Codec",
    "DotNetObject", "HandlePublication", "find_published", "publish_handle",
    "ChannelFull", "CodecError", "CopyDataError", "MessageTooLarge", "NameInUse", "ReceiverClosed", "Rejected",
    "RecvTimeout", "RequestFailed", "RequestTimeout", "SendFailed", "SendTimeout", "TagTooLarge",
    "TargetNotFound",
    "MAX_MESSAGE_SIZE", "REFUSAL_REASONS", "Message", "MessageBatch", "Receiver", "ReceiverStats", "Refusal",
    "Sender", "arequest", "request",
    "Reason", "SendFlags", "DEFAULT_TIMEOUT", "SMTO_ABORTIFHUNG", "SMTO_BLOCK", "SMTO_ERRORONEXIT", "SMTO_NORMAL",
    "SMTO_NOTIMEOUTIFNOTHUNG", "asend", "broadcast", "find", "find_window", "send", "subscribers",
    "__version__",
]
