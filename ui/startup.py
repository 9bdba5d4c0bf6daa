"""The progress bar every page shows while the collector is still starting (restoring the
saved history, reading the first events) or reading an AWS look-back history."""

from __future__ import annotations

import streamlit as st

REFRESH_SECONDS = 2


def _state(shared) -> tuple[float, str] | None:
    """(share done, what is happening), or None when there is nothing to wait for."""
    collector = shared.collector
    starting = collector.starting
    if starting is not None:
        share = collector.start_progress
        shown = f" {share:.0%}" if share is not None else ""
        return share or 0.0, f"{starting}…{shown} Charts fill in as the events come in."
    share = collector.backlog_progress()
    if share is not None and share < 1:
        if hasattr(collector.source, "more"):  # files read in order, oldest first
            return share, f"Reading the history: {share:.0%}. Charts fill in as the events come in."
        return share, f"Reading the look-back history, newest first: {share:.0%}. Charts fill from now back."
    return None


def progress(shared) -> None:
    """Nothing once the collector is ready; otherwise a bar that follows it and reruns the
    whole page when the wait is over, so that every chart is drawn with the data."""
    if _state(shared) is None:
        return

    @st.fragment(run_every=REFRESH_SECONDS)
    def bar() -> None:
        state = _state(shared)
        if state is None:
            st.rerun(scope="app")
        st.progress(min(1.0, max(0.0, state[0])), text=state[1])

    bar()
