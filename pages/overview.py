"""Overview: call volume with its anomaly score, success against failure, and the windows
that stood out."""

import pandas as pd
import streamlit as st

from metrics.explore import EventFilter, episodes, rebin
from metrics.windows import window_start
from ui import charts, data, drill, page, specs, view
from ui.drill import Drill

PAGE = "overview"
STEP = 10

shared, _ = page.start(
    "Overview",
    "All API calls in the chosen range and scope, how many failed, and how unusual the volume is.",
)
engine, settings = shared.engine, shared.settings


def _scores(current: view.View, at: int) -> pd.DataFrame:
    """Scores up to ``score_delay_seconds`` ago: newer windows are still filling with late
    events, and scoring them would flag every live edge as a drop in volume."""
    start, end = current.bounds(at)
    return engine.scored_windows(start, min(end, at - settings["score_delay_seconds"]))


def _window_drill(current: view.View, t: int, seconds: int, **criteria) -> Drill:
    flt = current.filter(**criteria).narrowed(start=int(t), end=int(t) + seconds)
    what = {"succeeded": "Calls that succeeded", "failed": "Calls that failed"}.get(
        criteria.get("outcome", ""), "All calls"
    )
    return Drill(flt, f"{what}, window {page.window_text(current, t, seconds)}")


def _detections(current: view.View, at: int) -> pd.DataFrame | None:
    """The detections in the view's range and scope that are not suppressed, to mark on the chart."""
    if shared.detector is None:
        return None
    start, end = current.bounds(at)
    rows = [
        {"when": pd.Timestamp(hit.time, unit="s", tz="UTC"), "severity": hit.severity, "title": hit.title}
        for hit in shared.detector.hits()
        if start <= hit.time < end
        and (not current.regions or hit.region in current.regions)
        and (not current.accounts or hit.account in current.accounts)
        and not (shared.triage is not None and shared.triage.is_suppressed(hit))
    ]
    return pd.DataFrame(rows, columns=["when", "severity", "title"])


@page.refreshing("line_refresh_seconds")
def live() -> None:
    at, current = page.now(), view.current()
    seconds = page.bin_for(current, STEP, at)
    # Coarse bins straight from the per-window totals: months of 10-second rows cost seconds.
    totals = data.binned(engine, "TotalCalls", current, at, seconds)
    if totals.empty or totals["value"].sum() == 0:
        page.explain_empty(shared, current, "API calls")
        return
    dropped = page.dropped_text(shared)
    if dropped:
        st.caption(dropped)
    successes = data.binned(engine, "NumberOfSuccessfulCalls", current, at, seconds)
    calls, succeeded = int(totals["value"].sum()), int(successes["value"].sum())
    # The first tile's label holds the range, a custom one as dates: room for it uncut at 1440 px.
    tiles = st.columns([2.3, 1, 1, 1.4])
    tiles[0].metric(f"API calls, {current.label()}", f"{calls:,}")
    tiles[1].metric("Failed calls", f"{(calls - succeeded) / calls:.1%}", help="Calls whose record has an errorCode.")
    tiles[2].metric("Events in memory", f"{len(engine.buffer):,}", help="Across all regions and accounts.")
    fresh = getattr(shared.collector.source, "freshness", None)  # a pushed source measures every event's lag
    overall = fresh.summary(at)[-1:] if fresh is not None else []
    if overall:
        lag = overall[0]
        tiles[3].metric("Delivery lag, p95", f"{lag['p95']:,.1f} s", help=f"Last 15 min; median {lag['p50']:,.1f} s.")
    else:
        lag = shared.collector.health.lag_seconds
        tiles[3].metric(
            "Delivery lag of newest event",
            page.duration_text(lag),
            help="The last poll's time minus the newest eventTime it brought: history read from files shows its age.",
        )

    st.subheader("API calls and anomaly score")
    scores = _scores(current, at)
    chart = specs.shared(
        charts.activity,
        totals,
        rebin(scores, seconds, "max"),
        threshold=settings["score_threshold"],
        step=seconds,
        zone=current.zone_title,
        wall=current.wall,
        span=current.bounds(at),
        detections=_detections(current, at),
    )
    drill.chart(chart, page=PAGE, key="overview-activity", to_drill=lambda p: _window_drill(current, p["t"], seconds))
    scope_note = " The score is computed over all regions and accounts." if current.scoped else ""
    st.caption(
        f"Bars: calls per {charts.bin_label(seconds)} by the event's own time; the newest minutes fill in as "
        "CloudTrail delivers late events. Line: the Random Cut Forest score of the last 200 s of volume "
        "(dashed: the threshold, "
        f"{settings['score_threshold']:g}), drawn up to {settings['score_delay_seconds']} s ago; the forest starts "
        f"scoring after about 14 minutes of history. Dotted rules: detections, in their severity's colour. "
        f"Drag across the chart to zoom to that range.{scope_note}"
    )

    st.subheader("Succeeded and failed calls")
    outcomes = pd.concat(
        [
            successes.assign(category=page.SUCCESS),
            totals.assign(
                category=page.FAILED,
                value=totals["value"]
                - successes.set_index("window_start")["value"]
                .reindex(totals["window_start"])
                .fillna(0)
                .astype("int64")
                .to_numpy(),
            ),
        ],
        ignore_index=True,
    )
    drill.chart(
        specs.shared(
            charts.lines_by,
            outcomes,
            "category",
            "Outcome",
            step=seconds,
            zone=current.zone_title,
            wall=current.wall,
            span=current.bounds(at),
            height=240,
            colors=page.colors_for("outcome", [page.SUCCESS, page.FAILED]),
            log=True,
        ),
        page=PAGE,
        key="overview-outcomes",
        to_drill=lambda p: _window_drill(current, p["t"], seconds, outcome=p["category"].lower()),
    )
    # The episodes come from the very scores the chart above marks, in the same run: they can
    # never say all-clear while marked windows are on the chart.
    what_happened(current, at, scores)
    page.updated_caption(shared, "line_refresh_seconds")


