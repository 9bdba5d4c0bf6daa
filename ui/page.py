"""What every page module starts with, and the auto-refreshing parts of a page."""

from __future__ import annotations

import functools
import time

import pandas as pd
import streamlit as st

from metrics.explore import bin_seconds
from ui import colors, data, login, view
from ui.runtime import Runtime, runtime

SUCCESS = "Succeeded"
FAILED = "Failed"
LINE_POINTS = 100  # bins at most on a chart of several lines: 1 min bins for an hour, 15 min for a day


def start(title: str, about: str, *, uses_range: bool = True) -> tuple[Runtime, view.View]:
    """Refuses an anonymous session, then titles the page. Returns the shared runtime and
    the view chosen in the sidebar; a page that draws the range stops at an invalid one."""
    login.require_user()
    st.title(title)
    st.caption(about)
    current = view.current()
    if current.error and uses_range:
        st.error(current.error)
        st.stop()
    return runtime(), current


def refreshing(setting: str):
    """Decorator: the function becomes a fragment re-run every ``settings[setting]`` seconds
    (line charts and bar charts have their own pace), and it stops showing data as soon as
    the session has been signed out elsewhere."""

    def wrap(function):
        @st.fragment(run_every=runtime().settings[setting])
        @functools.wraps(function)
        def run(*args, **kwargs):
            if not login.session_still_valid():
                st.rerun(scope="app")
            # Per view too: a new range or scope is a first draw again, slow over months.
            drawn = f"drawn:{function.__module__}.{function.__name__}:{view.current()!r}"
            if st.session_state.get(drawn):
                return function(*args, **kwargs)
            # The first draw of a long range takes a moment: say so at once, not a blank page.
            # Refreshes keep the previous chart on screen instead.
            with busy("Computing the charts for this range…"):
                result = function(*args, **kwargs)
            st.session_state[drawn] = True
            return result

        return run

    return wrap


def busy(text: str = "Reading the events…"):
    """A spinner with the time it has taken, shown at once, around the slow part of a page that
    is not a refreshing fragment (the explorer, a drill-down)."""
    return st.spinner(text, show_time=True)


def now() -> int:
    return int(time.time())


def bin_for(current: view.View, step: int, at: int, points: int = 400) -> int:
    """The chart's bin for the view's range: ``points`` bins at most (line charts with many
    series ask for fewer, coarser ones, so that each line stays readable)."""
    start, end = current.bounds(at)
    return bin_seconds(end - start, step, points)


def colors_for(kind: str, names) -> dict[str, str]:
    """The session's colours for series of one kind (``"service"``, ``"ip"``, ``"outcome"``):
    a series keeps its colour on every page and through every refresh of the session.
    Outcomes: success in its fixed blue, overall failure red, each error code its own warm colour."""
    key = f"colors:{kind}"
    if key not in st.session_state:
        if kind == "outcome":
            st.session_state[key] = colors.error_palette(SUCCESS, FAILED)
        else:
            st.session_state[key] = colors.series_palette()
    return st.session_state[key].of(names)


def updated_caption(shared: Runtime, setting: str) -> None:
    health = shared.collector.health
    shown = view.current()
    last = "never"
    if health.last_success:
        last = f"{shown.text(health.last_success, '%H:%M:%S')} {shown.zone_abbreviation}"
    st.caption(f"Data as of the last poll, {last}. Refreshes every {shared.settings[setting]} s.")


def dropped_text(shared: Runtime) -> str | None:
    """What the retention left out and why, with the setting that changes it; None if nothing."""
    expired, reference = shared.collector.health.expired, shared.collector.retention_reference
    if not expired:
        return None
    hours = shared.settings["retention_hours"]
    if reference is not None:
        newest = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(reference))
        why = f"they happened more than {hours:g} h before the newest event read ({newest})"
    else:
        why = f"they happened more than {hours:g} h ago"
    events = "1 event was" if expired == 1 else f"{expired:,} events were"
    return (
        f"{events} left out: {why}, the retention. Set INSIGHTS_RETENTION_HOURS higher and restart the app to "
        "keep them."
    )


