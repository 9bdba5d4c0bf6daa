"""The app's settings as this server has them: the environment over ``.streamlit/secrets.toml``.

Apart from ``ui.runtime``, whose modules (the engine, the collector, the sources) are heavy: the
sign-in page's run reads the settings without waiting for those to be imported.
"""

from __future__ import annotations

import streamlit as st

import settings as app_settings
from auth import users


def secrets() -> dict:
    """Settings from ``.streamlit/secrets.toml``; none when there is no such file."""
    try:
        return dict(st.secrets)
    except (FileNotFoundError, st.errors.StreamlitSecretNotFoundError):
        return {}


def load_settings() -> dict:
    return app_settings.load(secrets=secrets())


def user_file(settings: dict) -> str:
    """The user file's path once it is there (``auth.users.ensure``), where the settings put it."""
    return users.ensure(
        app_settings.auth_file(settings), str(settings["state_dir"]), expiry_days=settings["session_days"]
    )
