"""Status: is the collector healthy, how far behind is it, and what did it reject."""

import time

import pandas as pd
import streamlit as st

from ui import data, page, view

shared, _ = page.start(
    "Status", "The collector's health, the buffer, and the records that could not be used.", uses_range=False
)


def _when(seconds: float | None) -> str:
    """A time as the wall clock of the zone the user chose, named."""
    if not seconds:
        return "never"
    shown = view.current()
    return f"{shown.text(seconds)} {shown.zone_abbreviation}"


def _athena(collector) -> None:
    status = getattr(collector.source, "status", None)
    if not callable(status):
        return
    info = status(time.time())
    st.subheader("Athena queries")
    if info["last_failure"]:
        st.warning(f"The last failed query: {info['last_failure']}")
    lag = info["lag_seconds"]
    st.dataframe(
        pd.DataFrame(
            {
                "Queries": [f"{info['queries']:,}"],
                "Last state": [info["last_state"] or "–"],
                "Last query scanned": [f"{info['last_bytes_scanned'] / 1e6:,.1f} MB"],
                "Scanned in all": [f"{info['bytes_scanned'] / 1e9:,.3f} GB"],
                "Cost estimate": [f"${info['cost_dollars']:,.4f}"],
                "Failed": [f"{info['failures']:,}"],
                "Throttled calls": [f"{info['throttles']:,}"],
                "Lag of the newest window": ["–" if lag is None else f"{lag:,.0f} s"],
            }
        ),
        hide_index=True,
    )
    st.caption("Cost estimate: $5 per TB scanned with a 10 MB minimum per query (Athena's price page).")
    files = info.get("new_files")
    if files is not None:
        if files["poison"]:
            st.warning(f"{files['poison']:,} queue message(s) named no log file and were deleted; the latest:")
            st.text("\n".join(files["poison_samples"]))  # message bodies: untrusted, shown as text
        st.dataframe(
            pd.DataFrame(
                {
                    "Messages": [f"{files['messages']:,}"],
                    "Log files counted": [f"{files['files']:,}"],
                    "Announced again": [f"{files['repeated']:,}"],
                    "Other objects": [f"{files['ignored']:,}"],
                    "Poison": [f"{files['poison']:,}"],
                    "Waiting for a query": [f"{files['waiting']:,}"],
                    "Failed deletes": [f"{files['delete_failures']:,}"],
                    "Files restored at the start": [f"{files.get('restored_files', 0):,}"],
                }
            ),
            hide_index=True,
        )
        if files.get("state_error"):
            st.warning("A problem with the Athena windows kept in the state folder:")
            st.text(files["state_error"])


