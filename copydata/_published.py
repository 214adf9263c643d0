"""Window handles published the C# article's way: in a named memory-mapped file.

The article's sink shares its window handle with the sending program through a
MemoryMappedFile; a C# program that does so writes

    var file = MemoryMappedFile.CreateOrOpen("MyApp.Sink", 8);   // kept open while the sink lives
    using (var view = file.CreateViewAccessor()) view.Write(0, sink.Handle.ToInt64());

and one that sends to such a sink reads

    using (var file = MemoryMappedFile.OpenExisting("MyApp.Sink"))
    using (var view = file.CreateViewAccessor()) hwnd = new IntPtr(view.ReadInt64(0));

``find_published`` is the reading side and ``publish_handle`` the writing side, for a
``Receiver`` (or any window). The mapping is a section backed by the paging file under that
exact name, as .NET names it (no prefix means the session's namespace, as ``Local\\`` does).
Nothing about such a name is private: any program of the session can open it and write another
handle there, which is why ``find_published`` returns only live windows, and why a receiver that
must know who sends to it needs a key (the manual's "Security" page).
"""

from __future__ import annotations

import ctypes
import ctypes.wintypes
from typing import Any, Optional, Union

from . import _checks
from ._errors import NameInUse, TargetNotFound
from ._receiver import Receiver

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_user32 = ctypes.WinDLL("user32", use_last_error=True)
_ntdll = ctypes.WinDLL("ntdll")

_HANDLE = ctypes.wintypes.HANDLE
_INVALID_HANDLE_VALUE = _HANDLE(-1)
_PAGE_READWRITE = 0x04
_FILE_MAP_READ = 0x0004
_FILE_MAP_WRITE = 0x0002
_SECTION_QUERY = 0x0001
_SECTION_BASIC_INFORMATION = 0


class _SectionBasicInformation(ctypes.Structure):
    _fields_ = [("BaseAddress", ctypes.c_void_p), ("Attributes", ctypes.c_ulong), ("Size", ctypes.c_longlong)]


_kernel32.OpenFileMappingW.argtypes = [ctypes.wintypes.DWORD, ctypes.wintypes.BOOL, ctypes.wintypes.LPCWSTR]
_kernel32.OpenFileMappingW.restype = _HANDLE
_kernel32.CreateFileMappingW.argtypes = [_HANDLE, ctypes.c_void_p, ctypes.wintypes.DWORD, ctypes.wintypes.DWORD,
                                         ctypes.wintypes.DWORD, ctypes.wintypes.LPCWSTR]
_kernel32.CreateFileMappingW.restype = _HANDLE
_kernel32.MapViewOfFile.argtypes = [_HANDLE, ctypes.wintypes.DWORD, ctypes.wintypes.DWORD, ctypes.wintypes.DWORD,
                                    ctypes.c_size_t]
_kernel32.MapViewOfFile.restype = ctypes.c_void_p
_kernel32.UnmapViewOfFile.argtypes = [ctypes.c_void_p]
_kernel32.CloseHandle.argtypes = [_HANDLE]
_user32.IsWindow.argtypes = [ctypes.wintypes.HWND]
_ntdll.NtQuerySection.argtypes = [_HANDLE, ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p]
_ntdll.NtQuerySection.restype = ctypes.c_long

_WIDTHS = {4: ctypes.c_uint32, 8: ctypes.c_uint64}


