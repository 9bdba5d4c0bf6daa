"""The logins the server still honours, so that logging out really ends a session.

streamlit-authenticator 0.4.2's re-authentication cookie is a signed JWT ``{username,
exp_date}`` that it checks for signature and expiry only: a cookie copied before logout would
keep working until it expires. Here each login registers its key, the cookie's ``exp_date``
(``session_key``), and a session counts only while its key is registered and unexpired. Logout
revokes one key; a password change or reset revokes all of a user's keys.

The registry is a JSON file (mode 0600) beside the user file, ``{user: {key: expires}}``,
re-read on every check, so a revocation by another session or by the command line is seen at
once.

>>> import tempfile, os
>>> registry = SessionRegistry(os.path.join(tempfile.mkdtemp(), "sessions.json"), clock=lambda: 100.0)
>>> registry.register("alice", session_key(200.0), 200.0)
>>> registry.valid("alice", "200.0"), registry.valid("bob", "200.0")
(True, False)
>>> registry.revoke("alice", "200.0")
>>> registry.valid("alice", "200.0")
False
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import jwt

from storage import locked, write_private


def session_key(exp_date: float) -> str:
    """The key of a login: the ``exp_date`` its cookie carries, as text (``repr`` of the float,
    which a JSON round trip leaves unchanged)."""
    return repr(float(exp_date))


def connection_may_resume(user: str | None, key: str | None, cookie: dict | None) -> bool:
    """Whether a new connection presenting a signed-in session's id may take it on: only if
    its own cookie (``read_cookie``) carries that session's login, user and key alike. A
    session id alone, with no cookie or another login's, takes over nothing.

    >>> connection_may_resume("alice", "200.0", {"username": "alice", "exp_date": 200.0})
    True
    >>> connection_may_resume("alice", "200.0", None)
    False
    >>> connection_may_resume("alice", "200.0", {"username": "bob", "exp_date": 200.0})
    False
    """
    if not user or not key or not cookie:
        return False
    return cookie.get("username") == user and session_key(cookie["exp_date"]) == key


def make_cookie(username: str, expires: float, key: str) -> str:
    """The re-authentication cookie of a login: streamlit-authenticator's HS256 JWT."""
    return jwt.encode({"username": username, "exp_date": float(expires)}, key, algorithm="HS256")


def read_cookie(token: object, key: str) -> dict | None:
    """The login a re-authentication cookie carries, ``{"username", "exp_date"}``, if it is an
    HS256 JWT signed with ``key`` holding a user name and a finite expiry; else None. Anything
    else a browser can send (``alg: none``, another algorithm, a bad signature, missing or
    ill-typed claims, garbage) is simply no login."""
    if not isinstance(token, str) or not token:
        return None
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"])
    except (jwt.InvalidTokenError, ValueError, TypeError):
        return None
    user, expires = claims.get("username"), claims.get("exp_date")
    if not isinstance(user, str) or not user or isinstance(expires, bool) or not isinstance(expires, int | float):
        return None
    if not math.isfinite(expires):
        return None
    return {"username": user, "exp_date": float(expires)}


class SessionRegistry:
    def __init__(self, path: str, clock: Callable[[], float] = time.time):
        self.path = path
        self.clock = clock

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            with open(self.path, encoding="utf-8") as file:
                data = json.load(file)
        except FileNotFoundError:
            return {}
        except ValueError:  # damaged: every session ends, which is the safe side
            return {}
        return data if isinstance(data, dict) else {}

    def _change(self, change: Callable[[dict[str, dict[str, float]]], object]) -> object:
        with locked(self.path):
            data = self._read()
            result = change(data)
            now = self.clock()
            data = {
                user: live
                for user, keys in data.items()
                if (live := {key: expires for key, expires in keys.items() if expires > now})
            }
            write_private(self.path, json.dumps(data, indent=1, sort_keys=True))
        return result

    def register(self, username: str, key: str, expires: float) -> None:
        """Honours the login ``key`` of ``username`` until ``expires`` (seconds since the epoch)."""
        self._change(lambda data: data.setdefault(username, {}).__setitem__(key, float(expires)))

    def valid(self, username: str, key: str | None) -> bool:
        """Whether ``key`` is a registered, unexpired login of ``username``."""
        if not username or not key:
            return False
        expires = self._read().get(username, {}).get(key)
        return isinstance(expires, int | float) and expires > self.clock()

    def revoke(self, username: str, key: str) -> None:
        """Ends one login."""
        self._change(lambda data: data.get(username, {}).pop(key, None))

    def revoke_user(self, username: str, keep: str | None = None) -> int:
        """Ends every login of ``username`` but ``keep``; returns how many ended."""

        def drop(data: dict[str, dict[str, float]]) -> int:
            keys = data.get(username, {})
            ended = [key for key in keys if key != keep]
            now = self.clock()
            return sum(keys.pop(key) > now for key in ended)

        return self._change(drop)

    def count(self, username: str) -> int:
        """How many unexpired logins ``username`` has."""
        now = self.clock()
        return sum(1 for expires in self._read().get(username, {}).values() if expires > now)
