"""The view in the URL: the page, the time range, the scope, the explorer's filters and the
opened event or detection, kept in the query string as the user changes them. A reload keeps
the view, a copied link opens the same view for a colleague, and a link opened signed out
comes back once its visitor has signed in.

``to_params`` and ``to_state`` are the two directions, on plain dicts; the rest is Streamlit
glue called from ``app.py``.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import streamlit as st

# ``ui.view`` (pandas and the explorer's filters) is imported where it is used, not here:
# ``remember_request`` runs before the sign-in gate, whose form must not wait for those imports.

RANGE_CODES = {"Last 15 minutes": "15m", "Last hour": "1h", "Last 6 hours": "6h", "Last 24 hours": "24h"}
CUSTOM_CODE = "custom"
LISTS = {  # session key: query parameter, several values
    "view_regions": "region",
    "view_accounts": "account",
    "ex_services": "service",
    "ex_apis": "api",
    "ex_users": "user",
    "ex_ips": "ip",
    "ex_errors": "error",
}
TEXTS = {"ex_text": "q", "det_open": "hit", "open_event": "event"}  # session key: parameter, one value
PAGE_KEYS = {  # the keys that belong to one page's URL only
    "explorer": {"ex_services", "ex_apis", "ex_users", "ex_ips", "ex_errors", "ex_text", "ex_excluded", "open_event"},
    "detections": {"det_open"},
}
LEFT_OUT = {"services", "apis", "users", "ips", "error_codes"}  # ``not=users:bob``; ``not=error_codes:`` none
WANTED = "link_wanted"  # the first URL of the session: (page, params, runs applied), until a run ends
APPLY_TRIES = 3
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def _stamp(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime(_STAMP)


def _seconds(text: str) -> int | None:
    try:
        return int(dt.datetime.strptime(text, _STAMP).replace(tzinfo=dt.UTC).timestamp())
    except (TypeError, ValueError):
        return None


def to_params(state: dict, page: str) -> dict[str, str | list[str]]:
    """The query parameters that describe the view in ``state`` on ``page`` (its url path)."""
    from ui import view

    own = PAGE_KEYS.get(page, set())
    params: dict[str, str | list[str]] = {}
    range_name = state.get("view_range", "Last hour")
    custom = state.get("view_custom")
    if range_name == view.CUSTOM and custom:
        params.update(range=CUSTOM_CODE, start=_stamp(custom[0]), end=_stamp(custom[1]))
    elif range_name in RANGE_CODES and range_name != "Last hour":  # the default stays out of the link
        params["range"] = RANGE_CODES[range_name]
    if state.get("view_local_time", True) is False:
        params["utc"] = "1"
    for key, name in LISTS.items():
        if (key.startswith("view_") or key in own) and state.get(key):
            params[name] = [str(v) for v in state[key]]
    for key, name in TEXTS.items():
        if key in own and state.get(key):
            params[name] = str(state[key])
    if "ex_excluded" in own and state.get("ex_excluded"):
        params["not"] = [f"{field}:{'' if value is None else value}" for field, value in state["ex_excluded"]]
    return params


def to_state(params: dict[str, list[str]], zone: str) -> dict:
    """Session values from query parameters (each a list, as ``st.query_params.get_all``
    gives them). A custom range also sets the sidebar's date and time inputs, in ``zone``,
    the zone they are entered in. Unknown or malformed values are left out."""
    from ui import view

    state: dict = {}
    first = {name: values[-1] for name, values in params.items() if values}
    codes = {code: name for name, code in RANGE_CODES.items()}
    if first.get("range") in codes:
        state["view_range"] = codes[first["range"]]
    elif first.get("range") == CUSTOM_CODE:
        start, end = _seconds(first.get("start", "")), _seconds(first.get("end", ""))
        if start is not None and end is not None and start < end:
            state["view_range"] = view.CUSTOM
            state["view_custom"] = (start, end)
            local = ZoneInfo(zone)
            for prefix, seconds in (("view_from", start), ("view_to", end)):
                wall = dt.datetime.fromtimestamp(seconds, local).replace(tzinfo=None)
                state[f"{prefix}_day"], state[f"{prefix}_time"] = wall.date(), wall.time()
    if first.get("utc") == "1":
        state["view_local_time"] = False
    for key, name in LISTS.items():
        if params.get(name):
            state[key] = list(params[name])
    for key, name in TEXTS.items():
        if first.get(name):
            state[key] = first[name]
    pairs = [text.partition(":") for text in params.get("not", [])]
    if left_out := [[field, value or None] for field, _, value in pairs if field in LEFT_OUT]:
        state["ex_excluded"] = left_out
    return state


# -- Streamlit glue ----------------------------------------------------------------------------
def _requested_page() -> str:
    """The url path of the page the browser asked for ('' for the default page)."""
    url = st.context.url or ""
    return urlparse(url).path.rstrip("/").rsplit("/", 1)[-1] if url else ""


def remember_request() -> None:
    """On a session's first run, before the sign-in gate: what the link asked for."""
    if WANTED not in st.session_state and "link_applied" not in st.session_state:
        params = {name: st.query_params.get_all(name) for name in st.query_params}
        st.session_state[WANTED] = (_requested_page(), params, 0)


def apply_request(pages: dict[str, st.Page], current: str) -> None:
    """Once signed in: the remembered link's view into the session, and to its page if the
    sign-in form took the browser elsewhere. ``pages``: every page by its url path."""
    # Kept until a run reaches ``write``, its end: a run stopped before (a rerun a component
    # queued, a page switch) lost the view it had set, and the next run applies it again; a few
    # times at most, so that a page that always stops early does not pin the link's view.
    from ui import view

    wanted = st.session_state.get(WANTED)
    if wanted is None:
        return
    page, params, tries = wanted
    if tries >= APPLY_TRIES:
        del st.session_state[WANTED]
        st.session_state["link_applied"] = True
        return
    st.session_state[WANTED] = (page, params, tries + 1)
    zone = view.browser_zone() if params.get("utc") != ["1"] else None
    for key, value in to_state(params, zone or "UTC").items():
        st.session_state[key] = value
    if page != current and page in pages:
        st.switch_page(pages[page], query_params=to_params(st.session_state, page))


def write(page: str) -> None:
    """The view of this run into the URL (only when it changed, to spare the browser). The
    last call of a signed-in run: a link's view is in the session for good from here."""
    if st.session_state.pop(WANTED, None) is not None:
        st.session_state["link_applied"] = True
    params = to_params(st.session_state, page)
    present = {name: st.query_params.get_all(name) for name in st.query_params}
    wanted = {name: value if isinstance(value, list) else [value] for name, value in params.items()}
    if present != wanted:
        st.query_params.from_dict(params)
