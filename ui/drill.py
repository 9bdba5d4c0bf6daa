"""From a click on a chart to the events behind it.

A chart's selection (see ``charts.PICK``) becomes an ``EventFilter`` through the function
the page gives; the filter is kept in the session, so that the chart refreshing under the
user does not close what they opened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from metrics.explore import EventFilter
from metrics.visible import visible
from ui import data, view
from ui.charts import PICK, ZOOM, zoomed_range
from ui.specs import Spec
from ui.tables import events_table

EXPLORER_FILTER = "explorer_drill"


@dataclass(frozen=True)
class Drill:
    filter: EventFilter
    description: str  # may hold record values: shown with st.text only


def _key(page: str) -> str:
    return f"drill:{page}"


def chart(
    chart: Spec,
    *,
    page: str,
    key: str,
    to_drill: Callable[[dict], Drill | None],
) -> None:
    """Draws ``chart``; a new click on it opens the matching events under the page's charts,
    and a range dragged along its time axis becomes the range of every page. ``chart``: from
    ``ui.specs.shared``, built once for the sessions that draw the same chart."""
    modes = [PICK, ZOOM] if chart.zoomable else PICK
    state = st.vega_lite_chart(chart.spec, on_select="rerun", selection_mode=modes, key=key, width="stretch")
    if chart.zoomable:
        interval = (state.selection.get(ZOOM) if state is not None else None) or {}
        zoom_key = f"{key}:zoomed"
        if interval and interval != st.session_state.get(zoom_key):
            st.session_state[zoom_key] = interval
            span = zoomed_range(interval, view.current().zone)
            if span is not None:
                view.zoom_to(*span)
        st.session_state[zoom_key] = interval or None
    points = (state.selection.get(PICK) if state is not None else None) or []
    seen_key = f"{key}:seen"
    point = points[0] if points else None
    if point is not None and point != st.session_state.get(seen_key):
        st.session_state[seen_key] = point
        drill = to_drill(point)
        if drill is not None:
            st.session_state[_key(page)] = drill
            st.rerun()  # the whole page, so that the events panel below the charts shows it
    st.session_state[seen_key] = point


def open_from_table(page: str, drill: Drill) -> None:
    st.session_state[_key(page)] = drill


def panel(engine, view, *, page: str) -> None:
    """The events of the last click on this page, or how to get them."""
    drill: Drill | None = st.session_state.get(_key(page))
    if drill is None:
        st.caption("Click a bar, a point or a line on a chart above to list the events behind it.")
        return
    st.subheader("Events behind your click")
    st.text(visible(drill.description))
    with st.spinner("Reading the events…", show_time=True):
        events, notes = data.select_noted(engine, drill.filter)
    if "limit" in notes:
        st.caption(f"The first {notes['limit']:,} events Athena returned; narrow the click or the range for more.")
    if "other_windows" in notes:
        covered, windows = notes["other_windows"]
        st.caption(f"The (other) events of the first {covered:,} of {windows:,} minutes: narrow the range for more.")
    if "error" in notes:
        st.warning("Athena could not list these events (the reason is below); the page asks again when it reruns.")
        st.text(visible(notes["error"]))
    elif events.empty:
        st.info("No events match any more: they may have left the buffer, or the scope in the sidebar excludes them.")
    else:
        events_table(engine, events, view, key=f"{page}-drill-table")
    left, right, _ = st.columns([1.3, 1, 4])
    if left.button("Open in Events explorer", key=f"{page}-drill-open", icon=":material/manage_search:"):
        st.session_state[EXPLORER_FILTER] = drill
        st.switch_page("pages/explorer.py")
    if right.button("Close", key=f"{page}-drill-close", icon=":material/close:"):
        del st.session_state[_key(page)]
        st.rerun()