def _athena_drills() -> None:
    """The on-demand queries (chart clicks, the explorer, detections' events) of an Athena source."""
    status = getattr(data.on_demand, "status", None)
    if not callable(status):
        return
    info = status()
    st.subheader("Athena drill-down queries")
    if info["last_error"]:
        st.warning("The last drill-down that failed (the page showed no events for it):")
        st.text(info["last_error"])  # Athena's reason may quote the filter's values: text only
    days = info["per_day"]
    st.dataframe(
        pd.DataFrame(
            {
                "Day (UTC)": [d[0] for d in days] + ["All since the start"],
                "Queries": [f"{d[1]:,}" for d in days] + [f"{info['queries']:,}"],
                "Scanned": [f"{d[2] / 1e9:,.3f} GB" for d in days] + [f"{info['bytes_scanned'] / 1e9:,.3f} GB"],
                "Cost estimate": [f"${d[3]:,.4f}" for d in days] + [f"${info['cost_dollars']:,.4f}"],
                "Failed": [f"{d[4]:,}" for d in days] + [f"{info['failures']:,}"],
            }
        ),
        hide_index=True,
    )
    if info["recent"]:
        st.caption("The last drill-down queries, newest first:")
        st.dataframe(
            pd.DataFrame(
                {
                    "Started": [_when(q["at"]) for q in info["recent"]],
                    "State": [q["state"] for q in info["recent"]],
                    "Scanned": [f"{q['bytes'] / 1e6:,.1f} MB" for q in info["recent"]],
                    "Cost estimate": [f"${q['cost']:,.4f}" for q in info["recent"]],
                    "Took": [f"{q['seconds']:,.1f} s" for q in info["recent"]],
                    "Reason": [q["reason"] or "–" for q in info["recent"]],
                }
            ),
            hide_index=True,
        )


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
    dropped = page.dropped_text(shared)
    if dropped:
        st.warning(dropped)
    tiles = st.columns(4)
    tiles[0].metric("Events in memory", f"{len(engine.buffer):,}", help=f"Kept for {settings['retention_hours']:g} h.")
    tiles[1].metric("Events collected", f"{health.events:,}")
    tiles[2].metric("Records rejected", f"{health.rejects.total:,}")
    tiles[3].metric("Failed polls", f"{health.errors:,}")

    if health.restarts:
        st.warning(
            f"The collector thread stopped {health.restarts} time(s) and was started again. Last: {health.last_death}"
        )
    st.subheader("Sources")
    sources = {
        health.source: {
            "Running": "yes" if collector.alive else "NO",
            "Polls": f"{health.polls:,}",
            "Last poll": _when(health.last_poll),
            "Last successful poll": _when(health.last_success),
            "Newest event (eventTime)": _when(health.newest_event),
            "Delivery lag at that poll": page.duration_text(health.lag_seconds),
            "New events": f"{health.events:,}",
            "Re-read after restart or overlap, kept once": f"{health.duplicates:,}",
            "Older than retention, left out": f"{health.expired:,}",
            "Failed polls": f"{health.errors:,}",
            "Last error": health.last_error or "none",
            "Last error at": _when(health.last_error_at) if health.last_error_at else "–",
        }
    }
    st.dataframe(pd.DataFrame(sources), width="stretch")
    _athena(collector)
    _athena_drills()
    _regions(collector)
    _queue(collector)
    _saved_state(collector)
    page.detections_backlog(shared)
    for name, error in dict(collector.analysis_errors).items():
        st.warning(f"The {name} analysis failed on the last poll (the events were kept): {error}")
    _alerts()
    _sigma()
    st.caption(
        "Delivery lag: the time of the last poll that brought events minus the newest eventTime in it; CloudTrail "
        "delivers within "
        "about 5 minutes, 15 at most. Events read again (a poll's overlap, a changed file read whole, the files "
        "read again after a restart) are recognised by eventID and kept once; events older than the retention "
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


def _regions(collector) -> None:
    """Per account-region detail of the CloudTrail source."""
    source = collector.source
    rows = source.region_health() if hasattr(source, "region_health") else []
    progress = source.progress() if hasattr(source, "progress") else None
    if progress is not None and progress < 1:
        st.progress(progress, text=f"Reading the look-back history, newest first: {progress:.0%}")
    details = source.details() if hasattr(source, "details") else {}
    if details:
        shown = {k: (str(v) if isinstance(v, (dict, list)) else v) for k, v in details.items()}
        st.dataframe(pd.DataFrame({"Value": shown}), width="stretch")
    if not rows:
        return
    table = pd.DataFrame(
        [
            {
                "Account": row["account"],
                "Region": row["region"],
                "State": row["state"],
                "Reason": row["reason"],
                "Backfill": row["backfill_done"],
                "Last success": _when(row["last_success"]),
                "Events last poll": row["events_last_poll"],
                "API calls": row["api_calls"],
                "Throttled": row["throttles"],
                "Retries": row["retries"],
                "Errors": row["errors"],
                "Lag p50 / p95 / max": " / ".join(page.duration_text(v) for v in row["lag_p50_p95_max"])
                if row["lag_p50_p95_max"]
                else "–",
                "Last error": row["last_error"],
            }
            for row in rows
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"Backfill": st.column_config.ProgressColumn("Backfill", min_value=0.0, max_value=1.0)},
    )
    degraded = table[table["State"] == "degraded"]
    if len(degraded):
        st.warning(f"{len(degraded)} account-region(s) degraded: retried with backoff while the others carry on.")


def _queue(collector) -> None:
    """The EventBridge source: the queue's warning, its history gaps and its freshness."""
    source = collector.source
    if not hasattr(source, "freshness"):
        return
    if source.warning:
        st.warning(source.warning)
    if source.last_error_at and time.time() - source.last_error_at < 300:
        st.warning(f"The queue failed in the last 5 minutes, retried with backoff: {source.last_error}")
    gaps = source.gaps.rows() if source.gaps is not None else []
    if gaps:
        st.subheader("History gaps")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "From": _when(gap["start"]),
                        "To": _when(gap["end"]),
                        "Why": gap["why"],
                        "State": gap["state"],
                        "Read": gap["progress"],
                        "Closed at": _when(gap["closed_at"]) if gap["closed_at"] else "–",
                        "Problem": gap["error"] or "none",
                    }
                    for gap in gaps
                ]
            ),
            hide_index=True,
            width="stretch",
            column_config={"Read": st.column_config.ProgressColumn("Read", min_value=0.0, max_value=1.0)},
        )
        if any(gap["state"] == "open" for gap in gaps):
            st.warning(
                "A stretch of history that the queue cannot hold is being read from "
                f"{shared.settings['eventbridge_backfill']}: its charts fill in as it is read."
            )
    st.subheader("Freshness")
    rows = source.freshness.summary(time.time())
    if not rows:
        st.info("No event has come through the queue in the last 15 minutes.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {"Region": r["region"], "Events": r["events"], "Median lag (s)": r["p50"], "p95 lag (s)": r["p95"]}
                for r in rows
            ]
        ),
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(format="%.1f") for c in ("Median lag (s)", "p95 lag (s)")},
    )
    st.caption(
        "Lag: the time an event reached the buffer minus its eventTime, over the events of the last 15 minutes; "
        "EventBridge usually delivers within seconds."
    )


