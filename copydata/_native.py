"""The backend: the one module that touches the C core (``ffi`` and ``lib``).

Everything above it (Receiver, Sender, send, request) calls these functions and classes with
Python values and gets Python values or typed exceptions back; a C status and a Windows error
become an exception in one place, :func:`error`. As pyzmq keeps ``zmq.backend`` under
``zmq.sugar``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import struct
import sys
from typing import Any, Callable, Iterator, NamedTuple, Optional

from ._constants import NO_CODEC, REASON_CODES, Reason
from ._core import ffi, lib
from ._errors import (ChannelFull, CopyDataError, NameInUse, ReceiverClosed, SendFailed, SendTimeout,
                      TargetNotFound)

REGISTRY_NAME = lib.CD_REGISTRY_NAME
REGISTRY_CHANNEL = lib.CD_REGISTRY_CHANNEL
CHANNEL_SLOTS = lib.CD_CHANNEL_SLOTS
# Statuses the layers above name when they raise through error() themselves.
TIMEOUT = lib.CD_TIMEOUT
TARGET_GONE = lib.CD_TARGET_GONE

# --- status codes and Windows errors into exceptions --------------------------------------

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


def describe(status: int, winerror: int = 0) -> str:
    """A status of the C core, and the Windows error behind it, in words."""
    text = _STATUS_TEXT.get(status, f"status {status}")
    if winerror:
        text += f" ([WinError {winerror}] {ctypes.FormatError(winerror).strip()})"
    return text


def _untrusted_slot(kind: int, name: str) -> str:
    what = "name" if kind == REGISTRY_NAME else "channel"
    return (f"the {what} {name!r} lives in a shared-memory object not made by this user (or not in committed "
            f"memory): copydata neither believes nor writes what it holds; whoever made it can choose who "
            f"may write there")


def error(status: int, winerror: int, what: str, *, hwnd: int = 0, timeout: Optional[float] = None,
          name: str = "", kind: int = REGISTRY_NAME) -> CopyDataError:
    """The exception for a failed call: ``what`` says what was being done (``"send to"`` a window,
    ``"claim"`` or ``"list"`` a name, or any other words), ``hwnd``, ``timeout`` and ``name``
    what it was done to."""
    if what == "send to":
        if status == lib.CD_TARGET_GONE:
            return TargetNotFound(f"window {hwnd:#x} does not exist (its receiver closed or its process ended)")
        if status == lib.CD_TIMEOUT:
            return SendTimeout(f"window {hwnd:#x} did not answer within {timeout} s (it is busy or hung)")
        return SendFailed(f"sending to window {hwnd:#x} failed: {describe(status, winerror)}", winerror)
    if what == "claim":
        if status == lib.CD_NAME_IN_USE:
            return NameInUse(f"a live receiver already holds the name {name!r}")
        if status == lib.CD_FULL:
            return ChannelFull(f"channel {name!r} already has {lib.CD_CHANNEL_SLOTS} live subscribers")
        if status == lib.CD_INVALID:
            return NameInUse(_untrusted_slot(kind, name))
        return CopyDataError(f"could not register the {'name' if kind == REGISTRY_NAME else 'channel'} {name!r}: "
                             f"{describe(status, winerror)}")
    if what == "list" and status == lib.CD_INVALID:
        return CopyDataError(_untrusted_slot(kind, name))
    if what == "list":
        return CopyDataError(f"could not look up {name!r}: {describe(status, winerror)}")
    return CopyDataError(f"could not {what}: {describe(status, winerror)}")


# --- windows: send, post, find --------------------------------------------------------------

def pointer(data: Any) -> Any:
    """A pointer to a bytes-like object's memory (no copy), for the calls below; len() is its size."""
    return ffi.from_buffer(data)


def buffer(data: Any, size: int) -> Any:
    """The ``size`` bytes at a :func:`pointer` as a buffer (no copy)."""
    return ffi.buffer(data, size)


def offset(data: Any, count: int) -> Any:
    """A :func:`pointer` moved ``count`` bytes on."""
    return ffi.cast("char *", data) + count


