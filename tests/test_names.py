"""Receivers found by name: published in shared memory, unique, withdrawn at close."""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import struct

import pytest

import copydata
from frames import USER, kernel32

advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)


def slot_security(object_name: str) -> tuple[str, list[tuple[str, str]]]:
    """The owner of a named section, and its DACL's entries as (access, trustee), in SDDL."""
    handle = kernel32.OpenFileMappingW(0x20000, False, object_name)  # READ_CONTROL
    if not handle:
        raise ctypes.WinError(ctypes.get_last_error())
    descriptor, text = ctypes.c_void_p(), ctypes.c_wchar_p()
    try:
        # SE_KERNEL_OBJECT, OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION
        assert advapi32.GetSecurityInfo(ctypes.c_void_p(handle), 6, 0x5, None, None, None, None,
                                        ctypes.byref(descriptor)) == 0
        assert advapi32.ConvertSecurityDescriptorToStringSecurityDescriptorW(descriptor, 1, 0x5, ctypes.byref(text),
                                                                             None)
        sddl = text.value
    finally:
        kernel32.CloseHandle(ctypes.c_void_p(handle))
    owner = re.match(r"O:([^D]+)", sddl)
    return owner.group(1) if owner else "", re.findall(r"\(A;[^;]*;([^;]*);[^;]*;[^;]*;([^)]*)\)", sddl)


def test_find_returns_the_receivers_window_and_none_after_close(unique_name):
    with copydata.Receiver(unique_name) as receiver:
        assert receiver.name == unique_name
        assert copydata.find(unique_name) == receiver.hwnd
    assert copydata.find(unique_name) is None


def test_find_unknown_name_is_none_and_send_to_it_raises_target_not_found(unique_name):
    assert copydata.find(unique_name) is None
    with pytest.raises(copydata.TargetNotFound, match="no live receiver is named"):
        copydata.send(unique_name, b"x")


def test_second_receiver_with_the_same_name_in_one_process_is_refused(unique_name):
    with copydata.Receiver(unique_name) as first:
        with pytest.raises(copydata.NameInUse, match=unique_name):
            copydata.Receiver(unique_name)
        assert copydata.find(unique_name) == first.hwnd
    with copydata.Receiver(unique_name) as again:
        assert copydata.find(unique_name) == again.hwnd


def test_name_held_by_another_process_is_refused_until_it_exits(start_peer, unique_name):
    peer = start_peer("serve", unique_name)
    hwnd = peer.wait_ready()
    assert copydata.find(unique_name) == hwnd
    with pytest.raises(copydata.NameInUse):
        copydata.Receiver(unique_name)
    peer.finish()
    with copydata.Receiver(unique_name) as receiver:
        assert copydata.find(unique_name) == receiver.hwnd


def test_a_dead_holders_stale_entry_is_ignored_and_taken_over(start_peer, unique_name):
    peer = start_peer("serve", unique_name)
    hwnd = peer.wait_ready()
    # Holding the section open keeps the dead peer's entry in it: a stale entry.
    section = mmap.mmap(-1, 8, tagname=f"Local\\copydata.v1.name.{unique_name}")
    try:
        assert struct.unpack("<Q", section[:8])[0] & 0xFFFFFFFF == hwnd & 0xFFFFFFFF
        peer.kill()
        assert copydata.find(unique_name) is None
        with copydata.Receiver(unique_name) as receiver:
            assert copydata.find(unique_name) == receiver.hwnd
            assert struct.unpack("<Q", section[:8])[0] >> 32 == os.getpid()
        assert struct.unpack("<Q", section[:8])[0] == 0
    finally:
        section.close()


@pytest.mark.parametrize("name, error", [
    ("", ValueError), ("a" * 129, ValueError), ("back\\slash", ValueError), ("nul\0", ValueError),
    (b"bytes", TypeError), (7, TypeError),
])
def test_invalid_names_are_refused_everywhere(name, error):
    with pytest.raises(error):
        copydata.find(name)
    with pytest.raises(error):
        copydata.Receiver(name)


def test_longest_name_and_any_unicode_work():
    for name in ["n" * 128, "jöbs/ünïcode ✓ 名前"]:
        with copydata.Receiver(name) as receiver:
            assert copydata.find(name) == receiver.hwnd
            copydata.send(name, b"hi")
            assert receiver.recv(timeout=5).data == b"hi"


def test_a_name_slot_made_by_another_owner_is_neither_used_nor_believed(start_peer, unique_name):
    """A process that makes a name's slot first (here owned by the Administrators group, open to
    everyone) decides who may write there; copydata neither publishes into it nor believes the
    window it names."""
    impostor = start_peer("squat", unique_name, "--sddl", "O:BAD:(A;;GA;;;WD)")
    impostor.wait_ready()
    with pytest.raises(copydata.CopyDataError, match="not made by this user"):
        copydata.find(unique_name)
    with pytest.raises(copydata.CopyDataError, match="not made by this user"):
        copydata.send(unique_name, b"meant for someone else")
    with pytest.raises(copydata.NameInUse, match="not made by this user"):
        copydata.Receiver(unique_name)
    impostor.finish()
    with copydata.Receiver(unique_name) as receiver:  # once it is gone, the name is free again
        assert copydata.find(unique_name) == receiver.hwnd


def test_a_name_slot_that_is_not_committed_memory_is_refused_without_reading_it(start_peer, unique_name):
    impostor = start_peer("squat", unique_name, "--reserve")
    impostor.wait_ready()
    with pytest.raises(copydata.CopyDataError, match="not made by this user"):
        copydata.find(unique_name)
    with pytest.raises(copydata.NameInUse):
        copydata.Receiver(unique_name)
    impostor.finish()


def test_a_name_slot_is_open_to_its_user_only(unique_name):
    with copydata.Receiver(unique_name):
        owner, aces = slot_security(f"Local\\copydata.v1.name.{unique_name}")
        assert owner == USER
        assert [trustee for _, trustee in aces] == [USER]
