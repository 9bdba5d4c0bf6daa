"""Status: is the collector healthy, how far behind is it, and what did it reject."""

import time

import pandas as pd
import streamlit as st

from ui import page

shared, _ = page.start("Status", "The collector's health, the buffer, and the records that could not be used.")


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds)) if seconds else "never"


@page.refreshing("line_refresh_seconds")
def health() -> None:
    collector, engine, settings = shared.collector, shared.engine, shared.settings
    health = collector.health
    if not collector.alive:
        st.error("The collector is not running: no new events arrive. Restart the app; its log says why it stopped.")
    elif health.consecutive_errors:
        st.warning(f"The last {health.consecutive_errors} polls failed; the collector retries with backoff.")
    else:
        st.success("The collector is running and its last poll succeeded.", icon=":material/check_circle:")
    tiles = st.columns(4)
    tiles[0].metric("Events in memory", f"{len(engine.buffer):,}", help=f"Kept for {settings['retention_hours']:g} h.")
    tiles[1].metric("Events collected", f"{health.events:,}")
    tiles[2].metric("Records rejected", f"{health.rejects.total:,}")
    tiles[3].metric("Failed polls", f"{health.errors:,}")

    st.subheader("Sources")
    sources = {
        health.source: {
            "Running": "yes" if collector.alive else "NO",
            "Polls": f"{health.polls:,}",
            "Last poll": _when(health.last_poll),
            "Last successful poll": _when(health.last_success),
            "Newest event (eventTime)": _when(health.newest_event),
            "Delivery lag at that poll": "–" if health.lag_seconds is None else f"{health.lag_seconds:,.0f} s",
            "New events": f"{health.events:,}",
            "Duplicates left out": f"{health.duplicates:,}",
            "Older than retention, left out": f"{health.expired:,}",
            "Failed polls": f"{health.errors:,}",
            "Last error": health.last_error or "none",
            "Last error at": _when(health.last_error_at) if health.last_error_at else "–",
        }
    }
    st.dataframe(pd.DataFrame(sources), width="stretch")
    st.caption(
        "Delivery lag: the time of the last poll that brought events minus the newest eventTime in it; CloudTrail "
        "delivers within "
        "about 5 minutes, 15 at most. Duplicates (the same eventID twice) and events older than the retention "
        "period are counted and left out."
    )

    st.subheader("Rejected records")
    summary = health.rejects.summary()
    if not summary:
        st.info("No record has been rejected.")
    else:
        st.dataframe(pd.DataFrame(summary, columns=["Reason", "Records"]), hide_index=True)
        st.caption("The latest rejected records, newest first, cut to 300 characters:")
        samples = pd.DataFrame(health.rejects.latest()[::-1]).rename(
            columns={"reason": "Reason", "origin": "Where", "sample": "Record (as text)"}
        )
        st.dataframe(samples, hide_index=True, width="stretch")

    st.subheader("Anomaly scoring")
    scorer = engine.scorer
    learned = 0 if scorer.start is None else (scorer.next - scorer.start) // scorer.step
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Engine": settings["anomaly_engine"],
                    "Windows learned": learned,
                    "Learned up to": _when(scorer.next) if scorer.next else "nothing yet",
                    "Score threshold": settings["score_threshold"],
                    "Scores drawn up to (s ago)": settings["score_delay_seconds"],
                }
            ]
        ),
        hide_index=True,
    )
    page.updated_caption(shared, "line_refresh_seconds")


health()
