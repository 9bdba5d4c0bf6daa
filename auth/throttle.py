"""Cooldowns after repeated failed sign-ins, per user name and per client.

A key (``user:alice``, ``client:203.0.113.9``) gets ``max_free`` failures for free; the failure
that uses up the last one starts a cooldown of ``base`` seconds, and each further failure (only
possible once a cooldown has passed) doubles it, up to ``ceiling``. During a cooldown an
attempt under that key is refused without looking at the password. Nobody is locked out for
good: a cooldown never exceeds ``ceiling``, a success clears the user-name key, and a key with
no failure for ``forget_after`` seconds starts afresh.

>>> now = [0.0]
>>> throttle = Throttle(max_free=2, base=30.0, ceiling=60.0, clock=lambda: now[0])
>>> keys = ("user:alice", "client:203.0.113.9")
>>> throttle.failed(keys); throttle.wait(keys)
0.0
>>> throttle.failed(keys); throttle.wait(keys)
30.0
>>> now[0] = 30.0; throttle.failed(keys); throttle.wait(keys)
60.0
>>> now[0] = 90.0; throttle.failed(keys); throttle.wait(keys)
60.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    until: float = 0.0  # end of the cooldown
    last: float = 0.0  # time of the last failure


class Throttle:
    def __init__(
        self,
        max_free: int = 5,
        base: float = 30.0,
        ceiling: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        forget_after: float = 3600.0,
    ):
        self.max_free = max_free
        self.base = base
        self.ceiling = ceiling
        self.clock = clock
        self.forget_after = forget_after
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and now >= record.until and now - record.last >= self.forget_after:
            del self._records[key]
            return None
        return record

    def wait(self, keys: Iterable[str]) -> float:
        """Seconds until an attempt under all of ``keys`` is allowed; 0.0 if it is now."""
        with self._lock:
            now = self.clock()
            waits = [record.until - now for key in keys if (record := self._live(key, now))]
            return max([0.0, *waits])

    def failed(self, keys: Iterable[str]) -> None:
        """Counts a failed attempt under each of ``keys``."""
        with self._lock:
            now = self.clock()
            for key in keys:
                record = self._live(key, now) or self._records.setdefault(key, _Record())
                record.failures += 1
                record.last = now
                extra = record.failures - self.max_free
                if extra >= 0:
                    record.until = now + min(self.base * 2.0 ** min(extra, 64), self.ceiling)
            if len(self._records) > 10_000:  # many clients or names: drop the forgotten ones
                for key in list(self._records):
                    self._live(key, now)

    def succeeded(self, keys: Iterable[str]) -> None:
        """Clears ``keys`` (the caller passes the user-name key, not the client's)."""
        with self._lock:
            for key in keys:
                self._records.pop(key, None)


def client_key(forwarded_for: Iterable[str] = (), address: str | None = None) -> str:
    """Who is signing in: the rightmost ``X-Forwarded-For`` entry (the one our proxy added) over
    all such headers, else the connection's address, else ``unknown``."""
    headers = [header for header in forwarded_for if isinstance(header, str)]
    hops = [hop.strip() for header in headers for hop in header.split(",") if hop.strip()]
    if hops:
        return hops[-1]
    return address if isinstance(address, str) and address else "unknown"