def _check_place(mapping_name: str, offset: int, size: int) -> None:
    if not isinstance(mapping_name, str) or not mapping_name or "\0" in mapping_name:
        raise ValueError(f"mapping_name must be a non-empty str without NUL, not {mapping_name!r}")
    if size not in _WIDTHS or isinstance(size, bool):
        raise ValueError(f"size must be 4 or 8 (bytes of the handle, little-endian), not {size!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= 1 << 20:
        raise ValueError(f"offset must be an int in 0..1048576, not {offset!r}")


def _is_window(hwnd: int) -> bool:
    return hwnd != 0 and bool(_user32.IsWindow(hwnd))


def _section_size(mapping: Any) -> Optional[int]:
    """The size the mapping was created with. Windows refuses a view larger than that, but Wine
    maps whole pages, so a short section is recognised by its size."""
    info = _SectionBasicInformation()
    if _ntdll.NtQuerySection(mapping, _SECTION_BASIC_INFORMATION, ctypes.byref(info), ctypes.sizeof(info), None):
        return None
    return int(info.Size)


def _read(view: int, offset: int, size: int) -> int:
    return int(_WIDTHS[size].from_address(view + offset).value)


def find_published(mapping_name: str, *, offset: int = 0, size: int = 8) -> Optional[int]:
    """The window handle another program published in the memory-mapped file ``mapping_name``.

    This is how a C# program that follows the article shares its sink's handle; the window it
    names may belong to any program that can write the mapping, so what it receives proves
    nothing about who it is (the manual's ".NET programs" page).

    Parameters
    ----------
    mapping_name
        The mapping's name, as .NET names it (no prefix: the session's namespace).
    offset
        Where the handle lies in the mapping, in bytes.
    size
        The handle's width: 8 or 4 bytes, little-endian.

    Returns
    -------
    int | None
        The handle, or None: when no such mapping exists, it is smaller than ``offset + size``,
        it holds 0, or the handle is not a live window.

    Raises
    ------
    ValueError
        An empty name, ``size`` not 4 or 8, or ``offset`` outside 0 to 1 MiB.
    """
    _check_place(mapping_name, offset, size)
    mapping = _kernel32.OpenFileMappingW(_FILE_MAP_READ | _SECTION_QUERY, False, mapping_name)
    if not mapping:  # a mapping whose access list grants reading alone is read without its size
        mapping = _kernel32.OpenFileMappingW(_FILE_MAP_READ, False, mapping_name)
    if not mapping:
        return None
    try:
        if (_section_size(mapping) or offset + size) < offset + size:
            return None
        view = _kernel32.MapViewOfFile(mapping, _FILE_MAP_READ, 0, 0, offset + size)
        if not view:  # the section is smaller than offset + size
            return None
        try:
            hwnd = _read(view, offset, size)
        finally:
            _kernel32.UnmapViewOfFile(view)
    finally:
        _kernel32.CloseHandle(mapping)
    return hwnd if _is_window(hwnd) else None


class HandlePublication:
    """A window handle written into a named memory-mapped file, for as long as this is open.

    Made by [`publish_handle`][copydata.publish_handle], not by hand. ``close()`` (or leaving the ``with`` block) writes 0 over the
    handle if the mapping still holds it, and closes the mapping (it ends when no program has it
    open any more). Closing twice is harmless.
    """

    def __init__(self, mapping_name: str, hwnd: int, offset: int, size: int, mapping: Any, view: int) -> None:
        self.mapping_name, self.hwnd, self.offset, self.size = mapping_name, hwnd, offset, size
        self._mapping = mapping
        self._view: Optional[int] = view

    @property
    def closed(self) -> bool:
        return self._view is None

    def close(self) -> None:
        """Withdraw the handle (0, unless another has been written since) and close the mapping."""
        if self._view is None:
            return
        view, self._view = self._view, None
        cell = _WIDTHS[self.size].from_address(view + self.offset)
        if cell.value == self.hwnd:
            cell.value = 0
        _kernel32.UnmapViewOfFile(view)
        _kernel32.CloseHandle(self._mapping)

    def __enter__(self) -> "HandlePublication":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<HandlePublication {self.mapping_name!r} hwnd={self.hwnd:#x} {state}>"


def publish_handle(mapping_name: str, target: Union[Receiver, int], *, offset: int = 0,
                   size: int = 8) -> HandlePublication:
    """Publish ``target``'s window handle the C# article's way: in the memory-mapped file
    ``mapping_name``, created if it does not exist (as .NET's
    ``MemoryMappedFile.CreateOrOpen(name, 8)`` does).

    Parameters
    ----------
    mapping_name
        The mapping's name, as .NET names it (no prefix: the session's namespace).
    target
        A [`Receiver`][copydata.Receiver] or any window's handle.
    offset
        Where to write the handle in the mapping, in bytes.
    size
        The handle's width: 8 or 4 bytes, little-endian.

    Returns
    -------
    HandlePublication
        Closing it (or leaving its ``with`` block) withdraws the handle.

    Raises
    ------
    NameInUse
        The mapping already holds another live window's handle.
    TargetNotFound
        ``target`` is a closed receiver or not a live window.
    ValueError
        An existing mapping is smaller than ``offset + size``, or the handle does not fit in
        ``size`` bytes.
    OSError
        Windows refuses the mapping (a name taken by another kind of object).
    """
    _check_place(mapping_name, offset, size)
    if isinstance(target, Receiver):
        if target.closed:
            raise TargetNotFound(f"{target!r} is closed")
        hwnd = target.hwnd
    else:
        hwnd = _checks.window_handle(target, "target")
    if not _is_window(hwnd):
        raise TargetNotFound(f"{hwnd:#x} is not a live window")
    if hwnd >= 1 << (8 * size):
        raise ValueError(f"window handle {hwnd:#x} does not fit in {size} bytes")
    mapping = _kernel32.CreateFileMappingW(_INVALID_HANDLE_VALUE, None, _PAGE_READWRITE, 0, offset + size,
                                           mapping_name)
    if not mapping:
        raise ctypes.WinError(ctypes.get_last_error(), f"cannot create or open the mapping {mapping_name!r}")
    existing = _section_size(mapping)
    if existing is not None and existing < offset + size:
        _kernel32.CloseHandle(mapping)
        raise ValueError(f"the mapping {mapping_name!r} has {existing} bytes, "
                         f"fewer than offset + size ({offset + size})")
    view = _kernel32.MapViewOfFile(mapping, _FILE_MAP_READ | _FILE_MAP_WRITE, 0, 0, offset + size)
    if not view:
        error = ctypes.get_last_error()
        _kernel32.CloseHandle(mapping)
        raise ctypes.WinError(error, f"cannot map {offset + size} bytes of {mapping_name!r} (is it smaller?)")
    current = _read(view, offset, size)
    if current not in (0, hwnd) and _is_window(current):
        _kernel32.UnmapViewOfFile(view)
        _kernel32.CloseHandle(mapping)
        raise NameInUse(f"the mapping {mapping_name!r} already holds live window {current:#x}")
    _WIDTHS[size].from_address(view + offset).value = hwnd
    return HandlePublication(mapping_name, hwnd, offset, size, mapping, view)