def send(target: int, tag: int, sender: int, data: Any, size: int, timeout_ms: int, flags: int,
         timeout: Optional[float]) -> int:
    """One SendMessageTimeoutW(WM_COPYDATA) from ``data`` (bytes-like or :func:`pointer`), its
    answer; TargetNotFound, SendTimeout (after ``timeout`` seconds) or SendFailed."""
    result = ffi.new("intptr_t *")
    winerror = ffi.new("uint32_t *")
    if not isinstance(data, ffi.CData):
        data = ffi.from_buffer(data)
    status = lib.cd_send(target, tag, sender, data, size, timeout_ms, flags, result, winerror)
    if status != lib.CD_OK:
        raise error(status, winerror[0], "send to", hwnd=target, timeout=timeout)
    return int(result[0])


FLOOR_STAMP_SIZE = lib.CD_FLOOR_STAMP_SIZE


def floor_send(target: int, payload: bytearray, first: int, count: int, timeout_ms: int,
               timeout: Optional[float]) -> int:
    """``count`` WM_COPYDATA messages of ``payload``, sent by a loop in C, one
    SendMessageTimeoutW each, its first FLOOR_STAMP_SIZE bytes stamped with the numbers
    ``first`` on (as a plain C program sends them: the demo's floor): how many the receiver
    accepted, short of ``count`` if it refused one; TargetNotFound, SendTimeout or SendFailed."""
    sent = ffi.new("size_t *")
    winerror = ffi.new("uint32_t *")
    status = lib.cd_floor_send(target, ffi.from_buffer(payload), len(payload), first, count, timeout_ms, sent,
                               winerror)
    if status == lib.CD_INVALID:
        raise ValueError(f"the floor sends {FLOOR_STAMP_SIZE} bytes to 4 GiB - 1 a message, not {len(payload)}")
    if status != lib.CD_OK:
        raise error(status, winerror[0], "send to", hwnd=target, timeout=timeout)
    return int(sent[0])


def floor_memcpy(target: bytearray, source: bytearray, count: int) -> bool:
    """memcpy of ``source`` into ``target`` (as large) ``count`` times in C, ``source`` stamped
    with the copy's number before each: whether the last copy arrived whole."""
    if len(target) != len(source):
        raise ValueError(f"a copy of {len(source)} bytes into {len(target)}")
    return bool(lib.cd_floor_memcpy(ffi.from_buffer(target), ffi.from_buffer(source), len(source), count))


def ring_message() -> int:
    """The window message a Sender posts to announce a frame in its ring block (0: none)."""
    return int(lib.cd_ring_message())


def post_ring(target: int, message: int, ring_id: int, lease: int) -> bool:
    """Posts the ring announcement; False when the post failed (a full message queue, say),
    TargetNotFound when the window is gone."""
    winerror = ffi.new("uint32_t *")
    status = lib.cd_post_ring(target, message, ring_id, lease, winerror)
    if status == lib.CD_TARGET_GONE:
        raise error(status, winerror[0], "send to", hwnd=target)
    return status == lib.CD_OK


def window_tag_bits(hwnd: int) -> int:
    """How many bits of a tag (dwData) the window's process receives: 32 for a 32-bit program
    (or when this process is one), 64 otherwise, and this process's own width when the target's
    cannot be inspected; TargetNotFound when the window is gone."""
    bits = ffi.new("uint32_t *")
    winerror = ffi.new("uint32_t *")
    status = lib.cd_window_tag_bits(hwnd, bits, winerror)
    if status == lib.CD_TARGET_GONE:
        raise error(status, winerror[0], "send to", hwnd=hwnd)
    return int(bits[0])


def window_exists(hwnd: int) -> bool:
    return bool(lib.cd_window_exists(hwnd))


def find_window(class_name: Optional[str], title: Optional[str]) -> Optional[int]:
    hwnd = ffi.new("uint64_t *")
    status = lib.cd_find_window(ffi.NULL if class_name is None else class_name, ffi.NULL if title is None else title,
                                hwnd)
    return int(hwnd[0]) if status == lib.CD_OK else None


