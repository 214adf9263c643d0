"""Frames, parts and sections built by hand, as another implementation (or an attacker) would,
and the waits the tests share: every test module takes them from here, none from another."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.wintypes
import secrets
import struct
import time
from pathlib import Path
from typing import Iterator

import copydata
from copydata import _envelope

MiB = 1 << 20

# A part frame, written out by hand: envelope header, total size, offset.
PART_FRAME = struct.Struct("<4sBBBBQQQ")


def part(transfer_id: int, total: int, offset: int, data: bytes, codec: int = 0) -> bytes:
    return PART_FRAME.pack(_envelope.MAGIC, 1, codec, 5, 0, transfer_id, total, offset) + data


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
kernel32.CreateFileMappingW.restype = ctypes.wintypes.HANDLE
kernel32.MapViewOfFile.restype = ctypes.c_void_p
kernel32.OpenFileMappingW.restype = ctypes.c_void_p
kernel32.CreateFileW.restype = ctypes.wintypes.HANDLE
kernel32.VirtualAlloc.restype = ctypes.c_void_p


def current_user_sid() -> str:
    import win32api
    import win32security

    token = win32security.OpenProcessToken(win32api.GetCurrentProcess(), win32security.TOKEN_QUERY)
    return win32security.ConvertSidToStringSid(win32security.GetTokenInformation(token, win32security.TokenUser)[0])


USER = current_user_sid()


# A section descriptor, written out by hand: envelope header (the lease id in the request-id
# field), offset, length, release offset, ring offset, the section's secret, name length.
SECTION_FRAME = struct.Struct("<4sBBBBQQQQQ16sI")
# Every section starts with a header: the magic and the secret that descriptors must carry, then
# (in a Sender's) the release words and the ring block. Frames lie from DATA on.
SECTION_MAGIC = b"cd.shm.1"
DATA = 4096
# The secret of each section made here, which descriptor() puts in by default.
_secrets: dict[str, bytes] = {}


def descriptor(name: str, offset: int, length: int, characters: int | None = None, flags: int = 0,
               request_id: int = 0, codec: int = 0, release_offset: int = 0, ring_offset: int = 0,
               secret: bytes | None = None) -> bytes:
    """A descriptor of ``name``'s range; with the secret of the Section of that name made here
    (zeros for another), unless ``secret`` says otherwise."""
    encoded = name.encode("utf-16-le")
    count = len(name) if characters is None else characters
    secret = _secrets.get(name, bytes(16)) if secret is None else secret
    return SECTION_FRAME.pack(_envelope.MAGIC, 1, codec, 6, flags, request_id, offset, length, release_offset,
                              ring_offset, secret, count) + encoded


def batch_frame(*records: tuple[int, bytes], codec: int = 0, claimed_size: int | None = None) -> bytes:
    """What a descriptor's range holds: a batch frame (a record may claim a size it has not)."""
    body = b"".join(struct.pack("<QI", tag, len(data) if claimed_size is None else claimed_size) + data
                    for tag, data in records)
    return _envelope.HEADER.pack(_envelope.MAGIC, 1, codec, 4, 0, 0) + body


TEN = batch_frame((1, b"\x5a" * 10))  # 38 bytes: one record of ten bytes
UNWRITTEN = b"Z" * 8  # what Section fills a section with


SEC_RESERVE = 0x4000000
INVALID_HANDLE = ctypes.wintypes.HANDLE(-1).value


class Section:
    """A section made by hand, with the security descriptor the test chooses, filled with "Z"
    bytes, ``content`` at ``at``, and a header with a random secret (or none, or the one given).
    ``flags`` go with PAGE_READWRITE (SEC_RESERVE: only the first ``commit`` bytes are committed
    and written); ``file``: backed by that file instead of the page file."""

    def __init__(self, name: str, size: int, sddl: str | None = None, content: bytes = b"", at: int = DATA,
                 secret: bytes | None = None, header: bool = True, flags: int = 0, commit: int | None = None,
                 file: Path | None = None) -> None:
        self.secret = secrets.token_bytes(16) if secret is None else secret
        attributes = None
        if sddl is not None:
            descriptor_pointer = ctypes.c_void_p()
            if not advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    sddl, 1, ctypes.byref(descriptor_pointer), None):
                raise ctypes.WinError(ctypes.get_last_error())

            class SECURITY_ATTRIBUTES(ctypes.Structure):
                _fields_ = [("nLength", ctypes.wintypes.DWORD), ("lpSecurityDescriptor", ctypes.c_void_p),
                            ("bInheritHandle", ctypes.wintypes.BOOL)]

            attributes = SECURITY_ATTRIBUTES(ctypes.sizeof(SECURITY_ATTRIBUTES), descriptor_pointer, False)
        self.file = INVALID_HANDLE
        if file is not None:  # GENERIC_READ | GENERIC_WRITE, shared, OPEN_EXISTING
            self.file = kernel32.CreateFileW(str(file), 0xC0000000, 3, None, 3, 0, None)
            if self.file == INVALID_HANDLE:
                raise ctypes.WinError(ctypes.get_last_error())
        self.handle = kernel32.CreateFileMappingW(ctypes.wintypes.HANDLE(self.file),
                                                  ctypes.byref(attributes) if attributes else None,
                                                  0x04 | flags, 0, size, name)
        if not self.handle:
            raise ctypes.WinError(ctypes.get_last_error())
        view = kernel32.MapViewOfFile(ctypes.wintypes.HANDLE(self.handle), 0x2, 0, 0, size)
        writable = size
        if flags & SEC_RESERVE:
            writable = commit or 0
            if writable and not kernel32.VirtualAlloc(ctypes.c_void_p(view), writable, 0x1000, 0x04):  # MEM_COMMIT
                raise ctypes.WinError(ctypes.get_last_error())
        ctypes.memset(view, 0x5A, writable)
        if header:
            ctypes.memmove(view, SECTION_MAGIC + self.secret, 24)
            _secrets[name] = self.secret
        if content:
            ctypes.memmove(view + at, content, len(content))
        kernel32.UnmapViewOfFile(ctypes.c_void_p(view))

    def close(self) -> None:
        kernel32.CloseHandle(ctypes.wintypes.HANDLE(self.handle))
        if self.file != INVALID_HANDLE:
            kernel32.CloseHandle(ctypes.wintypes.HANDLE(self.file))


@contextlib.contextmanager
def section_view(name: str, access: int = 0x4) -> Iterator[int]:
    """The named section mapped whole, as a third process would see it (access: FILE_MAP_READ,
    or FILE_MAP_WRITE 0x2)."""
    mapping = kernel32.OpenFileMappingW(access, False, name)
    if not mapping:
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        view = kernel32.MapViewOfFile(ctypes.c_void_p(mapping), access, 0, 0, 0)
        if not view:
            raise ctypes.WinError(ctypes.get_last_error())
        try:
            yield view
        finally:
            kernel32.UnmapViewOfFile(ctypes.c_void_p(view))
    finally:
        kernel32.CloseHandle(ctypes.c_void_p(mapping))


def read_section(name: str, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of the named section, as a third process would see them."""
    with section_view(name) as view:
        return ctypes.string_at(view + offset, size)


def failing_once(sender: copydata.Sender) -> list[int]:
    """Makes the sender's next attempt to create a section fail; the calls made, in a list."""
    calls: list[int] = []
    real = sender._transport._open_section

    def open_section(least: int) -> None:
        calls.append(least)
        if len(calls) == 1:
            raise copydata.CopyDataError("no section this time (test)")
        real(least)

    sender._transport._open_section = open_section  # type: ignore[method-assign]
    return calls
