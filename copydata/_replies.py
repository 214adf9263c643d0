"""A receiver's replies to requests, sent on threads of their own.

Anyone can send a request and name any window as the one to reply to, a hung one included: if
replies went out on the delivery thread, a few forged requests would hold every message behind
them for the whole reply timeout each. Here they wait on at most a few threads, their backlog is
bounded, and what does not fit is dropped (and said, at most once a second).
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Callable

REPLY_THREADS = 4
MAX_PENDING_REPLIES = 256


class Replier:
    """Sends reply payloads with ``send_reply(target, tag, payload)`` on up to REPLY_THREADS
    threads; ``warn`` hears what could not be sent."""

    def __init__(self, send_reply: Callable[[int, int, bytes], object], warn: Callable[[str], None],
                 name: str) -> None:
        self._send_reply = send_reply
        self._warn = warn
        self._name = name
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending = 0
        self._closed = False

    def submit(self, target: int, tag: int, payload: bytes, what: str) -> None:
        """Queues a reply and returns at once; ``what`` names it in a warning."""
        with self._lock:
            if self._closed:
                return
            if self._pending >= MAX_PENDING_REPLIES:
                dropped = True
            else:
                dropped = False
                self._pending += 1
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(REPLY_THREADS, thread_name_prefix=self._name)
                self._pool.submit(self._deliver, target, tag, payload, what)
        if dropped:
            self._warn(f"dropped its reply to {what}: {MAX_PENDING_REPLIES} replies wait already "
                       f"(their requesters are slow to take them)")

    def _deliver(self, target: int, tag: int, payload: bytes, what: str) -> None:
        try:
            self._send_reply(target, tag, payload)
        except Exception as error:
            self._warn(f"could not reply to {what}: {error}")
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        """Drops the replies that have not started; waits for those being sent (each ends within
        the reply timeout). Closing twice is harmless."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
