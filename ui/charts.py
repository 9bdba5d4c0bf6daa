"""Chart builders: metric frames in, ``alt.Chart`` out, no Streamlit.

Every chart carries a point selection named ``PICK`` whose fields identify what was
clicked (``t``: the window start in epoch seconds, plus the chart's category), so that a
click can open the matching events. Times are drawn as the wall clock of the chosen zone
(UTC unless the user asks for local time). Labels taken from records are plain data to
Vega, which draws them as text, never as markup.
"""

from __future__ import annotations

import functools

import altair as alt
import altair.utils.schemapi
import numpy as np
import pandas as pd

from metrics.explore import bin_seconds
from metrics.visible import vega_visible, visible
from ui import colors as palette

PICK = "pick"
ZOOM = "zoom"  # an interval dragged along the time axis: the range to zoom to
LEGEND = "legend"  # a click on a legend entry isolates that series
BLUE, RED, GREY = palette.SUCCESS, palette.FAILURE, "#9e9e9e"

# Altair's debug mode validates the whole chart again at every step that builds it (each mark,
# encoding, layer and property): most of a page's chart time. The finished spec's validation is
# left to the tests (``unvalidated`` below).
altair.utils.schemapi.disable_debug_mode()
# Layering a chart with a selection lifts the selection to the top, and Altair validates each
# lifted parameter's dict against the whole schema on the way: 4.8 % of the server's samples
# in a py-spy of ``bench.soak``, repeated at every new poll ("Overview, params validated" in
# ``bench.pages``). The finished spec, parameters included, is validated in the tests as above.
LIFTED = (alt.SelectionParameter, alt.TopLevelSelectionParameter)
for _parameter in LIFTED:
    _parameter.to_dict = functools.partialmethod(_parameter.to_dict, validate=False)


