"""Events explorer: the events themselves, filtered every way an analyst needs, with the full
record of any one and downloads of what is shown."""

import streamlit as st

from metrics.explore import NO_ERROR
from ui import data, drill, page, view
from ui.tables import events_table

NO_CODE = "(none: succeeded)"
FILTERS = {  # widget key: (label, column, EventFilter field)
    "ex_services": ("Service", "eventSource", "services"),
    "ex_apis": ("API", "eventName", "apis"),
    "ex_users": ("User", "user", "users"),
    "ex_ips": ("Source IP", "sourceIPAddress", "ips"),
    "ex_errors": ("Error code", "errorCode", "error_codes"),
}

shared, _ = page.start(
    "Events explorer",
    "Every event in the chosen range and scope. Narrow them down below; select a row to read its full record.",
)
state = st.session_state

arriving: drill.Drill | None = state.pop(drill.EXPLORER_FILTER, None)
if arriving is not None:  # opened from a chart: start from what was clicked
    flt = arriving.filter
    for key, (_, _, field) in FILTERS.items():
        values = getattr(flt, field)
        state[key] = [NO_CODE if v is NO_ERROR else v for v in values]
    state["ex_text"] = flt.text
    state["ex_window"] = (flt.start, flt.end, arriving.description)

at, current = page.now(), view.current()
window = state.get("ex_window")
base = current.filter(now=at)
if window:
    base = base.narrowed(start=window[0], end=window[1])
    left, right = st.columns([5, 1])
    left.text(f"Opened from: {window[2]}")
    if right.button("Use the sidebar's range", icon=":material/close:"):
        del state["ex_window"]
        st.rerun()
in_range = data.events(shared.engine, base)

columns = st.columns(len(FILTERS))
chosen = {}
for slot, (key, (label, column, field)) in zip(columns, FILTERS.items()):
    present = in_range[column].dropna().unique().tolist()
    options = sorted(set(map(str, present)) | {v for v in state.get(key, []) if v != NO_CODE})
    if column == "errorCode":
        options = [NO_CODE, *options]
    values = slot.multiselect(label, options, key=key, placeholder="Any")
    chosen[field] = tuple(NO_ERROR if v == NO_CODE else v for v in values)
text = st.text_input(
    "Search", key="ex_text", placeholder="Any text: an access key id, a role, an ARN, an error message…"
)
flt = base.narrowed(**chosen, text=text)

top = st.columns([4, 1])
if top[1].button("Refresh", icon=":material/refresh:", help="Read the newest events."):
    st.rerun()
events = data.events(shared.engine, flt)
if events.empty:
    if in_range.empty:
        page.explain_empty(shared, current)
    else:
        st.info(f"None of the {len(in_range):,} events in this range matches these filters.")
else:
    events_table(shared.engine, events, current, key="explorer-table", choose_columns=True, remember="open_event")
