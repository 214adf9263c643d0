"""The exceptions copydata raises; every one derives from CopyDataError."""

from __future__ import annotations


class CopyDataError(Exception):
    """Base class of every error copydata raises about a window, a name or a message."""


class TargetNotFound(CopyDataError):
    """No window has that handle, or no live receiver holds that name."""


class SendTimeout(CopyDataError, TimeoutError):
    """The receiver did not answer within the timeout, or Windows considers it hung."""


class Rejected(CopyDataError):
    """The receiver answered 0: its queue was full, the message too large for it, or it refused."""

    def __init__(self, message: str, result: int = 0) -> None:
        super().__init__(message)
        self.result = result


class MessageTooLarge(CopyDataError, ValueError):
    """The payload is larger than the limit; nothing was sent."""


class TagTooLarge(CopyDataError, ValueError):
    """The tag is above 2**32-1 and the target is a 32-bit program, whose dwData holds 32 bits; nothing was sent."""


class SendFailed(CopyDataError):
    """SendMessageTimeoutW failed for another reason; ``winerror`` holds the Windows error code."""

    def __init__(self, message: str, winerror: int) -> None:
        super().__init__(message)
        self.winerror = winerror


class NameInUse(CopyDataError):
    """Another live receiver on this desktop session already holds that name."""


class ReceiverClosed(CopyDataError):
    """The receiver is closed and has nothing more to deliver."""


class RecvTimeout(CopyDataError, TimeoutError):
    """No message arrived within the timeout given to ``recv``."""


class ChannelFull(CopyDataError):
    """The channel already has as many live subscribers as it can list."""


class RequestTimeout(CopyDataError, TimeoutError):
    """No reply to a request arrived within the timeout."""


class RequestFailed(CopyDataError):
    """The replying side raised while handling the request; ``remote_error`` says what."""

    def __init__(self, message: str, remote_error: str) -> None:
        super().__init__(message)
        self.remote_error = remote_error


class CodecError(CopyDataError, ValueError):
    """A payload is not what its codec reads (a malformed or hostile BinaryFormatter stream, for
    one), or a value is one the codec cannot write; the message says what and where."""