def unvalidated(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """``chart`` whose ``to_dict`` (what Streamlit calls to send it) skips the JSON-schema
    validation of the finished spec. Under ten refreshing sessions that validation was a fifth
    of the server's script time (py-spy of ``bench.soak``), run again at every refresh on specs
    the same fixed builders make; ``tests/test_charts.py`` validates each builder's charts."""
    # An instance attribute: Altair's own __setattr__ would take it for a chart property.
    object.__setattr__(chart, "to_dict", functools.partial(type(chart).to_dict, chart, validate=False))
    return chart


def middle(text: str, limit: int = 40) -> str:
    """A long name shortened in the middle, where names differ least from their neighbours'
    ends: 'arn:aws:iam::1111…:role/deployer'. Shown with the full name in a tooltip."""
    text = str(text)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def _zoom() -> alt.Parameter:
    """Drag along x to choose a range (double-click clears it)."""
    return alt.selection_interval(name=ZOOM, encodings=["x"], clear="dblclick")


def has_zoom(chart) -> bool:
    """Whether ``chart`` (or one of its layers) carries the ``ZOOM`` interval."""
    params = [getattr(p, "name", None) for p in (getattr(chart, "params", None) or []) if p is not alt.Undefined]
    layers = getattr(chart, "layer", None) or []
    return ZOOM in params or any(has_zoom(layer) for layer in layers if layer is not alt.Undefined)


def zoomed_range(interval: dict, zone: str) -> tuple[int, int] | None:
    """The [start, end) in epoch seconds of a ``ZOOM`` selection, whose times are the wall
    clock of ``zone`` drawn as UTC (see ``timed``); whole minutes, at least one."""
    values = interval.get("when") if isinstance(interval, dict) else None
    if not values or len(values) != 2:
        return None
    wall = [pd.Timestamp(v, unit="ms") if isinstance(v, (int, float)) else pd.Timestamp(v) for v in values]
    wall = [w.tz_localize(None) if w.tzinfo is not None else w for w in wall]
    start, end = (
        int(w.tz_localize(zone, ambiguous=True, nonexistent="shift_forward").timestamp()) for w in sorted(wall)
    )
    start, end = start - start % 60, -(-end // 60) * 60
    return (start, max(end, start + 60))


def _legend() -> alt.Legend:
    """A legend whose long names are shortened in the middle, like ``middle`` (the points'
    tooltips carry the full name)."""
    return alt.Legend(
        orient="right",
        labelLimit=0,
        labelExpr="length(datum.label) > 40 ? slice(datum.label, 0, 19) + '…' + slice(datum.label, -20) : datum.label",
    )


def timed(frame: pd.DataFrame, wall=None) -> pd.DataFrame:
    """Adds ``t`` (window start, epoch seconds), ``when`` (the time drawn) and ``time``
    (its text, for tooltips, which Vega would otherwise give in the browser's zone)."""
    starts = frame["window_start"]
    when = wall(starts) if wall is not None else starts
    return frame.assign(
        t=starts.astype("datetime64[ns, UTC]").array.asi8 // 1_000_000_000,
        when=when,
        time=when.dt.strftime("%Y-%m-%d %H:%M:%S"),
    )


def zero_filled(frame: pd.DataFrame, field: str, step: int) -> pd.DataFrame:
    """Every (window, value of ``field``) from the first window to the last, zero where the
    metric had no row, so that a line drops to zero instead of bridging a quiet gap."""
    if frame.empty:
        return frame[["window_start", field, "value"]]
    times = pd.date_range(frame["window_start"].min(), frame["window_start"].max(), freq=f"{step}s")
    grid = pd.MultiIndex.from_product([times, sorted(frame[field].unique())], names=["window_start", field])
    sums = frame.groupby(["window_start", field], observed=True)["value"].sum()
    return sums.reindex(grid, fill_value=0).reset_index()


def time_format(seconds: float, year: bool = False) -> str:
    """Tick labels for a time axis over ``seconds``: the clock within a day, then the date."""
    if seconds <= 86400 + 3600:
        return "%H:%M"
    if seconds <= 7 * 86400:
        return "%d %b %H:%M"
    return "%d %b %Y" if year else "%d %b"


def _not_this_year(seconds: int) -> bool:
    return pd.Timestamp(int(seconds), unit="s").year != pd.Timestamp.now(tz="UTC").year


def _domain(span: tuple[int, int] | None, wall) -> list[str] | None:
    if span is None:
        return None
    ends = pd.Series(pd.to_datetime(list(span), unit="s", utc=True))
    return [d.isoformat() for d in (wall(ends) if wall is not None else ends)]


def _x(zone: str, span: tuple[int, int] | None = None, wall=None, data: pd.DataFrame | None = None) -> alt.X:
    """The time axis: the chosen range in full (``span``, [start, end) seconds) so that every
    page shows the same stretch of time, with dates once it covers more than a day."""
    if span is not None:
        seconds, first = span[1] - span[0], span[0]
    elif data is not None and len(data):
        seconds, first = (data["t"].max() - data["t"].min()), int(data["t"].min())
    else:
        seconds, first = 0, None
    year = first is not None and _not_this_year(first)
    domain = _domain(span, wall)
    scale = alt.Scale(type="utc", domain=domain) if domain else alt.Scale(type="utc")
    return alt.X(
        "when:T",
        scale=scale,
        axis=alt.Axis(title=f"Time ({zone})", labelOverlap=True, format=time_format(seconds, year)),
    )


def bin_label(seconds: int) -> str:
    """A bin's length as people say it: '10 s', '5 min', '1 h', '1 day'."""
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" if days == 1 else f"{days} days"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def activity(
    totals: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    threshold: float,
    step: int = 10,
    zone: str = "UTC",
    wall=None,
    span: tuple[int, int] | None = None,
    detections: pd.DataFrame | None = None,
) -> alt.LayerChart:
    """Calls per window as bars (click one to see its events), the anomaly score as a line
    on its own axis, the threshold as a dashed rule and windows above it as red dots.
    ``detections`` (``when``, ``severity``, ``title``) are marked as thin vertical rules in
    their severity's colour."""
    per = bin_label(step)
    data = (
        totals[["window_start", "value"]]
        .rename(columns={"value": "calls"})
        .merge(scores[["window_start", "value"]].rename(columns={"value": "score"}), on="window_start", how="left")
    )
    # Scores come sparse (a bin without a scored window has none): zero up to the last scored
    # bin, absent after it (the live edge is not scored yet) and before the forest's first score.
    if data["score"].notna().any():
        scored_until = data.loc[data["score"].notna(), "window_start"].max()
        data["score"] = data["score"].where(data["window_start"] > scored_until, data["score"].fillna(0.0))
    data["score"] = data["score"].where(data["score"].cummax() > 0)
    data = timed(data, wall).assign(above=lambda d: d["score"] >= threshold)
    tooltip = [
        alt.Tooltip("time:N", title=f"Window start ({zone})"),
        alt.Tooltip("calls:Q", title=f"API calls per {per}", format=","),
        alt.Tooltip("score:Q", title="Anomaly score", format=".2f"),
    ]
    # The layers share the frame given once to the whole chart: Altair converts each layer's own
    # frame to a dataset of its own, the same rows three times over.
    base = alt.Chart().encode(x=_x(zone, span, wall, data))
    pick = alt.selection_point(name=PICK, fields=["t"], on="click", clear="dblclick")
    bars = (
        base.mark_bar(color=BLUE)
        .encode(
            y=alt.Y("calls:Q", title=f"API calls per {per}"),
            opacity=alt.condition(pick, alt.value(0.55), alt.value(0.25)),
            tooltip=tooltip,
        )
        .add_params(pick, _zoom())
    )
    score_axis = alt.Y("score:Q", title="Anomaly score (RCF)", axis=alt.Axis(titleColor=RED))
    line = base.mark_line(color=RED, strokeWidth=2, point=len(data) == 1).encode(y=score_axis, tooltip=tooltip)
    marks = base.transform_filter("datum.above").mark_circle(color=RED, size=60).encode(y=score_axis, tooltip=tooltip)
    rule = (
        alt.Chart(pd.DataFrame({"score": [threshold]}))
        .mark_rule(color=RED, strokeDash=[6, 4], opacity=0.7)
        .encode(y=alt.Y("score:Q"), tooltip=[alt.Tooltip("score:Q", title="Threshold")])
    )
    calls = alt.layer(bars, _detection_rules(detections, zone, wall)) if detections is not None else bars
    # Resolution and height given to the constructor: each later call would copy the whole tree.
    return alt.layer(
        calls, alt.layer(line, marks, rule), data=data, resolve=alt.Resolve(scale={"y": "independent"}), height=300
    )


def _detection_rules(detections: pd.DataFrame, zone: str, wall) -> alt.Chart:
    shown = wall(detections["when"]) if wall is not None and len(detections) else detections["when"]
    data = detections.assign(when=shown, time=shown.dt.strftime("%Y-%m-%d %H:%M:%S") if len(detections) else [])
    return (
        alt.Chart(data)
        .mark_rule(strokeWidth=2, opacity=0.75, strokeDash=[2, 2])
        .encode(
            x=_x(zone),
            color=alt.Color(
                "severity:N",
                title="Detections",
                scale=alt.Scale(domain=list(palette.SEVERITY), range=list(palette.SEVERITY.values())),
            ),
            tooltip=[
                alt.Tooltip("time:N", title=f"Detection at ({zone})"),
                alt.Tooltip("severity:N", title="Severity"),
                alt.Tooltip("title:N", title="Detection"),
            ],
        )
    )


def lines_by(
    frame: pd.DataFrame,
    field: str,
    title: str,
    *,
    step: int = 10,
    zone: str = "UTC",
    wall=None,
    height: int = 320,
    colors: dict[str, str] | None = None,
    span: tuple[int, int] | None = None,
    log: bool = False,
) -> alt.LayerChart:
    """One line per value of ``field`` over time, zero where a value had no calls; clicking
    near a point picks its window and value (the picked point is drawn as a dot).

    ``colors`` fixes each value's colour (``ui.colors``), the lines drawn in that order, the
    last on top. ``log`` draws a symmetric-log axis, so that a few errors beside many
    successes still rise visibly off the zero line."""
    data = timed(zero_filled(frame, field, step), wall)
    per = bin_label(step)
    pick = alt.selection_point(name=PICK, fields=["t", field], on="click", nearest=True, clear="dblclick")
    shown = f"{field}_shown"  # the label as displayed (metrics.visible); the selection keeps the value
    if colors:
        drawn = [name for name in colors if name in set(data[field])]
        scale = alt.Scale(domain=[visible(name) for name in drawn], range=[colors[name] for name in drawn])
        # Vega draws the lines in the order their values first appear: the last drawn is on top.
        ranks = data[field].map({name: i for i, name in enumerate(drawn)})
        data = data.iloc[ranks.argsort(kind="stable")].reset_index(drop=True)
    else:
        scale = alt.Scale(scheme="tableau20")  # enough distinct colours that two lines rarely share one
    color = alt.Color(f"{shown}:N", title=title, scale=scale, legend=_legend())
    tooltip = [
        alt.Tooltip("time:N", title=f"Window start ({zone})"),
        alt.Tooltip(f"{shown}:N", title=title),
        alt.Tooltip("value:Q", title=f"Calls per {per}", format=","),
    ]
    y = alt.Y(
        "value:Q",
        title=f"Calls per {per}" + (" (log scale)" if log else ""),
        scale=_lifted_zero(data["value"], log),
        axis=alt.Axis(labelExpr="datum.value < 0 ? '' : datum.label"),
    )
    legend = alt.selection_point(name=LEGEND, fields=[shown], bind="legend")
    base = (
        alt.Chart()  # the frame given once to the layers (see ``activity``)
        .transform_calculate(**{shown: vega_visible(field)})
        .encode(x=_x(zone, span, wall, data), y=y, color=color)
    )
    # Straight segments: a smoothed curve invents values between windows. A single window
    # has no segment to draw, so its points show.
    lines = base.mark_line(strokeWidth=1.8, point=data["t"].nunique() == 1 if len(data) else False).encode(
        opacity=alt.when(legend).then(alt.value(1.0)).otherwise(alt.value(0.12))
    )
    points = base.mark_circle(size=40).encode(
        opacity=alt.when(pick, empty=False).then(alt.value(0.9)).otherwise(alt.value(0.0)), tooltip=tooltip
    )
    return alt.layer(lines.add_params(legend, _zoom()), points.add_params(pick), data=data, height=height)


def _lifted_zero(values: pd.Series, log: bool) -> alt.Scale:
    """The y scale starts a little below zero, so that a line at zero is drawn above the
    axis instead of on it (the labels below zero are left blank)."""
    top = float(values.max()) if len(values) else 0.0
    if log:
        return alt.Scale(type="symlog", domainMin=-0.15)
    top = max(top, 1.0)
    return alt.Scale(domain=[-top * 0.03, top * 1.05], nice=False, zero=False)


def top_bars(frame: pd.DataFrame, label: str, title: str, *, n: int = 10, keys: tuple[str, ...] = ()) -> alt.Chart:
    """The ``n`` largest totals of ``label`` as horizontal bars, largest on top. ``keys`` are
    extra columns carried into the selection (what a click on a bar means)."""
    fields = [label, *[k for k in keys if k != label]]
    totals = frame.groupby(fields, as_index=False, observed=True)["value"].sum().nlargest(n, "value")
    totals = totals.assign(shown=totals[label].map(lambda name: middle(visible(name), 36)))  # whole in the tooltip
    pick = alt.selection_point(name=PICK, fields=fields, on="click", clear="dblclick")
    shown = f"{label}_shown"  # the label as displayed (metrics.visible); the selection keeps the value
    return (
        alt.Chart(totals)
        .transform_calculate(**{shown: vega_visible(label)})
        .mark_bar(color=BLUE)
        .encode(
            x=alt.X("value:Q", title="Calls", axis=alt.Axis(format=",d")),
            y=alt.Y(
                "shown:N", sort="-x", title=title, axis=alt.Axis(labelLimit=300, labelOverlap=False, titlePadding=12)
            ),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.45)),
            tooltip=[alt.Tooltip(f"{shown}:N", title=title), alt.Tooltip("value:Q", title="Calls", format=",")],
        )
        .add_params(pick)
        .properties(height=max(120, 32 * len(totals)))
    )


