"""Source IP addresses: the busiest, and the busiest single address minute by minute."""

import streamlit as st

from metrics.explore import busiest_per_window
from ui import charts, colors, data, drill, page, specs, view
from ui.drill import Drill

PAGE = "ips"
STEP = 60

shared, _ = page.start(
    "Source IPs",
    "Calls per source IP address (an AWS service calling on your behalf shows as its name). Click to see the events.",
)


def _drill_range(current: view.View, at: int, ip: str) -> Drill:
    flt = current.filter(now=at, step=STEP, ips=(ip,))
    return Drill(flt, f"Calls from {ip}, {page.span_text(current, flt.start, flt.end)}")


@page.refreshing("bar_refresh_seconds")
def top() -> None:
    at, current = page.now(), view.current()
    frame = data.totals(shared.engine, "CallsPerUniqueIp", current, at)
    if frame.empty:
        page.explain_empty(shared, current, "API calls")
        return
    st.subheader(f"Top 10 source IPs, {current.label()}")
    drill.chart(
        specs.shared(charts.top_bars, frame, "category", "Source IP"),
        page=PAGE,
        key="ips-top",
        to_drill=lambda p: _drill_range(current, at, p["category"]),  # the windows the bar counts
    )
    page.updated_caption(shared, "bar_refresh_seconds")


@page.refreshing("line_refresh_seconds")
def busiest() -> None:
    at, current = page.now(), view.current()
    seconds = page.bin_for(current, STEP, at)
    # Over long ranges, the busiest address of each coarse bin: months of minutes draw nothing legible.
    frame = data.binned_metric(shared.engine, "CallsPerUniqueIp", current, at, seconds)
    if frame.empty:
        return
    st.subheader(f"Most calls by a single IP per {charts.bin_label(seconds)}, {current.label()}")
    peaks = busiest_per_window(frame)

    def to_drill(point: dict) -> Drill:
        t, ip = int(point["t"]), point["category"]
        flt = current.filter(ips=(ip,)).narrowed(start=t, end=t + seconds)
        return Drill(flt, f"Calls from {ip}, window {page.window_text(current, t, seconds)}")

    drill.chart(
        specs.shared(
            charts.busiest_line,
            peaks,
            step=seconds,
            zone=current.zone_title,
            wall=current.wall,
            span=current.bounds(at),
            colors=page.colors_for("ip", [*charts.busiest_leaders(peaks), colors.OTHERS]),
        ),
        page=PAGE,
        key="ips-busiest",
        to_drill=to_drill,
    )
    peak = peaks.loc[peaks["value"].idxmax()]
    st.caption(
        f"Each dot is the address with the most calls in that window of {charts.bin_label(seconds)}, coloured by "
        f"address. The peak: {int(peak['value']):,} calls in one window."
    )


top()
busiest()
drill.panel(shared.engine, view.current(), page=PAGE)
