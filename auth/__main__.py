"""``python -m auth users add|reset|remove|list``: manage the app's users.

The user file is the app's: ``INSIGHTS_AUTH_FILE``, else ``users.yaml`` in ``INSIGHTS_STATE_DIR``
(the same settings as the app, ``.streamlit/secrets.toml`` included), or ``--file PATH``.
``add`` and ``reset`` print a random one-time password once; the user must change it at first
sign-in. ``reset`` and ``remove`` end the user's open sessions; removing the last active user
needs ``--force``. Exit status 2 for an unknown or existing user, a bad name, a missing user
file or the last active user without ``--force``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Sequence

import settings
from auth import users
from auth.sessions import SessionRegistry


class CommandError(Exception):
    pass


def _secrets() -> dict:
    """Streamlit's secrets files, as the app sees them: the user's, then the project's."""
    values: dict = {}
    for path in (os.path.expanduser("~/.streamlit/secrets.toml"), os.path.join(".streamlit", "secrets.toml")):
        try:
            with open(path, "rb") as file:
                values.update(tomllib.load(file))
        except (FileNotFoundError, tomllib.TOMLDecodeError):
            continue
    return values


def user_file(path: str | None) -> str:
    """``path`` if given, else the app's user file."""
    return path or settings.auth_file(settings.load(secrets=_secrets()))


def _name(name: str) -> str:
    if not users.valid_name(name):
        raise CommandError(f"{name!r} is not a valid user name: use 1 to 64 lower-case letters, digits, '.', '_', '-'")
    return name


def add(path: str, name: str) -> str:
    """Adds ``name`` with a one-time password, which it returns."""
    password = users.new_password()

    def apply(config: dict) -> None:
        usernames = config["credentials"]["usernames"]
        if name in usernames:
            raise CommandError(f"user {name} already exists (use reset to give it a new password)")
        usernames[name] = users.new_user(name, password)

    users.update(path, apply, create=True)
    return password


def reset(path: str, name: str) -> str:
    """Gives ``name`` a new one-time password, which it returns, and ends its sessions."""
    password = users.new_password()

    def apply(config: dict) -> None:
        usernames = config["credentials"]["usernames"]
        if name not in usernames:
            raise CommandError(f"no user {name} in {path}")
        usernames[name].update(users.new_user(usernames[name].get("name") or name, password))

    users.update(path, apply)
    SessionRegistry(users.sessions_path(path)).revoke_user(name)
    return password


def remove(path: str, name: str, force: bool = False) -> None:
    """Removes ``name`` and ends its sessions. The last active user (one who chose their own
    password) is removed only with ``force``: after it, nobody may be able to sign in."""

    def apply(config: dict) -> None:
        accounts = config["credentials"]["usernames"]
        entry = accounts.get(name)
        if entry is None:
            raise CommandError(f"no user {name} in {path}")
        others = [n for n, e in accounts.items() if n != name and not e.get("must_change_password")]
        if not force and not entry.get("must_change_password") and not others:
            raise CommandError(
                f"{name} is the last active user: after removing it nobody may be able to sign in "
                "(add another user first, or repeat with --force)"
            )
        del accounts[name]

    users.update(path, apply)
    SessionRegistry(users.sessions_path(path)).revoke_user(name)


def listing(path: str) -> list[str]:
    """One line per user: name, whether a password change is pending, open sessions."""
    registry = SessionRegistry(users.sessions_path(path))
    lines = []
    for name, entry in sorted(users.read(path)["credentials"]["usernames"].items()):
        state = "must change password" if entry.get("must_change_password") else "active"
        sessions = registry.count(name)
        lines.append(f"{name}\t{state}\t{sessions} session{'' if sessions == 1 else 's'}")
    return lines


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--file", default=argparse.SUPPRESS, help="user file (default: the app's, from its settings)")
    top = argparse.ArgumentParser(prog="python -m auth", description="Manage the app's users.", parents=[common])
    groups = top.add_subparsers(dest="group", required=True)
    users_parser = groups.add_parser("users", help="add, reset, remove or list users", parents=[common])
    commands = users_parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("add", "add a user with a one-time password"),
        ("reset", "give a user a new one-time password and end its sessions"),
        ("remove", "remove a user and end its sessions"),
    ):
        added = commands.add_parser(command, help=text, parents=[common])
        added.add_argument("name")
        if command == "remove":
            added.add_argument("--force", action="store_true", help="remove even the last active user")
    commands.add_parser("list", help="list the users", parents=[common])
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        path = user_file(getattr(args, "file", None))
        if args.command == "list":
            print("\n".join(listing(path)) or f"no users in {path}")
        elif args.command == "add":
            password = add(path, _name(args.name))
            print(f"Created user {args.name} in {path} with one-time password: {password} (change it at first sign-in)")
        elif args.command == "reset":
            password = reset(path, _name(args.name))
            print(f"Reset user {args.name}: one-time password: {password} (change it at first sign-in); sessions ended")
        else:
            remove(path, _name(args.name), force=args.force)
            print(f"Removed user {args.name} from {path}; sessions ended")
    except (CommandError, users.UserFileError, settings.SettingsError) as error:
        print(f"python -m auth: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
