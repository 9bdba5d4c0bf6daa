"""Cooldowns after repeated failed sign-ins, per user name and per client.

``SignInThrottle`` is what the login uses: the long, doubling cooldown belongs to the pair
(name, client) and to the client, so that whoever guesses only slows themselves down; the
name alone gets a short cooldown that never doubles, so that failures from everywhere limit
the guessing rate for a name but never lock its owner out for long.

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

import ipaddress
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
        doubling: bool = True,
    ):
        self.doubling = doubling
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
                    factor = 2.0 ** min(extra, 64) if self.doubling else 1.0
                    record.until = now + min(self.base * factor, self.ceiling)
            if len(self._records) > 10_000:  # many clients or names: drop the forgotten ones
                for key in list(self._records):
                    self._live(key, now)

    def succeeded(self, keys: Iterable[str]) -> None:
        """Clears ``keys`` (the caller passes the user-name key, not the client's)."""
        with self._lock:
            for key in keys:
                self._records.pop(key, None)


class SignInThrottle:
    """Cooldowns for sign-in attempts of a user name from a client.

    >>> now = [0.0]
    >>> throttle = SignInThrottle(clock=lambda: now[0])
    >>> for _ in range(6):
    ...     throttle.failed("admin", "203.0.113.9")
    >>> throttle.wait("admin", "203.0.113.9"), throttle.wait("admin", "198.51.100.7")
    (60.0, 10.0)
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, name_wait: float = 10.0):
        self.pairs = Throttle(clock=clock)
        self.clients = Throttle(clock=clock)
        self.names = Throttle(base=name_wait, ceiling=name_wait, clock=clock, doubling=False)

    def _keys(self, name: str, client: str) -> list[tuple[Throttle, list[str]]]:
        return [(self.pairs, [f"{name}|{client}"]), (self.clients, [client]), (self.names, [name])]

    def wait(self, name: str, client: str) -> float:
        """Seconds until ``client`` may try ``name`` again; 0.0 if it may now."""
        return max(throttle.wait(keys) for throttle, keys in self._keys(name, client))

    def failed(self, name: str, client: str) -> None:
        for throttle, keys in self._keys(name, client):
            throttle.failed(keys)

    def succeeded(self, name: str, client: str) -> None:
        """Clears the name and the pair; the client keeps what it failed for other names."""
        self.pairs.succeeded([f"{name}|{client}"])
        self.names.succeeded([name])


def _networks(trusted: Iterable[str]) -> list:
    return [ipaddress.ip_network(item.strip(), strict=False) for item in trusted if item.strip()]


def _is_trusted(address: str, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_key(forwarded_for: Iterable[str] = (), address: str | None = None, trusted: Iterable[str] = ()) -> str:
    """Who is signing in: the connection's address, else ``unknown``. Only when that address is
    one of the ``trusted`` proxies (addresses or networks) does ``X-Forwarded-For`` count: then
    the client is the rightmost entry, over all such headers, that is not itself a trusted
    proxy. Anyone else could write any address there. A connection from this machine has no
    address in Streamlit (``None``): it is trusted only if loopback is."""
    networks = _networks(trusted)
    connection = address if isinstance(address, str) and address else None
    if not networks or not _is_trusted(connection or "127.0.0.1", networks):
        return connection or "unknown"
    headers = [header for header in forwarded_for if isinstance(header, str)]
    hops = [hop.strip() for header in headers for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop
    return hops[0] if hops else connection or "unknown"
