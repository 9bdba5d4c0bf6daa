"""Events explorer: the events themselves, filtered every way an analyst needs, with the full
record of any one and downloads of what is shown."""

import time

import pandas as pd
import streamlit as st

from metrics.explore import NO_ERROR, bin_seconds
from metrics.query import QueryError
from ui import charts, data, drill, held, page, view
from ui.charts import PICK
from ui.tables import events_table

NO_CODE = "(none: succeeded)"
# A search reads records this long per run, newest first, then shows what it found and goes on.
SEARCH_SECONDS = 1.0
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
with page.busy("Reading the events of this range…"):
    in_range = data.select_events(shared.engine, base)

columns = st.columns(len(FILTERS))
chosen = {}
for slot, (key, (label, column, field)) in zip(columns, FILTERS.items()):
    options = sorted(set(in_range.values(column)) | {v for v in state.get(key, []) if v != NO_CODE})
    if column == "errorCode":
        options = [NO_CODE, *options]
    values = slot.multiselect(label, options, default=held.chosen(key, options), key=key, placeholder="Any")
    chosen[field] = tuple(NO_ERROR if v == NO_CODE else v for v in values)
text = st.text_input(
    "Search",
    value=held.value("ex_text", ""),
    key="ex_text",
    placeholder="Any text of the record: an access key id, a request id, an ARN…",
)
st.caption(
    'Words match any value of the full record, in any case; `"a phrase"` matches with its spaces. '
    "`field:value` matches a field whole: `errorCode:AccessDenied`, `userIdentity.accessKeyId:AKIA…`, "
    "`user:alice` (`field:*`: the field has a value). `*` stands for any characters: `eventName:Describe*`. "
    "Terms side by side must all match; combine with `AND`, `OR`, `NOT` and parentheses."
)
excluded = [tuple(pair) for pair in state.get("ex_excluded", [])]
if excluded:
    labels = {field: label for label, _, field in FILTERS.values()}
    # Record values as multiselect options: shown as text, never as markdown.
    names = [f"{labels[field]}: {NO_CODE if value is None else value}" for field, value in excluded]
    generation = state.get("ex_top_generation", 0)
    kept = st.multiselect(
        "Left out", names, default=names, key=f"ex_left_out_{generation}", help="Remove one to bring its events back."
    )
    if len(kept) < len(names):
        state["ex_excluded"] = [list(pair) for pair, name in zip(excluded, names) if name in kept]
        state["ex_top_generation"] = generation + 1
        st.rerun()
flt = base.narrowed(**chosen, text=text, excluded=tuple(excluded))

top = st.columns([4, 1])
if top[1].button("Refresh", icon=":material/refresh:", help="Read the newest events."):
    st.rerun()
try:
    with page.busy("Searching the events…" if text.strip() else "Filtering the events…"):
        events = data.select_events(shared.engine, flt, budget=SEARCH_SECONDS)
except QueryError as error:
    st.error(f"The search cannot be read: {error}.")
    st.stop()
if events.unsearched:
    share = 1 - events.unsearched / max(1, len(in_range))
    st.progress(
        min(max(share, 0.0), 1.0),
        text=f"Searching the records, newest first: {events.unsearched:,} older events still to read. "
        "The matches found so far are below; the page fills in on its own.",
    )


def histogram() -> None:
    """The matches over the range; a click on a bar narrows the range to that bar."""
    start, end = flt.start, flt.end
    seconds = bin_seconds(end - start, 10, points=80)
    chart = charts.matches_histogram(
        events.times_ns(), start=start, end=end, seconds=seconds, zone=current.zone_title, wall=current.wall
    )
    picked = st.altair_chart(
        charts.unvalidated(chart), on_select="rerun", selection_mode=PICK, key="ex_histogram", width="stretch"
    )
    points = (picked.selection.get(PICK) if picked is not None else None) or []
    if points and points[0] != state.get("ex_histogram_seen"):
        state["ex_histogram_seen"] = points[0]
        t = int(points[0]["t"])
        state["ex_window"] = (t, t + seconds, f"the bar {page.window_text(current, t, seconds)}")
        st.rerun()
    st.caption("Matching events over the range. Click a bar to narrow the range to it.")


def top_values() -> None:
    """The five commonest values of the main fields among the matches: a click on one keeps
    only it, or leaves it out."""
    with st.expander("Top values of the matches", expanded=True):
        mode = st.segmented_control(
            "A click on a value",
            ["Keeps only it", "Leaves it out"],
            default=held.value("ex_click_mode", "Keeps only it"),
            key="ex_click_mode",
        )
        slots = [*st.columns(3), *st.columns(3)]  # three to a row: values stay readable at 1440 px
        for slot, (key, (label, column, field)) in zip(slots, FILTERS.items()):
            counts = events.counts(column, 5, missing=column == "errorCode")
            values = [NO_CODE if v is None else v for v, _ in counts]
            table = pd.DataFrame({label: [charts.middle(v, 34) for v in values], "Events": [n for _, n in counts]})
            generation = state.get("ex_top_generation", 0)
            picked = slot.dataframe(
                table,
                key=f"ex_top_{key}_{generation}",
                on_select="rerun",
                selection_mode="single-row",
                hide_index=True,
                width="stretch",
                column_config={
                    # With the selection column, within a third of the main column at 1440 px.
                    label: st.column_config.TextColumn(label, help="Long values shortened in the middle.", width=180),
                    "Events": st.column_config.NumberColumn(width=75),
                },
            )
            rows = picked.selection.rows if picked else []
            if rows and rows[0] < len(table):
                value = values[rows[0]]
                state["ex_top_generation"] = generation + 1  # fresh tables: the click is used once
                if mode == "Leaves it out":
                    left_out = None if value == NO_CODE else value
                    state["ex_excluded"] = [*state.get("ex_excluded", []), [field, left_out]]
                    state[key] = [v for v in state.get(key, []) if v != value]
                else:
                    state[key] = [value]
                st.rerun()


if events.empty:
    if in_range.empty:
        page.explain_empty(shared, current)
    elif events.unsearched:
        st.info("No match in the newest records read so far; the search goes on through the older ones.")
    else:
        st.info(f"None of the {len(in_range):,} events in this range matches these filters.")
else:
    histogram()
    top_values()
    events_table(shared.engine, events, current, key="explorer-table", choose_columns=True, remember="open_event")
if events.unsearched:
    time.sleep(0.1)  # let the browser draw the matches so far
    st.rerun()
