"""EC2: successful calls and each error code over time."""

import streamlit as st

from metrics.explore import NO_ERROR
from metrics.pumps import EC2
from ui import charts, data, drill, page, specs, view
from ui.drill import Drill

PAGE = "ec2"
STEP = 10
SUCCESS = page.SUCCESS

shared, _ = page.start("EC2", "Calls to EC2: a line for the calls that succeeded and one per error code.")


@page.refreshing("line_refresh_seconds")
def live() -> None:
    at, current = page.now(), view.current()
    seconds = page.bin_for(current, STEP, at, points=page.LINE_POINTS)
    frame = data.binned_metric(shared.engine, "EC2Calls", current, at, seconds)
    if frame.empty:
        page.explain_empty(shared, current, "EC2 calls")
        return
    frame = frame.assign(outcome=frame["subcategory"].replace("", SUCCESS))
    st.subheader(f"EC2 calls by outcome, {current.label()}")

    def to_drill(point: dict) -> Drill:
        code = point["outcome"]
        t = int(point["t"])
        flt = current.filter(services=(EC2,), error_codes=(NO_ERROR if code == SUCCESS else code,))
        what = "that succeeded" if code == SUCCESS else f"failing with {code}"
        return Drill(
            flt.narrowed(start=t, end=t + seconds), f"EC2 calls {what}, window {page.window_text(current, t, seconds)}"
        )

    # Success first, so that the error codes are drawn over it.
    names = [SUCCESS, *sorted(set(frame["outcome"]) - {SUCCESS})]
    drill.chart(
        specs.shared(
            charts.lines_by,
            frame,
            "outcome",
            "Outcome",
            step=seconds,
            zone=current.zone_title,
            wall=current.wall,
            span=current.bounds(at),
            colors=page.colors_for("outcome", names),
            log=True,
        ),
        page=PAGE,
        key="ec2-lines",
        to_drill=to_drill,
    )
    totals = frame.groupby("outcome", observed=True)["value"].sum()
    failed = int(totals.drop(SUCCESS, errors="ignore").sum())
    st.caption(f"{int(totals.sum()):,} EC2 calls, {failed:,} with an error code.")
    page.updated_caption(shared, "line_refresh_seconds")


live()
drill.panel(shared.engine, view.current(), page=PAGE)
