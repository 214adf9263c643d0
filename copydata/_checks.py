"""Checks and conversions of caller arguments: pure Python, shared by every public call."""

from __future__ import annotations

import math
import operator

from ._constants import MAX_NAME_LENGTH, WAIT_FOREVER_MS

HWND_BROADCAST = 0xFFFF
_UINT64 = 1 << 64
_UINT32 = 1 << 32


def timeout_ms(timeout: float | None, *, allow_zero: bool = False) -> int:
    """Seconds (or None: no limit) as the milliseconds Win32 waits take, rounded up."""
    if timeout is None:
        return WAIT_FOREVER_MS
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0 or (timeout == 0 and not allow_zero):
        least = "0 or more" if allow_zero else "more than 0"
        raise ValueError(f"timeout must be {least} seconds, or None to wait without limit; got {timeout!r}")
    if math.isinf(timeout):
        return WAIT_FOREVER_MS
    milliseconds = math.ceil(timeout * 1000)
    if milliseconds >= WAIT_FOREVER_MS:
        raise ValueError(f"timeout {timeout!r} s is too long (49 days at most); use None to wait without limit")
    return milliseconds


def tag(value: int) -> int:
    """A dwData value: 0 to 2**64-1 (a 32-bit peer receives 32 bits: ``send`` refuses more to it)."""
    number = _integer(value, "tag")
    if not 0 <= number < _UINT64:
        raise ValueError(f"tag must be in 0..2**64-1 (it travels as dwData, a ULONG_PTR); got {number}")
    return number


def window_handle(value: int, what: str = "window handle") -> int:
    """A window handle as an unsigned 64-bit value; pywin32 may hand out negative ones."""
    number = _integer(value, what)
    if not -(1 << 63) <= number < _UINT64:
        raise ValueError(f"{what} {number} does not fit in 64 bits")
    number %= _UINT64
    if number == HWND_BROADCAST:
        raise ValueError(f"{what} is HWND_BROADCAST: copydata sends to one window at a time")
    return number


def positive_size(value: int, what: str, *, most: int = _UINT64 - 1) -> int:
    number = _integer(value, what)
    if not 0 < number <= most:
        raise ValueError(f"{what} must be in 1..{most}; got {number}")
    return number


def send_flags(value: int) -> int:
    number = _integer(value, "flags")
    if not 0 <= number < _UINT32:
        raise ValueError(f"flags must be SMTO_* values combined with |; got {number}")
    return number


def receiver_name(name: str) -> str:
    """A receiver name: 1 to 128 characters, no backslash (it becomes part of an object name)."""
    if not isinstance(name, str):
        raise TypeError(f"a receiver name must be a str, not {type(name).__name__}")
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"a receiver name must have 1 to {MAX_NAME_LENGTH} characters; got {len(name)}")
    if "\\" in name or "\0" in name:
        raise ValueError(f"a receiver name cannot contain a backslash or NUL: {name!r}")
    return name


def _integer(value: int, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, not {type(value).__name__}") from None
