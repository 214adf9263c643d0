"""The pure parts: argument checks and conversions."""

from __future__ import annotations

import math

import pytest

from copydata import _checks


@pytest.mark.parametrize("seconds, milliseconds", [
    (None, _checks.WAIT_FOREVER_MS), (math.inf, _checks.WAIT_FOREVER_MS), (1, 1000), (0.5, 500),
    (0.0001, 1), (2.0005, 2001), (4_000_000, 4_000_000_000),
])
def test_timeout_ms_rounds_up(seconds, milliseconds):
    assert _checks.timeout_ms(seconds) == milliseconds


def test_timeout_ms_refuses_what_is_not_a_wait():
    for bad in (0, -1, math.nan, 0.0):
        with pytest.raises(ValueError):
            _checks.timeout_ms(bad)
    assert _checks.timeout_ms(0, allow_zero=True) == 0
    with pytest.raises(ValueError, match="49 days"):
        _checks.timeout_ms(5_000_000)
    for bad in ("1", True, [1]):
        with pytest.raises(TypeError):
            _checks.timeout_ms(bad)


def test_tag_range():
    assert _checks.tag(0) == 0
    assert _checks.tag((1 << 64) - 1) == (1 << 64) - 1
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError):
            _checks.tag(bad)
    for bad in (1.0, "1", None, True):
        with pytest.raises(TypeError):
            _checks.tag(bad)


def test_window_handles_from_pywin32_may_be_negative():
    assert _checks.window_handle(0x30052) == 0x30052
    assert _checks.window_handle(-2) == (1 << 64) - 2
    with pytest.raises(ValueError):
        _checks.window_handle(1 << 64)
    with pytest.raises(ValueError, match="HWND_BROADCAST"):
        _checks.window_handle(0xFFFF)


def test_sizes_and_flags():
    assert _checks.positive_size(1, "n") == 1
    with pytest.raises(ValueError, match="n must be in 1..10"):
        _checks.positive_size(11, "n", most=10)
    with pytest.raises(ValueError):
        _checks.positive_size(0, "n")
    assert _checks.send_flags(0x22) == 0x22
    with pytest.raises(ValueError):
        _checks.send_flags(1 << 32)


def test_receiver_names():
    assert _checks.receiver_name("a") == "a"
    assert _checks.receiver_name("x" * 128) == "x" * 128
    for bad in ("", "x" * 129, "a\\b", "a\0b"):
        with pytest.raises(ValueError):
            _checks.receiver_name(bad)
    with pytest.raises(TypeError):
        _checks.receiver_name(b"a")