def now_ms() -> int:
    """GetTickCount64(): the clock every process of the machine shares, which seals carry."""
    return int(lib.cd_now_ms())


# --- names and channels ---------------------------------------------------------------------

class Registration:
    """A window published under a name, or in a channel, until :meth:`withdraw`."""

    def __init__(self, kind: int, name: str, hwnd: int) -> None:
        registration = ffi.new("cd_registration **")
        winerror = ffi.new("uint32_t *")
        status = lib.cd_registry_claim(kind, name, hwnd, registration, winerror)
        if status != lib.CD_OK:
            raise error(status, winerror[0], "claim", name=name, kind=kind)
        self._registration = registration[0]

    def withdraw(self) -> None:
        if self._registration is not None:
            lib.cd_registry_withdraw(self._registration)
            self._registration = None


def registry_list(kind: int, name: str, capacity: int) -> list[int]:
    """The live windows under a name or in a channel (at most ``capacity``)."""
    hwnds = ffi.new("uint64_t[]", capacity)
    found = ffi.new("uint32_t *")
    winerror = ffi.new("uint32_t *")
    status = lib.cd_registry_list(kind, name, hwnds, capacity, found, winerror)
    if status != lib.CD_OK:
        raise error(status, winerror[0], "list", name=name, kind=kind)
    return [int(hwnds[index]) for index in range(min(found[0], capacity))]


# --- receivers ------------------------------------------------------------------------------

class ReceiverConfig(NamedTuple):
    """cd_receiver_config, in Python."""

    max_message_size: int
    max_queue_messages: int
    max_queue_bytes: int
    sync: bool
    allow_lower_integrity: bool
    unpack_batches: bool
    max_transfer_size: int
    part_timeout_ms: int
    key: Optional[bytes]
    report_refusals: bool
    pass_sealed: bool


#: One message taken from a receiver: (tag, payload, sender, codec id); the payload is bytes,
#: or with copy=False a read-only memoryview of the receiver's own buffer.
Taken = tuple[int, Any, int, int]

# A row of the table cd_messages_pack puts before the payloads it packs.
_PACKED_ROW = struct.Struct("<QQQQiI")
assert _PACKED_ROW.size == ffi.sizeof("cd_packed_row")
_REFUSALS_PER_TAKE = 256
# The id a batch frame's record carries for the bytes codec (copydata._codecs.BytesCodec).
BYTES_CODEC_ID = 0
# Above this many objects made at once, the cyclic garbage collector is paused while they are
# made: none of them is garbage yet, and each collection it started walked all of them again
# (with copy=False, recv_many took twice as long). Only while they are made: the pause is the
# whole process's, so never while anyone waits or user code runs.
_GC_PAUSE_FROM = 1000


@contextlib.contextmanager
def _gc_paused(objects: int) -> Iterator[None]:
    if objects < _GC_PAUSE_FROM or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# A NamedTuple built as the tuple it is, without its own __new__ (a Python function call).
_new_tuple = tuple.__new__
_REASON_CODE = {reason: code for code, reason in REASON_CODES.items()}


