"""Overview: call volume with its anomaly score, calls by service, the busiest APIs."""

import time

import pandas as pd
import streamlit as st

from metrics.pumps import PUMPS_BY_NAME
from metrics.windows import window_start
from ui import charts
from ui.runtime import runtime

HOUR = 3600
RECENT = 600
STEP = PUMPS_BY_NAME["TotalCalls"].step

shared = runtime()
engine, health = shared.engine, shared.collector.health

st.title("Account activity")
if shared.is_demo:
    st.info(
        "Demo data: these events come from the built-in generator (two accounts, four regions, "
        "an incident every hour at :17, :37, :47 and :52). No AWS account is read.",
        icon=":material/science:",
    )


@st.fragment(run_every=shared.settings["refresh_seconds"])
def live():
    now = int(time.time())
    start, end = now - HOUR, now + 1
    totals = engine.metric_frame("TotalCalls", start, end, dense_until=now)
    if not len(totals) or totals["value"].sum() == 0:
        st.info(
            "No events in the last hour yet. The collector polls every "
            f"{shared.settings['poll_seconds']:g} s; events appear as the source delivers them."
        )
        return
    # Both tiles sum the same windows: those starting in the last 10 minutes.
    since = pd.Timestamp(window_start(now - RECENT, STEP), unit="s", tz="UTC")
    successes = engine.metric_frame("NumberOfSuccessfulCalls", start, end, dense_until=now)
    recent = totals.loc[totals["window_start"] >= since, "value"].sum()
    successes = successes.loc[successes["window_start"] >= since, "value"].sum()
    tiles = st.columns(4)
    tiles[0].metric("API calls, last 10 min", f"{recent:,}")
    tiles[1].metric("Failed calls, last 10 min", f"{(recent - successes) / recent:.1%}" if recent else "–")
    tiles[2].metric("Events in memory", f"{len(engine.buffer):,}")
    lag = health.lag_seconds
    tiles[3].metric("Delivery lag of newest event", f"{lag:,.0f} s" if lag is not None else "–")

    st.subheader("API calls and anomaly score, last hour")
    # The newest windows are still filling with late events: scoring them would flag every
    # live edge as a drop in volume, so the score line stops short of the present.
    scores = engine.metric_frame("AnomalyScore", start, now - shared.settings["score_delay_seconds"])
    st.altair_chart(charts.activity(totals, scores), width="stretch")
    st.caption(
        "Bars: calls per 10-second window, by the event's own time; the newest minutes fill in as CloudTrail "
        "delivers late events. Line: Random Cut Forest score of the last 200 s of volume, drawn up to "
        f"{shared.settings['score_delay_seconds']} s ago; the forest starts scoring after about 14 minutes of history."
    )

    left, right = st.columns(2)
    with left:
        st.subheader("Calls by AWS service, last hour")
        services = engine.metric_frame("CallsPerServiceType", start, end)
        if len(services):
            st.altair_chart(charts.lines_by(services, "category", "Service"), width="stretch")
        st.caption(PUMPS_BY_NAME["CallsPerServiceType"].title)
    with right:
        st.subheader("Top 10 API calls, last 10 minutes")
        apis = engine.metric_frame("CallsPerAPI", now - RECENT, end)
        if len(apis):
            apis = apis.assign(
                api=apis["subcategory"] + " (" + apis["category"].str.replace(".amazonaws.com", "") + ")"
            )
            st.altair_chart(charts.top_bars(apis, "api", "API (service)"), width="stretch")
        else:
            st.info("No API calls in the last 10 minutes.")
    updated = time.strftime("%H:%M:%S UTC", time.gmtime(health.last_success)) if health.last_success else "never"
    st.caption(f"Last poll: {updated}. Refreshes every {shared.settings['refresh_seconds']} s.")
    if health.last_error:
        st.warning(f"The last poll failed: {health.last_error}")


live()
