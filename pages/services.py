"""Calls per AWS service over time, EC2 excluded (it has a page of its own)."""

import pandas as pd
import streamlit as st

from ui import charts, colors, data, drill, held, page, specs, view
from ui.drill import Drill

PAGE = "services"
STEP = 10
BUSIEST = 5

shared, _ = page.start(
    "Services", "API calls per AWS service (eventSource), EC2 excluded. Click a point to see its events."
)


def with_others(frame: pd.DataFrame, chosen: list[str]) -> pd.DataFrame:
    """The chosen services as they are, every other one summed into one line."""
    mine = frame[frame["category"].isin(chosen)]
    rest = frame[~frame["category"].isin(chosen)]
    if rest.empty:
        return mine
    summed = rest.groupby(["window_start", "metric"], as_index=False, observed=True)["value"].sum()
    return pd.concat([mine, summed.assign(category=colors.OTHERS, subcategory="")[list(frame.columns)]])


@page.refreshing("line_refresh_seconds")
def live() -> None:
    at, current = page.now(), view.current()
    seconds = page.bin_for(current, STEP, at, points=page.LINE_POINTS)
    frame = data.binned_metric(shared.engine, "CallsPerServiceType", current, at, seconds)
    if frame.empty:
        page.explain_empty(shared, current, "calls to services other than EC2")
        return
    st.subheader(f"Calls per service, {current.label()}")
    totals = frame.groupby("category", observed=True)["value"].sum().sort_values(ascending=False, kind="stable")
    chosen = st.multiselect(
        "Services drawn on their own",
        totals.index.tolist(),
        default=[s for s in st.session_state.get("services-drawn", []) if s in totals.index]
        or totals.index[:BUSIEST].tolist(),
        help=f"The {BUSIEST} busiest are drawn at first; add or remove any. The others are summed in one grey line.",
    )
    st.session_state["services-drawn"] = chosen
    others = st.toggle(
        f'Draw the others as one line, "{colors.OTHERS}"',
        value=held.value("services-others", True),
        key="services-others",
    )
    drawn = with_others(frame, chosen) if others else frame[frame["category"].isin(chosen)]
    drawn = drawn.sort_values(["window_start", "category"], kind="stable", ignore_index=True)
    if drawn.empty:
        st.info("No service is chosen: pick one or more above, or switch on the line of all the others.")
        return
    names = [*chosen, colors.OTHERS] if others else chosen
    chart = specs.shared(
        charts.lines_by,
        drawn,
        "category",
        "Service",
        step=seconds,
        zone=current.zone_title,
        wall=current.wall,
        span=current.bounds(at),
        height=420,
        colors=page.colors_for("service", names),
    )

    def to_drill(point: dict) -> Drill:
        service = point["category"]
        window = page.window_text(current, point["t"], seconds)
        flt = current.filter().narrowed(start=int(point["t"]), end=int(point["t"]) + seconds)
        if service == colors.OTHERS:
            rest = tuple(s for s in totals.index if s not in chosen)
            return Drill(flt.narrowed(services=rest), f"Calls to the {len(rest)} other services, window {window}")
        return Drill(flt.narrowed(services=(service,)), f"Calls to {service}, window {window}")

    drill.chart(chart, page=PAGE, key="services-lines", to_drill=to_drill)
    rest = len(totals) - len(chosen)
    st.caption(
        f"{len(chosen)} of {len(totals)} services drawn on their own"
        + (f", the other {rest} summed in one line" if others and rest else "")
        + f"; {int(totals.sum()):,} calls to all {len(totals)}. "
        "Click near a point to list its events; double-click to clear the mark."
    )
    page.updated_caption(shared, "line_refresh_seconds")


live()
drill.panel(shared.engine, view.current(), page=PAGE)