class NativeReceiver:
    """A receiver window of the C core: its queue, its counts and its refusals."""

    def __init__(self, config: ReceiverConfig) -> None:
        key_buffer = ffi.from_buffer(config.key) if config.key is not None else ffi.NULL
        native_config = ffi.new("cd_receiver_config *", {
            "max_message_size": config.max_message_size,
            "max_queue_messages": config.max_queue_messages,
            "max_queue_bytes": config.max_queue_bytes,
            "sync": int(config.sync),
            "allow_lower_integrity": int(config.allow_lower_integrity),
            "unpack_batches": int(config.unpack_batches),
            "max_transfer_size": config.max_transfer_size,
            "part_timeout_ms": config.part_timeout_ms,
            "key": key_buffer,
            "key_size": len(config.key) if config.key is not None else 0,
            "report_refusals": int(config.report_refusals),
            "pass_sealed": int(config.pass_sealed),
        })
        handle = ffi.new("cd_receiver **")
        winerror = ffi.new("uint32_t *")
        status = lib.cd_receiver_open(native_config, handle, winerror)
        if status != lib.CD_OK:
            raise error(status, winerror[0], "create the receiver window")
        self._handle = ffi.gc(handle[0], lib.cd_receiver_free)
        self.hwnd = int(lib.cd_receiver_hwnd(self._handle))
        self._first = ffi.new("cd_message **")
        self._leased = ffi.new("size_t *")

    def stats(self) -> dict[str, int]:
        """cd_stats, by field name."""
        stats = ffi.new("cd_stats *")
        lib.cd_receiver_stats(self._handle, stats)
        return {field: getattr(stats, field) for field, _ in ffi.typeof("cd_stats").fields}

    def report(self, reason: Reason, tag: int, sender: int, size: int) -> None:
        """Tells on_error of a refusal Python made (pickle, undecodable), in order with those
        made in C."""
        lib.cd_receiver_report(self._handle, _REASON_CODE[reason], tag, sender, size)

    def refusals(self) -> Iterator[list[tuple[Reason, int, int, int, int]]]:
        """Refusals as they come, in batches of (reason, tag, sender, size, occurrences), until
        the receiver is discarded."""
        refusals = ffi.new("cd_refusal[]", _REFUSALS_PER_TAKE)
        count = ffi.new("size_t *")
        while lib.cd_receiver_take_refusals(self._handle, refusals, _REFUSALS_PER_TAKE, lib.CD_WAIT_FOREVER,
                                            count) == lib.CD_OK:
            yield [(REASON_CODES[native.reason], native.tag, native.sender, native.size, native.count)
                   for native in (refusals[index] for index in range(count[0]))]

    def _took(self, max_count: int, wait_ms: int) -> bool:
        """Takes up to ``max_count`` queued messages into ``_first`` (and ``_leased``), waiting up
        to ``wait_ms`` for the first one: False when none came, ReceiverClosed once closed and
        drained."""
        status = lib.cd_receiver_take(self._handle, max_count, wait_ms, self._first, self._leased)
        if status == lib.CD_TIMEOUT:
            return False
        if status == lib.CD_CLOSED:
            raise ReceiverClosed(f"receiver {self.hwnd:#x} is closed")
        return True

    def take(self, max_count: int, wait_ms: int, copy: bool, bytes_as: type) -> Optional[list[Any]]:
        """Up to ``max_count`` queued messages (queue mode), waiting up to ``wait_ms`` for the
        first one: None when none came, ReceiverClosed once closed and drained. Each record of
        a batch frame in the bytes codec is built at once as ``bytes_as`` (a NamedTuple of tag,
        data, sender, codec name, request id): ``bytes_as(tag, payload, sender, "bytes", None)``,
        one tuple made per message, not two; every other message is a Taken."""
        if not self._took(max_count, wait_ms):
            return None
        with _gc_paused(max_count):
            return _unpack(self._first[0], copy, self._leased[0], bytes_as)

    def take_columns(self, max_count: int, wait_ms: int, copy: bool) -> Optional[tuple[Any, int]]:
        """Up to ``max_count`` queued messages as one block (see MessageBatch: their columns, then
        their payloads back to back, every payload copied in, leased ones released at once) and
        their number; None when none came within ``wait_ms``, ReceiverClosed once closed and
        drained. The block is bytes with ``copy``, else a read-only view that frees it when gone."""
        if not self._took(max_count, wait_ms):
            return None
        block, block_size, count = ffi.new("char **"), ffi.new("size_t *"), ffi.new("size_t *")
        if lib.cd_messages_pack_columns(self._first[0], block, block_size, count) != lib.CD_OK:
            lib.cd_messages_free(self._first[0])
            raise MemoryError("could not gather the messages taken into one block; they are lost")
        if copy:
            whole = ffi.unpack(block[0], block_size[0])
            lib.cd_block_free(block[0])
            return whole, int(count[0])
        owner = ffi.gc(block[0], lib.cd_block_free, block_size[0])
        return memoryview(ffi.buffer(owner, block_size[0])).toreadonly(), int(count[0])

    def take_sync(self) -> SyncMessage:
        """The next message of a sync-mode receiver, waiting without a limit; ReceiverClosed once
        closed."""
        if lib.cd_receiver_take(self._handle, 1, lib.CD_WAIT_FOREVER, self._first, self._leased) == lib.CD_CLOSED:
            raise ReceiverClosed(f"receiver {self.hwnd:#x} is closed")
        return SyncMessage(self._handle, self._first[0])

    def close(self) -> None:
        """Destroys the window and ends its thread; queued messages stay takeable."""
        lib.cd_receiver_close(self._handle)

    def discard(self) -> None:
        """Drops (and counts) what is still queued; ends the refusals too."""
        lib.cd_receiver_discard(self._handle)


