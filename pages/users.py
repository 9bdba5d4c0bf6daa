"""The busiest callers: IAM users, roles (by the user behind an assumed role), root and
AWS services, with the sessions of assumed roles."""

import pandas as pd
import streamlit as st

from metrics.pumps import PUMPS_BY_NAME
from ui import charts, data, drill, page, specs, view
from ui.drill import Drill

PAGE = "users"
STEP = PUMPS_BY_NAME["CallsPerUser"].step
CALL_TIME = "%Y-%m-%d %H:%M:%S"  # with the date: a day's range spans two
# A shortened name fits its column: the grid draws on a canvas, which cuts a longer one without
# a sign (tests/e2e/test_layout_1440.py measures it).
USER_CHARS, SESSION_CHARS = 40, 32

shared, _ = page.start(
    "Users",
    "The ten callers with the most API calls. For an assumed role the user is the role and the session its "
    "session name (often the person or workload behind it).",
)


def _drill(current: view.View, at: int, **criteria) -> Drill:
    flt = current.filter(now=at, step=STEP, **criteria)
    who = criteria["users"][0]
    session = criteria.get("sessions", ("",))[0]
    of = f", session {session or '(none)'}" if "sessions" in criteria else ""
    return Drill(flt, f"Calls by {who}{of}, {page.span_text(current, flt.start, flt.end)}")


@page.refreshing("bar_refresh_seconds")
def top() -> None:
    at, current = page.now(), view.current()
    frame = data.totals(shared.engine, "CallsPerUser", current, at)
    if frame.empty:
        page.explain_empty(shared, current, "API calls")
        return
    st.subheader(f"Top 10 users, {current.label()}")
    chart = specs.shared(charts.top_bars, frame, "category", "User")
    drill.chart(
        chart,
        page=PAGE,
        key="users-top",
        to_drill=lambda p: _drill(current, at, users=(p["category"],)),  # the windows the bar counts
    )

    st.subheader("Sessions of the top users")
    leaders = frame.groupby("category", observed=True)["value"].sum().nlargest(10).index
    sessions = (
        frame[frame["category"].isin(leaders)]
        .rename(columns={"value": "calls"})
        .sort_values(["calls", "category"], ascending=[False, True], ignore_index=True)
    )
    table = pd.DataFrame(
        {
            "User": sessions["category"].map(lambda name: charts.middle(name, USER_CHARS)),
            "Session": sessions["subcategory"]
            .map(lambda name: charts.middle(name, SESSION_CHARS))
            .replace("", "(none: long-term credentials)"),
            "Calls": sessions["calls"],
            "First call": current.wall(sessions["first"]).dt.strftime(CALL_TIME),
            "Last call": current.wall(sessions["last"]).dt.strftime(CALL_TIME),
        }
    )
    state = st.dataframe(
        table,
        key="users-sessions",
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        # Widths that, with the selection column, fit the main column at 1440 px, dates included.
        column_config={
            "User": st.column_config.TextColumn("User", width=310, help="Long names shortened in the middle."),
            "Session": st.column_config.TextColumn("Session", width=250),
            "Calls": st.column_config.NumberColumn("Calls", width=75),
            "First call": st.column_config.TextColumn("First call", width=145),
            "Last call": st.column_config.TextColumn("Last call", width=145),
        },
    )
    st.caption(f"Times in {current.zone_title}, to the 10-second window. Select a row to list that session's events.")
    picked = state.selection.rows if state else []
    if picked and st.session_state.get("users-sessions-seen") != picked[0]:
        st.session_state["users-sessions-seen"] = picked[0]
        row = sessions.iloc[picked[0]]
        drill.open_from_table(
            PAGE, _drill(current, at, users=(row["category"],), sessions=(row["subcategory"] or None,))
        )
        st.rerun()
    page.updated_caption(shared, "bar_refresh_seconds")


top()
drill.panel(shared.engine, view.current(), page=PAGE)
