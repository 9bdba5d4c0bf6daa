"""The busiest API calls: service and operation."""

import streamlit as st

from metrics.pumps import PUMPS_BY_NAME
from ui import charts, data, drill, page, specs, view
from ui.drill import Drill

PAGE = "apis"
STEP = PUMPS_BY_NAME["CallsPerAPI"].step

shared, _ = page.start("APIs", "The ten most called APIs (eventName, with its service). Click a bar to see its events.")


@page.refreshing("bar_refresh_seconds")
def top() -> None:
    at, current = page.now(), view.current()
    frame = data.totals(shared.engine, "CallsPerAPI", current, at)
    if frame.empty:
        page.explain_empty(shared, current, "API calls")
        return
    st.subheader(f"Top 10 API calls, {current.label()}")
    frame = frame.assign(api=frame["subcategory"] + " (" + frame["category"].str.replace(".amazonaws.com", "") + ")")
    chart = specs.shared(charts.top_bars, frame, "api", "API (service)", keys=("category", "subcategory"))

    def to_drill(point: dict) -> Drill:
        flt = current.filter(now=at, step=STEP, services=(point["category"],), apis=(point["subcategory"],))
        span = page.span_text(current, flt.start, flt.end)
        return Drill(flt, f"Calls to {point['subcategory']} of {point['category']}, {span}")

    drill.chart(chart, page=PAGE, key="apis-top", to_drill=to_drill)
    page.updated_caption(shared, "bar_refresh_seconds")


top()
drill.panel(shared.engine, view.current(), page=PAGE)