def _free_message(message: Any, data: Any) -> None:
    """Frees a message with a lease once its buffer (``data``) is gone."""
    lib.cd_message_free(message)


def _unpack(first: Any, copy: bool, leased: int, bytes_as: type) -> list[Any]:
    """The messages of a list taken from C, and frees the list (without copy, each payload's
    owner frees what it needs once it goes). C packs small messages into blocks: a table read
    in one call, and their payloads as slices of the block (copied into ``bytes`` with copy),
    with no C object of their own. The others come one by one, as :func:`_unpack_one_by_one`
    hands them over."""
    if first.next == ffi.NULL:  # one message (one send per call): a block would only cost
        return _unpack_one_by_one(first, copy, leased)
    payloads: list[Any] = []
    block, block_size, count = ffi.new("char **"), ffi.new("size_t *"), ffi.new("size_t *")
    rest, after = ffi.new("cd_message **"), ffi.new("cd_message **")
    while first != ffi.NULL:
        if lib.cd_messages_pack(first, block, block_size, count, rest, after) != lib.CD_OK:
            payloads += _unpack_one_by_one(first, copy, leased)
            break
        whole: Any
        if copy:
            whole = ffi.unpack(block[0], block_size[0])
            lib.cd_block_free(block[0])
        else:
            owner = ffi.gc(block[0], lib.cd_block_free, block_size[0])
            whole = memoryview(ffi.buffer(owner, block_size[0])).toreadonly()
        others = iter(_unpack_one_by_one(rest[0], copy, leased))
        payloads += [_new_tuple(bytes_as, (tag, whole[offset:offset + size], sender, "bytes", None))
                     if codec_id == BYTES_CODEC_ID and packed
                     else (tag, whole[offset:offset + size], sender, codec_id) if packed else next(others)
                     for tag, sender, offset, size, codec_id, packed
                     in _PACKED_ROW.iter_unpack(whole[:count[0] * _PACKED_ROW.size])]
        first = after[0]
    return payloads


def _unpack_one_by_one(first: Any, copy: bool, leased: int) -> list[Taken]:
    """:func:`_unpack` for messages each in a buffer of its own: frees the list, or, without
    copy, hands each message's buffer to its payload, which frees it. ``leased`` of them lie in
    a sender's section: their buffers are not behind the message, and freeing them releases
    the lease."""
    payloads = []
    message = first
    if copy:
        while message != ffi.NULL:
            payloads.append((message.tag, ffi.unpack(message.data, message.size), message.sender,
                             message.codec_id))
            message = message.next
        lib.cd_messages_free(first)
        return payloads
    while message != ffi.NULL:
        following, size = message.next, message.size
        release = (functools.partial(_free_message, message) if leased and message.lease != ffi.NULL
                   else lib.cd_message_release)
        owner = ffi.gc(ffi.cast("char *", message.data), release, size)
        payloads.append((message.tag, memoryview(ffi.buffer(owner, size)).toreadonly(), message.sender,
                         message.codec_id))
        message = following
    return payloads


