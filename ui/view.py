"""What every page shows: a time range, a region/account scope and a time zone, chosen once
in the sidebar and kept in the session while the user moves between pages."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import streamlit as st

from metrics.explore import EventFilter
from metrics.windows import window_start
from ui import held

RANGES = {"Last 15 minutes": 900, "Last hour": 3600, "Last 6 hours": 6 * 3600, "Last 24 hours": 86400}
CUSTOM = "Custom range"
INVALID_RANGE = "The custom range ends before it starts: choose a later end, or an earlier start, in the sidebar."


@dataclass(frozen=True)
class View:
    range_name: str
    custom: tuple[int, int] | None  # [start, end) seconds, for a custom range
    regions: tuple[str, ...]
    accounts: tuple[str, ...]
    zone: str  # "UTC" or the browser's IANA zone
    error: str = ""  # why the chosen range cannot be shown (it ends before it starts)

    @property
    def live(self) -> bool:
        return self.custom is None

    def bounds(self, now: float | None = None) -> tuple[int, int]:
        """[start, end) in seconds; a live range ends just after ``now``."""
        if self.custom is not None:
            return self.custom
        now = int(time.time() if now is None else now)
        return now - RANGES[self.range_name], now + 1

    def label(self) -> str:
        if self.custom is None:
            return self.range_name.lower()
        # The year only when it is not this one: "05 Aug 2024 11:10".
        this_year = dt.datetime.now(dt.UTC).year
        start, end = (
            self.text(s, "%d %b %H:%M" if pd.Timestamp(s, unit="s").year == this_year else "%d %b %Y %H:%M")
            for s in self.custom
        )
        return f"{start} to {end} {self.zone_abbreviation}"

    def filter(self, now: float | None = None, step: int | None = None, **criteria) -> EventFilter:
        """The events of the view; with ``step``, exactly those of the metric windows of that
        length the view shows (every window overlapping the range), so counts and events agree."""
        start, end = self.bounds(now)
        if step:
            start, end = window_start(start, step), window_start(end - 1, step) + step
        return EventFilter(start=start, end=end, regions=self.regions, accounts=self.accounts, **criteria)

    @property
    def scoped(self) -> bool:
        return bool(self.regions or self.accounts)

    # -- time display ------------------------------------------------------------------------
    def wall(self, times: pd.Series) -> pd.Series:
        """UTC timestamps as the wall-clock time of the chosen zone, still typed UTC, so that a
        chart drawing in UTC shows that zone's clock (daylight saving included)."""
        if self.zone == "UTC":
            return times
        return times.dt.tz_convert(self.zone).dt.tz_localize(None).dt.tz_localize("UTC")

    def text(self, seconds: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        """An instant (epoch seconds) as the wall clock of the chosen zone."""
        return dt.datetime.fromtimestamp(seconds, ZoneInfo(self.zone)).strftime(fmt)

    def iso(self, times: pd.Series) -> pd.Series:
        """UTC timestamps as text in the chosen zone with its offset, as a file should carry
        them: '2026-11-27T11:17:40+01:00'."""
        local = times if self.zone == "UTC" else times.dt.tz_convert(self.zone)
        text = local.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        return text.str.replace(r"([+-]\d\d)(\d\d)$", r"\1:\2", regex=True)

    @property
    def zone_abbreviation(self) -> str:
        """'UTC', 'CET', 'JST': short enough for a caption."""
        return "UTC" if self.zone == "UTC" else dt.datetime.now(ZoneInfo(self.zone)).strftime("%Z")

    @property
    def zone_title(self) -> str:
        if self.zone == "UTC":
            return "UTC"
        offset = dt.datetime.now(ZoneInfo(self.zone)).strftime("%z")
        return f"{self.zone}, UTC{offset[:3]}:{offset[3:]}"


def _zone(name: str | None) -> str | None:
    try:
        return name if name and ZoneInfo(name) else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def browser_zone() -> str | None:
    """The browser's IANA time zone, when it sent a valid one."""
    return _zone(st.context.timezone)


def current() -> View:
    """The view chosen in the sidebar (defaults before the sidebar has rendered). Times are
    shown in the browser's zone unless the user switches to UTC."""
    state = st.session_state
    range_name = state.get("view_range", "Last hour")
    custom = state.get("view_custom") if range_name == CUSTOM else None
    zone = browser_zone() if state.get("view_local_time", True) else None
    # A custom range that ends before it starts shows nothing rather than the last hour.
    error = INVALID_RANGE if range_name == CUSTOM and custom is None else ""
    return View(
        range_name if range_name in RANGES else "Last hour",
        custom,
        tuple(state.get("view_regions", ())),
        tuple(state.get("view_accounts", ())),
        zone or "UTC",
        error,
    )


ZOOM = "view_zoom"  # a range dragged on a chart, applied before the sidebar's widgets exist


def zoom_to(start: int, end: int) -> None:
    """Makes [start, end) the custom range of every page, from the next run on."""
    st.session_state[ZOOM] = (start, end)
    st.rerun(scope="app")  # the whole app: the sidebar shows the new range


def _apply_zoom() -> None:
    pending = st.session_state.pop(ZOOM, None)
    if pending is None:
        return
    state, zone = st.session_state, ZoneInfo(current().zone)
    state["view_range"], state["view_custom"] = CUSTOM, pending
    for prefix, seconds in (("view_from", pending[0]), ("view_to", pending[1])):
        wall = dt.datetime.fromtimestamp(seconds, zone).replace(tzinfo=None)
        state[f"{prefix}_day"], state[f"{prefix}_time"] = wall.date(), wall.time()


def default_to_data(span: tuple[int, int] | None, now: float | None = None) -> None:
    """A session's first range: where the data is. When the newest event is older than the
    default live range (history read from files or S3), a custom range over the events held,
    so that the first page shows them instead of an empty last hour."""
    state = st.session_state
    if "view_range" in state or span is None:
        return
    now = time.time() if now is None else now
    first, last = span
    if last >= now - RANGES["Last hour"]:
        return
    zone = ZoneInfo(current().zone)  # the custom range's widgets are the wall clock of the shown zone
    start = dt.datetime.fromtimestamp(first - first % 60, zone).replace(tzinfo=None)
    end = dt.datetime.fromtimestamp(last - last % 60 + 60, zone).replace(tzinfo=None)
    state["view_range"] = CUSTOM
    state["view_from_day"], state["view_from_time"] = start.date(), start.time()
    state["view_to_day"], state["view_to_time"] = end.date(), end.time()


def sidebar(regions: list[str], accounts: list[str], span: tuple[int, int] | None = None) -> View:
    """The shared controls, in the sidebar of every page. ``span``: the first and last second
    of the events held, for the first range of a session."""
    _apply_zoom()
    default_to_data(span)
    st.session_state.setdefault("view_range", "Last hour")
    with st.sidebar:
        choices = [*RANGES, CUSTOM]
        st.selectbox("Time range", choices, index=held.index("view_range", choices), key="view_range")
        if st.session_state["view_range"] == CUSTOM:
            _custom_range()
        for label, options, key, everything in (
            ("Regions", regions, "view_regions", "All regions"),
            ("Accounts", accounts, "view_accounts", "All accounts"),
        ):
            st.multiselect(label, options, default=held.chosen(key, options), key=key, placeholder=everything)
        zone = browser_zone()
        st.toggle(
            f"Show local time ({zone})" if zone else "Show local time",
            value=held.value("view_local_time", True),
            key="view_local_time",
            disabled=zone is None or zone == "UTC",
            help="Times are shown in your browser's time zone. Switch off for UTC, CloudTrail's own.",
        )
    return current()


def capped_range(start: int, end: int, now: int, longest: int) -> tuple[int, int, str | None]:
    """A custom [start, end) cut to what can hold events: nothing after ``now``, nothing more
    than ``longest`` seconds (the retention) before its end; with the message that says so."""
    notes = []
    if end > now + 1:
        end = max(now + 1, start + 1)
        notes.append("it ends now: no event comes from the future")
    if end - start > longest:
        start = end - longest
        notes.append(f"it covers at most the {longest // 3600:,} h of events kept in memory")
    return start, end, ("The range was shortened: " + "; ".join(notes) + ".") if notes else None


def _custom_range() -> None:
    """From and to, entered as the wall clock of the zone the times are shown in."""
    shown = current()
    zone = ZoneInfo(shown.zone)
    now = dt.datetime.now(zone).replace(second=0, microsecond=0, tzinfo=None)
    state = st.session_state
    # Defaults through the session, so that a range set elsewhere (the data's span, a zoom, a
    # link) is what the widgets hold; value= repeats it for the browser (ui/held.py).
    state.setdefault("view_from_day", (now - dt.timedelta(hours=1)).date())
    state.setdefault("view_from_time", (now - dt.timedelta(hours=1)).time())
    state.setdefault("view_to_day", now.date())
    state.setdefault("view_to_time", now.time())
    start_day = st.date_input(f"From ({shown.zone})", value=state["view_from_day"], key="view_from_day")
    start_time = st.time_input("From time", value=state["view_from_time"], key="view_from_time")
    end_day = st.date_input(f"To ({shown.zone})", value=state["view_to_day"], key="view_to_day")
    end_time = st.time_input("To time", value=state["view_to_time"], key="view_to_time")
    start = dt.datetime.combine(start_day, start_time, zone)
    end = dt.datetime.combine(end_day, end_time, zone)
    if end <= start:
        st.error("The range must end after it starts.")  # the page says so too, and shows nothing
        st.session_state["view_custom"] = None
        return
    from ui.runtime import runtime  # the retention is a setting of the running app

    first, last, note = capped_range(
        int(start.timestamp()), int(end.timestamp()), int(time.time()), runtime().settings["retention_hours"] * 3600
    )
    if note:
        st.info(note)
    st.session_state["view_custom"] = (first, last)