def busiest_leaders(frame: pd.DataFrame, n: int = 8) -> list[str]:
    """The ``n`` IPs that lead most often, named in the legend of ``busiest_line``."""
    return sorted(frame["category"].value_counts().head(n).index)


def busiest_line(
    frame: pd.DataFrame,
    *,
    step: int = 60,
    zone: str = "UTC",
    wall=None,
    colors: dict[str, str] | None = None,
    span: tuple[int, int] | None = None,
) -> alt.LayerChart:
    """Per window, the calls of the busiest source IP: a line, and a dot coloured by which IP
    it was (``colors``: the leaders of ``busiest_leaders`` and ``ui.colors.OTHERS``)."""
    data = timed(frame, wall)
    colors = colors or {}
    data = data.assign(ip=data["category"].where(data["category"].isin(list(colors)), palette.OTHERS))
    drawn = [name for name in colors if name in set(data["ip"])]
    data = data.assign(ip=data["ip"].map(visible))
    per = bin_label(step)
    pick = alt.selection_point(name=PICK, fields=["t", "category"], on="click", nearest=True, clear="dblclick")
    base = (
        alt.Chart()  # the frame given once to the layers (see ``activity``)
        .transform_calculate(category_shown=vega_visible("category"))
        .encode(x=_x(zone, span, wall, data), y=alt.Y("value:Q", title=f"Calls per {per} by the busiest IP"))
    )
    line = base.mark_line(color=GREY, strokeWidth=1.2).add_params(_zoom())
    dots = base.mark_circle(size=45).encode(
        color=alt.Color(
            "ip:N",
            title="Source IP",
            scale=alt.Scale(domain=[visible(name) for name in drawn], range=[colors[name] for name in drawn]),
            legend=_legend(),
        ),
        tooltip=[
            alt.Tooltip("time:N", title=f"Window start ({zone})"),
            alt.Tooltip("category_shown:N", title="Source IP"),
            alt.Tooltip("value:Q", title=f"Calls per {per}", format=","),
        ],
    )
    return alt.layer(line, dots.add_params(pick), data=data, height=320)