class SyncMessage:
    """A message a sync-mode receiver's window procedure waits on until :meth:`answer`."""

    def __init__(self, handle: Any, native: Any) -> None:
        self._handle = handle
        self._native = native
        self.tag = int(native.tag)
        self.sender = int(native.sender)
        self.codec_id = int(native.codec_id)
        #: It lies in a Sender's section, and can be lent where it is (:meth:`lend`).
        self.in_section = native.section != ffi.NULL

    def copy(self) -> bytes:
        return ffi.unpack(self._native.data, self._native.size)

    def lend(self, use: Callable[[memoryview], int]) -> int:
        """``use(view)``'s result, ``view`` a read-only view of the bytes where they lie in the
        sender's section. The view is released when ``use`` returns; should a slice of it (or
        another export) outlive that, the section stays mapped as long, and the receiver tells
        the sender not to write there again."""
        kept: list[Any] = []
        native = self._native

        def unmap_if_kept(_: Any) -> None:
            if kept:
                lib.cd_kept_section_release(kept[0])

        owner = ffi.gc(ffi.cast("char *", native.data), unmap_if_kept)
        buffer = ffi.buffer(owner, native.size)
        del owner  # the buffer holds it: it goes with the last view of the buffer
        whole = memoryview(buffer)
        readonly = whole.toreadonly()
        try:
            return use(readonly)
        finally:
            escaped = False
            for view in (readonly, whole):
                try:
                    view.release()
                except BufferError:  # something still exports it (numpy, say)
                    escaped = True
            # Only this frame and getrefcount's argument hold the buffer, unless a slice of
            # the view outlives the callback: the section must then stay mapped as long.
            if escaped or sys.getrefcount(buffer) > 2:
                kept.append(lib.cd_receiver_keep_section(self._handle, native))

    def answer(self, result: int) -> None:
        """Releases the window procedure with ``result`` as the sender's answer; the message is
        gone after this."""
        lib.cd_receiver_reply(self._handle, self._native, result)


# --- a Sender's frames and sections --------------------------------------------------------

FULL = object()  # what Batch.add returns when the frame has no room for the message


