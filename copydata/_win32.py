"""Turning the C core's status codes and Windows error codes into words."""

from __future__ import annotations

import ctypes

from ._core import lib

_STATUS_TEXT = {
    lib.CD_OK: "success",
    lib.CD_TIMEOUT: "timed out",
    lib.CD_CLOSED: "the receiver is closed",
    lib.CD_TARGET_GONE: "the window does not exist",
    lib.CD_WIN32_ERROR: "a Windows call failed",
    lib.CD_NO_MEMORY: "out of memory",
    lib.CD_NAME_IN_USE: "the name is in use",
    lib.CD_NOT_FOUND: "not found",
    lib.CD_INVALID: "an argument is out of range",
    lib.CD_FULL: "the channel is full",
}


def describe_error(status: int, winerror: int = 0) -> str:
    text = _STATUS_TEXT.get(status, f"status {status}")
    if winerror:
        text += f" ([WinError {winerror}] {ctypes.FormatError(winerror).strip()})"
    return text
