"""The user file: streamlit-authenticator's YAML layout, kept outside the repository.

::

    cookie:
      name: account_activity_insights_auth
      key: <64 random hex digits, one per install>
      expiry_days: 1.0
    credentials:
      usernames:
        admin:
          name: admin
          password: <bcrypt hash>
          must_change_password: true
          failed_login_attempts: 0
          logged_in: false

No password and no cookie key is ever a default: ``bootstrap`` draws both on first start and
prints the one-time ``admin`` password once, to the server log. Every change goes through
``update`` (a lock, a fresh read, an atomic write), so the app and the command line can change
the file at the same time. Hashes are bcrypt in exactly the format of
``streamlit_authenticator.Hasher`` (which this module does not import: it would import Streamlit).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Callable
from typing import IO, TypeVar

import bcrypt
import yaml

from storage import ensure_private_dir, locked, write_private

COOKIE_NAME = "account_activity_insights_auth"
BOOTSTRAP_USER = "admin"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; bcrypt 5 refuses longer passwords
NAME_PATTERN = re.compile(r"[a-z0-9._-]{1,64}")

T = TypeVar("T")


class UserFileError(ValueError):
    """The user file is missing, unreadable or not in the expected layout."""


def sessions_path(path: str) -> str:
    """The session registry beside the user file: ``sessions.json`` in the same folder."""
    return os.path.join(os.path.dirname(path), "sessions.json")


def valid_name(name: str) -> bool:
    """Lower-case letters, digits, ``.``, ``_`` and ``-``, 1 to 64 characters."""
    return bool(NAME_PATTERN.fullmatch(name))


def new_password() -> str:
    """A random one-time password (16 URL-safe characters)."""
    return secrets.token_urlsafe(12)


def hash_password(password: str) -> str:
    """The bcrypt hash of ``password``, as ``streamlit_authenticator.Hasher.hash`` makes it."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def check_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches the bcrypt hash (False for passwords bcrypt refuses)."""
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be a new password, or None if it can."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"The new password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return f"The new password must be at most {MAX_PASSWORD_BYTES} bytes long."
    return None


def new_user(name: str, password: str) -> dict:
    """A user entry with ``password`` hashed, to be changed at first sign-in."""
    return {
        "name": name,
        "password": hash_password(password),
        "must_change_password": True,
        "failed_login_attempts": 0,
        "logged_in": False,
    }


def new_config(expiry_days: float = 1.0) -> dict:
    """An empty user file with a fresh cookie key."""
    return {
        "cookie": {"name": COOKIE_NAME, "key": secrets.token_hex(32), "expiry_days": float(expiry_days)},
        "credentials": {"usernames": {}},
    }


def read(path: str) -> dict:
    """The user file as a dict; ``UserFileError`` if it is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as file:
            config = yaml.safe_load(file)
    except FileNotFoundError:
        raise UserFileError(f"no user file at {path}") from None
    except yaml.YAMLError as error:
        raise UserFileError(f"{path} is not valid YAML: {error}") from None
    try:
        cookie, usernames = config["cookie"], config["credentials"]["usernames"]
        if not (isinstance(cookie["name"], str) and isinstance(cookie["key"], str) and len(cookie["key"]) >= 32):
            raise TypeError
    except (KeyError, TypeError):
        raise UserFileError(f"{path} lacks a cookie name, a cookie key or credentials.usernames") from None
    if usernames is None:
        config["credentials"]["usernames"] = {}
    elif not isinstance(usernames, dict):
        raise UserFileError(f"{path}: credentials.usernames is not a mapping")
    return config


def write(path: str, config: dict) -> None:
    """Replaces the user file (atomically, mode 0600). Hold ``locked(path)`` around read and write."""
    write_private(path, yaml.safe_dump(config, default_flow_style=False, sort_keys=False, allow_unicode=True))


def update(path: str, change: Callable[[dict], T], *, create: bool = False) -> T:
    """Applies ``change`` to a fresh read of the user file under its lock, writes the result and
    returns what ``change`` returned. With ``create``, a missing file starts as ``new_config()``."""
    with locked(path):
        config = new_config() if create and not os.path.exists(path) else read(path)
        result = change(config)
        write(path, config)
    return result


def update_user(path: str, name: str, changes: dict) -> bool:
    """Sets ``changes`` in the entry of ``name``; False (and no change) if there is no such user."""

    def apply(config: dict) -> bool:
        entry = config["credentials"]["usernames"].get(name)
        if entry is None:
            return False
        entry.update(changes)
        return True

    return update(path, apply)


def ensure(path: str, state_dir: str, *, expiry_days: float = 1.0) -> str:
    """``path``, absolute, once the user file is there: its folder and the state's made private
    first (``storage.LooseFolderError``, an ``OSError``, if one is shared), the file created on
    first use by ``bootstrap``. Imports no Streamlit, so the server can call it at its start."""
    path = os.path.abspath(path)
    for folder in {os.path.dirname(path), os.path.abspath(state_dir)}:
        ensure_private_dir(folder)  # tightened if loose, refused with a message if shared
    bootstrap(path, expiry_days=expiry_days)
    return path


def bootstrap(path: str, *, expiry_days: float = 1.0, log: IO[str] | None = None) -> str | None:
    """Creates the user file if there is none: an ``admin`` with a random one-time password, printed
    once to ``log`` (stderr) on a line containing ``password:``, and a random cookie key.

    Returns the password if this call created the file, else None. Safe against concurrent
    calls, from threads or processes: only one of them creates the file."""
    if os.path.exists(path):
        return None
    with locked(path):
        if os.path.exists(path):
            return None
        password = new_password()
        config = new_config(expiry_days)
        config["credentials"]["usernames"][BOOTSTRAP_USER] = new_user(BOOTSTRAP_USER, password)
        write(path, config)
    print(
        f"Account Activity Insights: created user {BOOTSTRAP_USER} with one-time password: {password} "
        "(you must change it at first sign-in)",
        file=log or sys.stderr,
        flush=True,
    )
    return password