class Batch:
    """A batch frame built one record at a time (cd_batch), in private memory or in memory lent
    to it (a section's half)."""

    RECORD_HEADER = lib.CD_BATCH_RECORD_HEADER_SIZE
    OVERHEAD = lib.CD_ENVELOPE_HEADER_SIZE + lib.CD_BATCH_RECORD_HEADER_SIZE  # a frame of one empty message

    def __init__(self, codec_id: int) -> None:
        self._batch = ffi.gc(ffi.new("cd_batch *"), lib.cd_batch_release)
        self._codec_id = codec_id
        self.start()

    @property
    def records(self) -> int:
        return int(self._batch.records)

    @property
    def size(self) -> int:
        return int(self._batch.size)

    @property
    def capacity(self) -> int:
        return int(self._batch.capacity)

    @property
    def borrowed(self) -> bool:
        """The frame lies in memory lent to it (a section), which it cannot grow."""
        return bool(self._batch.borrowed)

    @property
    def data(self) -> Any:
        """A pointer to the frame, for :func:`send` and :meth:`write`."""
        return self._batch.data

    def start(self) -> None:
        """Empties the frame and writes its envelope header."""
        if lib.cd_batch_start(self._batch, self._codec_id) != lib.CD_OK:
            raise MemoryError("could not start a batch frame")

    def add(self, tag: int, data: Any, max_bytes: int) -> bool:
        """Appends a record (``data`` from :func:`pointer`); False when the frame has no room for
        it (past ``max_bytes``, or its lent memory), and nothing was added."""
        status = lib.cd_batch_add(self._batch, tag, data, len(data), max_bytes)
        if status == lib.CD_FULL:
            return False
        if status != lib.CD_OK:
            raise MemoryError(f"could not add {len(data)} bytes to the batch frame")
        return True

    def add_within(self, tag: int, data: bytes, limit_lent: int, limit_own: int) -> bool:
        """Appends a record of ``data`` (bytes, read where it lies) only if the frame stays within
        ``limit_lent`` bytes in lent memory, ``limit_own`` in its own, and its records within
        their bound: False (nothing added) otherwise, for the caller's full path to decide."""
        return lib.cd_batch_add_within(self._batch, tag, data, len(data), limit_lent, limit_own) == lib.CD_OK

    def add_many(self, tags: Any, tag: int, data: bytes, sizes: Any, start: int, count: int, largest: int,
                 offset: int, limit_lent: int, limit_own: int) -> tuple[int, int]:
        """Appends records ``start``, ``start + 1``, ... of ``count``, their bytes back to back in
        ``data`` from ``offset``, ``sizes`` and ``tags`` (arrays of 'Q'; ``tags`` None: ``tag``
        for all), while each is at most ``largest`` bytes and fits as in :meth:`add_within`: how
        many were added, and the offset of the first one not added."""
        added = ffi.new("size_t *")
        position = ffi.new("size_t *", offset)
        status = lib.cd_batch_add_many(self._batch, ffi.NULL if tags is None else ffi.from_buffer("uint64_t[]", tags),
                                       tag, data, len(data), ffi.from_buffer("uint64_t[]", sizes), start, count,
                                       largest, position, limit_lent, limit_own, added)
        if status != lib.CD_OK:
            raise MemoryError(f"could not add {count - start} messages to the batch frame")
        return int(added[0]), int(position[0])

    def move(self, memory: Any, capacity: int) -> bool:
        """Moves the frame so far into ``memory`` (a section's half), where it goes on growing up
        to ``capacity``; False if it does not fit there."""
        return lib.cd_batch_move(self._batch, memory, capacity) == lib.CD_OK

    def write(self, offset: int, data: Any, size: int) -> None:
        """Writes ``size`` bytes of ``data`` (a pointer) at ``offset`` of the frame's memory: a
        part's header and bytes, over the empty frame, in the section's half."""
        ffi.memmove(ffi.cast("char *", self._batch.data) + offset, data, size)

    def abandon(self) -> None:
        """Forgets the frame without touching its memory, which the receiver may read still (an
        announced frame): the next move() copies nothing, and start() writes the next frame's
        header where the frame is moved to, never over this one."""
        self._batch.size = 0
        self._batch.records = 0

    def release(self) -> None:
        """Frees the frame's own memory (none, if borrowed) and starts afresh in private memory."""
        lib.cd_batch_release(self._batch)
        self.start()


class Section:
    """A shared-memory section of this process's (cd_section): a header the receiver checks
    (its secret proves a descriptor's right to it), a release word per half, a ring block."""

    def __init__(self, name: str, capacity: int) -> None:
        section = ffi.new("cd_section **")
        winerror = ffi.new("uint32_t *")
        status = lib.cd_section_create(name, capacity, section, winerror)
        if status != lib.CD_OK:
            raise error(status, winerror[0], f"create a shared-memory section of {capacity} bytes")
        self._section = section[0]
        self._view = ffi.cast("char *", lib.cd_section_view(self._section))
        header = ffi.cast("cd_section_header *", self._view)
        self.name = name
        self.secret = bytes(ffi.buffer(header.secret))
        #: The receiver's release word of each half, read afresh at every index.
        self.release_words = header.release_words
        #: The ring block (cd_ring_block): fields by name, read and written in place.
        self.ring = ffi.addressof(header.ring)

    def at(self, offset: int) -> Any:
        """A pointer into the section, for :meth:`Batch.move`."""
        return self._view + offset

    def close(self) -> None:
        if self._section is not None:
            lib.cd_section_close(self._section)
            self._section = None


#: Where a Sender's section keeps the receiver's release words and its ring block.
RELEASE_WORDS_OFFSET = ffi.offsetof("cd_section_header", "release_words")
RING_BLOCK_OFFSET = ffi.offsetof("cd_section_header", "ring")
