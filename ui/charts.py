"""Chart builders: metric frames in, ``alt.Chart`` out, no Streamlit.

Times are drawn in UTC. Labels taken from records (service names, API names, users) are
plain data to Vega, which draws them as text, never as markup.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

TIME_AXIS = alt.Axis(format="%H:%M", title="Time (UTC)", labelOverlap=True)


def _time(field: str = "window_start") -> alt.X:
    return alt.X(f"{field}:T", scale=alt.Scale(type="utc"), axis=TIME_AXIS)


def _with_time_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``time`` (UTC text) for tooltips, which Vega would otherwise show in local time."""
    return frame.assign(time=frame["window_start"].dt.strftime("%Y-%m-%d %H:%M:%S UTC"))


def activity(totals: pd.DataFrame, scores: pd.DataFrame, step: int = 10) -> alt.LayerChart:
    """Calls per window as bars, the anomaly score as a line on its own axis."""
    data = (
        totals[["window_start", "value"]]
        .rename(columns={"value": "calls"})
        .merge(scores[["window_start", "value"]].rename(columns={"value": "score"}), on="window_start", how="left")
    )
    base = alt.Chart(_with_time_text(data)).encode(x=_time())
    tooltip = [
        alt.Tooltip("time:N", title="Window start"),
        alt.Tooltip("calls:Q", title=f"API calls per {step} s"),
        alt.Tooltip("score:Q", title="Anomaly score", format=".2f"),
    ]
    bars = base.mark_bar(opacity=0.45, color="#4c78a8").encode(
        y=alt.Y("calls:Q", title=f"API calls per {step} s"), tooltip=tooltip
    )
    line = base.mark_line(color="#e45756", strokeWidth=2).encode(
        y=alt.Y("score:Q", title="Anomaly score (RCF)", axis=alt.Axis(titleColor="#e45756")), tooltip=tooltip
    )
    return alt.layer(bars, line).resolve_scale(y="independent").properties(height=280)


def lines_by(frame: pd.DataFrame, field: str, title: str, step: int = 10) -> alt.Chart:
    """One line per value of ``field`` (category or subcategory) over time."""
    return (
        alt.Chart(_with_time_text(frame))
        .mark_line(point=False, interpolate="step-after")
        .encode(
            x=_time(),
            y=alt.Y("value:Q", title=f"Calls per {step} s"),
            color=alt.Color(f"{field}:N", title=title, legend=alt.Legend(orient="right", labelLimit=200)),
            tooltip=[
                alt.Tooltip("time:N", title="Window start"),
                alt.Tooltip(f"{field}:N", title=title),
                alt.Tooltip("value:Q", title="Calls"),
            ],
        )
        .properties(height=280)
    )


def top_bars(frame: pd.DataFrame, label: str, title: str, n: int = 10) -> alt.Chart:
    """The ``n`` largest totals of ``label`` as horizontal bars, largest on top."""
    totals = frame.groupby(label, as_index=False, observed=True)["value"].sum().nlargest(n, "value")
    return (
        alt.Chart(totals)
        .mark_bar(color="#4c78a8")
        .encode(
            x=alt.X("value:Q", title="Calls"),
            y=alt.Y(f"{label}:N", sort="-x", title=title, axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            tooltip=[alt.Tooltip(f"{label}:N", title=title), alt.Tooltip("value:Q", title="Calls")],
        )
        .properties(height=max(120, 30 * len(totals)))
    )
