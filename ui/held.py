"""Defaults for keyed widgets: the value the session holds.

Streamlit 1.67 sends a keyed widget's current value to the browser only in the run that set it
through ``st.session_state``; otherwise the browser keeps what it has. A run that ends without
the widget (a page that stops early: the sign-in gate, a switch of page) makes the browser forget
it, and when the widget comes back the browser draws its *default* and sends that with the next
rerun: the session's value is replaced by the default. A link's "Last 6 hours" came back as "Last
15 minutes", the first option. With the held value as the default, both sides agree whatever the
browser kept. (The warning Streamlit logs for a default beside a session value is turned off in
``.streamlit/config.toml``: here the two are the same value on purpose.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st


def index(key: str, options: Sequence, fallback: int = 0) -> int:
    """For ``st.selectbox(index=)``: the position of the held value among ``options``."""
    held = st.session_state.get(key)
    return list(options).index(held) if held in options else fallback


def chosen(key: str, options: Sequence, fallback: Sequence = ()) -> list:
    """For ``st.multiselect(default=)``: the held values that are still options, in their order."""
    held = st.session_state.get(key, fallback)
    present = set(options)
    return [value for value in held if value in present]


def value(key: str, fallback: Any) -> Any:
    """For ``value=``/``default=`` of the other widgets: the held value, or ``fallback``."""
    return st.session_state.get(key, fallback)