def _alerts() -> None:
    alerter = shared.alerter
    if alerter is None:
        st.caption("Alerts: none configured (INSIGHTS_ALERT_WEBHOOK_URL, INSIGHTS_ALERT_SNS_TOPIC_ARN).")
        return
    health = alerter.health
    st.subheader("Alerts")
    tiles = st.columns(4)
    tiles[0].metric("Sent", f"{health['sent']:,}")
    tiles[1].metric("Waiting", f"{health['queued']:,}")
    tiles[2].metric("Failed", f"{health['failed']:,}")
    tiles[3].metric("Dropped", f"{health['dropped']:,}", help="Dropped when the queue overflowed, lowest first.")
    if health.get("last_error"):
        st.warning(f"The last alert delivery failed: {health['last_error']}")


def _sigma() -> None:
    """Which Sigma rules run, and which files were refused and why (never half applied)."""
    loaded = shared.sigma
    if loaded is None or not loaded.folder:
        st.caption("Sigma rules: none (INSIGHTS_SIGMA_PATH).")
        return
    st.subheader("Sigma rules")
    st.caption(f"{len(loaded.rules)} rule(s) from {loaded.folder} run beside the rule table.")
    if loaded.refused:
        st.warning(f"{len(loaded.refused)} Sigma file(s) refused: they do not run at all.")
        refused = pd.DataFrame(loaded.refused, columns=["File", "Reason"])
        st.dataframe(refused, hide_index=True, width="stretch")


def _saved_state(collector) -> None:
    store = collector.store
    if store is None:
        return
    saved = _when(store.last_saved) if store.last_saved else "not yet"
    st.caption(
        f"Saved to the state folder: {saved} (every {shared.settings['save_minutes']:g} min). "
        f"Events restored at start: {store.restored_events:,}."
    )
    if store.last_error:
        st.warning(f"Saving or restoring the state failed: {store.last_error}")


health()