SEVERITY_COLORS = palette.SEVERITY


def timeline_seconds(start: int, end: int, bins: int = 60) -> int:
    """The bin of the detections timeline: a human unit (1 min, 5 min, 1 h, 1 day...), ``bins`` of them at most."""
    return bin_seconds(end - start, 60, points=bins)


def severity_timeline(
    hits: pd.DataFrame, *, start: int, end: int, zone: str = "UTC", wall=None, bins: int = 60
) -> alt.Chart:
    """Detections per time bin over [start, end), stacked by severity (the most severe at the
    bottom); a click on a bar picks its bin (``t``, its start), to list that bin's hits."""
    seconds = timeline_seconds(start, end, bins)
    if len(hits):
        epoch = hits["when"].astype("datetime64[ns, UTC]").array.asi8 // 1_000_000_000
        floored = pd.Series(pd.to_datetime(epoch - epoch % seconds, unit="s", utc=True))
        frame = pd.DataFrame({"bin": floored, "severity": hits["Severity"].to_numpy()})
        data = frame.groupby(["bin", "severity"], as_index=False).size().rename(columns={"size": "detections"})
    else:
        data = pd.DataFrame({"bin": pd.Series([], dtype="datetime64[ns, UTC]"), "severity": [], "detections": []})
    shown = wall(data["bin"]) if wall is not None and len(data) else data["bin"]
    data = data.assign(when=shown, time=shown.dt.strftime("%Y-%m-%d %H:%M") if len(data) else [])
    data["order"] = data["severity"].map({s: i for i, s in enumerate(SEVERITY_COLORS)})
    data["t"] = data["bin"].astype("datetime64[ns, UTC]").array.asi8 // 1_000_000_000 if len(data) else []
    pick = alt.selection_point(name=PICK, fields=["t"], on="click", clear="dblclick")
    domain = [pd.Timestamp(t, unit="s", tz="UTC") for t in (start, end)]
    if wall is not None:
        domain = list(wall(pd.Series(domain)))
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(
                "when:T",
                scale=alt.Scale(type="utc", domain=[d.isoformat() for d in domain]),
                axis=alt.Axis(
                    title=f"Time ({zone})", format=time_format(end - start, _not_this_year(start)), labelOverlap=True
                ),
            ),
            y=alt.Y("sum(detections):Q", title=f"Detections per {bin_label(seconds)}", axis=alt.Axis(format="d")),
            color=alt.Color(
                "severity:N",
                title="Severity",
                scale=alt.Scale(domain=list(SEVERITY_COLORS), range=list(SEVERITY_COLORS.values())),
            ),
            order=alt.Order("order:Q"),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.4)),
            tooltip=[
                alt.Tooltip("time:N", title=f"From ({zone})"),
                alt.Tooltip("severity:N", title="Severity"),
                alt.Tooltip("detections:Q", title="Detections"),
            ],
        )
        .add_params(pick)
        .properties(height=200)
    )