def _score_text(score: float, threshold: float) -> str:
    """A score with enough digits not to read as the threshold it missed."""
    text = f"{score:.2f}"
    return f"{score:.4f}" if score < threshold and text == f"{threshold:.2f}" else text


def what_happened(current: view.View, at: int, scores: pd.DataFrame) -> None:
    threshold = settings["score_threshold"]
    st.subheader("What happened: the highest-scoring episodes")
    if not (scores["value"] > 0).any():
        st.info("No window has been scored in this range yet: the forest needs about 14 minutes of history.")
        return
    lookback = (engine.scorer.shingle_size - 1) * STEP
    start, end = current.bounds(at)
    # From a shingle before the range: an episode starts that far before its first high
    # window, and its calls (the key of its shared leaders) count every event it spans.
    spanned = engine.binned_totals("TotalCalls", start - lookback, end, STEP, dense_until=at)
    found = episodes(scores, spanned, threshold, step=STEP, lookback=lookback)
    totals = spanned[spanned["window_start"] >= pd.Timestamp(window_start(start, STEP), unit="s", tz="UTC")]
    if found.empty:
        best = float(scores["value"].max())
        st.success(
            f"No window reached the threshold ({threshold:g}) in {current.label()}; the highest score was "
            f"{_score_text(best, threshold)}.",
            icon=":material/check_circle:",
        )
        return
    typical = float(totals["value"].median()) if len(totals) else 0.0
    rows = []
    for episode in found.itertuples():
        # The same episodes for every session and refresh: their leaders are counted once.
        top = data.leading(
            engine, episode.start, episode.end, episode.calls, {"eventName": 2, "user": 2, "sourceIPAddress": 1}
        )
        rows.append(
            {
                "Episode": page.span_text(current, episode.start, episode.end),
                "Peak score": episode.peak,
                "Calls": episode.calls,
                "Typical calls": typical * (episode.end - episode.start) / STEP,
                "Leading APIs": ", ".join(f"{name} ({n})" for name, n in top["eventName"]),
                "Leading users": ", ".join(f"{name} ({n})" for name, n in top["user"]),
                "Leading IP": ", ".join(f"{name} ({n})" for name, n in top["sourceIPAddress"]),
            }
        )
    table = pd.DataFrame(rows)
    state = st.dataframe(
        table,
        key="overview-episodes",
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        # Widths that, with the selection column, fit the main column at 1440 px: no column hidden.
        column_config={
            "Episode": st.column_config.TextColumn(width=220),
            "Peak score": st.column_config.NumberColumn(format="%.2f", width=75),
            "Calls": st.column_config.NumberColumn(width=65),
            "Typical calls": st.column_config.NumberColumn(
                format="%.0f", help="The median calls per 10 s in the range, times the episode's length.", width=85
            ),
            "Leading APIs": st.column_config.TextColumn(width=190),
            "Leading users": st.column_config.TextColumn(width=165),
            "Leading IP": st.column_config.TextColumn(width=125),
        },
    )
    st.caption(
        f"Runs of 10-second windows scoring {threshold:g} or more, over all regions and accounts, each from the "
        f"start of its first window's {lookback + STEP} s shingle (a score judges the calls that led up to it, so "
        "the burst comes first). Select a row to list the episode's events."
    )
    picked = state.selection.rows if state else []
    if picked and st.session_state.get("overview-episodes-seen") != picked[0]:
        st.session_state["overview-episodes-seen"] = picked[0]
        episode = found.iloc[picked[0]]
        start, end = int(episode["start"]), int(episode["end"])
        description = f"All calls in all regions and accounts, {page.span_text(current, start, end)}"
        drill.open_from_table(PAGE, Drill(EventFilter(start=start, end=end), description))
        st.rerun()


live()
drill.panel(engine, view.current(), page=PAGE)
