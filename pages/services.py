"""Calls per AWS service over time, EC2 excluded (it has a page of its own)."""

import streamlit as st

from metrics.explore import rebin
from ui import charts, data, drill, page, view
from ui.drill import Drill

PAGE = "services"
STEP = 10
BUSIEST = 8

shared, _ = page.start(
    "Services", "API calls per AWS service (eventSource), EC2 excluded. Click a point to see its events."
)


@page.refreshing("line_refresh_seconds")
def live() -> None:
    at, current = page.now(), view.current()
    frame = data.metric(shared.engine, "CallsPerServiceType", current, at)
    if frame.empty:
        page.explain_empty(shared, current, "calls to services other than EC2")
        return
    seconds = page.bin_for(current, STEP, at)
    st.subheader(f"Calls per service, {current.label()}")
    totals = frame.groupby("category", observed=True)["value"].sum().sort_values(ascending=False, kind="stable")
    chosen = st.multiselect(
        "Services drawn",
        totals.index.tolist(),
        default=[s for s in st.session_state.get("services-drawn", []) if s in totals.index]
        or totals.index[:BUSIEST].tolist(),
        help=f"The {BUSIEST} busiest are drawn at first; add or remove any.",
    )
    st.session_state["services-drawn"] = chosen
    chart = charts.lines_by(
        rebin(frame[frame["category"].isin(chosen)], seconds),
        "category",
        "Service",
        step=seconds,
        zone=current.zone_title,
        wall=current.wall,
        span=current.bounds(at),
        height=420,
    )

    def to_drill(point: dict) -> Drill:
        service = point["category"]
        flt = current.filter(services=(service,)).narrowed(start=int(point["t"]), end=int(point["t"]) + seconds)
        return Drill(flt, f"Calls to {service}, window {page.window_text(current, point['t'], seconds)}")

    drill.chart(chart, page=PAGE, key="services-lines", to_drill=to_drill)
    st.caption(
        f"{len(chosen)} of {len(totals)} services drawn; {int(totals.sum()):,} calls to all {len(totals)}. "
        "Click near a point to list its events; double-click to clear the mark."
    )
    page.updated_caption(shared, "line_refresh_seconds")


live()
drill.panel(shared.engine, view.current(), page=PAGE)