def matches_histogram(
    times: pd.Series | np.ndarray, *, start: int, end: int, seconds: int, zone: str = "UTC", wall=None
) -> alt.Chart:
    """How many matching events (their times: a datetime series, or int64 nanoseconds) fell in
    each bin of ``seconds`` over [start, end): bars whose click picks the bin (``t``, its start in
    epoch seconds), to narrow the range to it."""
    nanoseconds = times if isinstance(times, np.ndarray) else times.astype("datetime64[ns, UTC]").array.asi8
    first = start - start % seconds
    starts = np.arange(first, end, seconds, dtype=np.int64)
    slots = (nanoseconds // 1_000_000_000 - first) // seconds
    slots = slots[(slots >= 0) & (slots < len(starts))]
    # Every bin, zero included, so that quiet stretches show as gaps.
    bins = pd.DataFrame(
        {
            "window_start": pd.to_datetime(starts, unit="s", utc=True),
            "value": np.bincount(slots, minlength=len(starts)),
        }
    )
    data = timed(bins, wall)
    per = bin_label(seconds)
    pick = alt.selection_point(name=PICK, fields=["t"], on="click", clear="dblclick")
    return (
        alt.Chart(data)
        .mark_bar(color=BLUE)
        .encode(
            x=_x(zone),
            y=alt.Y("value:Q", title=f"Matches per {per}", axis=alt.Axis(format=",d", tickCount=3)),
            opacity=alt.condition(pick, alt.value(0.85), alt.value(0.5)),
            tooltip=[
                alt.Tooltip("time:N", title=f"From ({zone})"),
                alt.Tooltip("value:Q", title="Matching events", format=","),
            ],
        )
        .add_params(pick)
        .properties(height=170)
    )