def detections_backlog(shared: Runtime) -> None:
    """Where the rules are, when they are not through every event read (a start's history is
    counted first, the rules read it after) or failed to read some of it back."""
    detections = shared.detections
    if detections is None:
        return
    if detections.waiting:
        st.info(
            f"The rules are still reading the history loaded at start: {detections.waiting:,} events to go. "
            "Their detections appear here as they are read; the charts already count every event.",
            icon=":material/hourglass_top:",
        )
    if detections.lost:
        st.warning(
            f"{detections.lost:,} events of the history loaded at start were not read by the rules (they are in "
            f"the charts and the explorer): their waiting batch could not be read back ({detections.spool_error}). "
            "A restart reads every saved event through the rules again."
        )
    elif detections.spool_error:
        st.warning(
            "The history loaded at start could not wait on disk for the rules, so they read it at once and the "
            f"charts waited for them: {detections.spool_error}"
        )


def explain_empty(shared: Runtime, current: view.View, what: str = "events") -> None:
    """Why a chart has nothing to draw: no events at all yet, or none in this range and scope."""
    dropped = dropped_text(shared)
    if dropped:
        st.warning(dropped)
    failed = data.scope_error(current)
    if failed:  # Athena: the scope's own query failed
        st.warning("The windows of the regions and accounts chosen could not be counted (the reason is below).")
        st.text(failed)
    elif len(shared.engine.buffer) == 0 and shared.engine.totals.first is None:  # (Athena holds windows only)
        health = shared.collector.health
        if health.last_error:
            st.warning("No events yet: the collector's polls are failing. The Status page has the details.")
        else:
            st.info(
                f"No events yet. The collector polls every {shared.settings['poll_seconds']:g} s, and CloudTrail "
                "delivers an event within about 5 minutes of the call (15 at most)."
            )
    elif current.bounds()[0] > time.time():
        st.info(f"No {what}: {current.label()} is in the future. Choose a range that has begun in the sidebar.")
    elif (outside := _outside_data(shared, current)) is not None:
        st.info(f"No {what} in {current.label()}: {outside}. Choose a range over them in the sidebar.")
    elif current.scoped:
        st.info(f"No {what} in {current.label()} for the regions and accounts chosen in the sidebar.")
    else:
        st.info(f"No {what} in {current.label()}. Choose a longer time range in the sidebar.")


def _outside_data(shared: Runtime, current: view.View) -> str | None:
    """Where the events held are, when the range misses all of them."""
    held = data.span(shared.engine)
    if held is None:
        return None
    start, end = current.bounds()
    if start <= held[1] and held[0] < end:
        return None
    first, last = (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) for t in held)
    return f"the events held run from {first} to {last}"


def duration_text(seconds: float | None) -> str:
    """A lag as people say it: '40 s', '12 min', '5.5 h', '3 days'; '–' when unknown."""
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.0f} days"


def window_text(current: view.View, t: int, seconds: int) -> str:
    """A window as plain text in the view's zone: '2026-11-27 10:17:40 for 10 s (UTC)'."""
    start = current.wall(pd.Series([pd.Timestamp(int(t), unit="s", tz="UTC")])).iloc[0]
    length = f"{seconds // 60} min" if seconds % 60 == 0 and seconds >= 60 else f"{seconds} s"
    return f"{start:%Y-%m-%d %H:%M:%S} for {length} ({current.zone_title})"


def span_text(current: view.View, start: int, end: int) -> str:
    """[start, end) as plain text in the view's zone: '2026-11-27 10:17:10 to 10:18:20 (UTC)'."""
    first, last = current.wall(pd.Series(pd.to_datetime([int(start), int(end)], unit="s", utc=True)))
    until = f"{last:%H:%M:%S}" if last.date() == first.date() else f"{last:%Y-%m-%d %H:%M:%S}"
    return f"{first:%Y-%m-%d %H:%M:%S} to {until} ({current.zone_title})"
