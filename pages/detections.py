"""Detections: rule hits and first-seen activity, their events, and what the analyst decided;
then the unusual activity per service, principal and error code."""

import pandas as pd
import streamlit as st

from metrics.explore import EventFilter
from metrics.visible import visible, visible_frame
from ui import charts, data, held, login, page, view
from ui.tables import events_table

SEVERITIES = ("critical", "high", "medium", "low", "info")
STATUSES = ("new", "acknowledged", "suppressed")
SORTS = {  # label: (columns, ascending)
    "Newest first": (["when"], [False]),
    "Oldest first": (["when"], [True]),
    "Most severe first": (["rank", "when"], [True, False]),
}

shared, _ = page.start(
    "Detections",
    "Rule hits (root use, logging tampering, persistence, exposure, credential access…) and first-seen activity "
    "(a new region, IP, API or client for a principal). A failed attempt still counts, marked as failed.",
)
detector, triage = shared.detector, shared.triage
user = login.require_user()
if triage.load_error:
    st.warning(triage.load_error)


def _hits_frame(current: view.View, at: int) -> pd.DataFrame:
    start, end = current.bounds(at)
    rows = []
    for hit in detector.hits():
        if not start <= hit.time < end:
            continue
        if current.regions and hit.region not in current.regions:
            continue
        if current.accounts and hit.account not in current.accounts:
            continue
        rows.append(
            {
                "id": hit.id,
                "when": pd.Timestamp(hit.time, unit="s", tz="UTC"),
                "Severity": hit.severity,
                "Detection": hit.title,
                "Principal": hit.principal or "",
                "Source IP": hit.source_ip or "",
                "Account": hit.account or "",
                "Region": hit.region or "",
                "Failed": hit.failed,
                "Events": len(hit.event_ids),
                "IaC": hit.iac,
                "Status": triage.status(hit),
                "Assignee": triage.assignee(hit.id),
                "Note": triage.note(hit.id),
                "Summary": hit.summary,
                "rule": hit.rule_id,
            }
        )
    return pd.DataFrame(rows)


@page.refreshing("bar_refresh_seconds")
def hits() -> None:
    page.detections_backlog(shared)
    at, current = page.now(), view.current()
    frame = _hits_frame(current, at)
    if frame.empty:
        if not detector.hits():
            st.success("No detection so far.", icon=":material/check_circle:")
        else:
            st.info(f"No detection in {current.label()} for this scope.")
        return
    # Pills wrap to their content: no filter is cut off at 1440 px.
    left, right = st.columns(2)
    severities = left.pills(
        "Severity", SEVERITIES, selection_mode="multi", default=list(SEVERITIES[:4]), key="det_severity"
    )
    statuses = right.pills(
        "Status", STATUSES, selection_mode="multi", default=["new", "acknowledged"], key="det_status"
    )
    left, right = st.columns([3, 1])
    rules = left.multiselect("Detection", sorted(frame["Detection"].unique()), key="det_rules", placeholder="All")
    sort = right.selectbox("Sort", list(SORTS), key="det_sort")
    shown = frame[frame["Severity"].isin(severities) & frame["Status"].isin(statuses)]
    if rules:
        shown = shown[shown["Detection"].isin(rules)]
    st.subheader(f"Timeline, {current.label()}")
    start, end = current.bounds(at)
    timeline = charts.severity_timeline(shown, start=start, end=end, zone=current.zone_title, wall=current.wall)
    shown = _picked_bin(
        st.altair_chart(
            charts.unvalidated(timeline),
            on_select="rerun",
            selection_mode=charts.PICK,
            key="det_timeline",
            width="stretch",
        ),
        shown,
        charts.timeline_seconds(start, end),
        current,
    )
    if shown.empty:
        st.info("No detection matches these filters.")
        return
    columns, ascending = SORTS[sort]
    shown = shown.assign(rank=shown["Severity"].map({s: i for i, s in enumerate(SEVERITIES)}))
    shown = shown.sort_values(columns, ascending=ascending, kind="stable").reset_index(drop=True)
    _bulk(shown)
    # The summary, account and region are in the opened panel: the rest fits 1440 px uncut.
    table = shown.drop(columns=["id", "rule", "rank", "Summary", "Account", "Region"])
    table = table.assign(when=current.wall(shown["when"]).dt.strftime("%Y-%m-%d %H:%M:%S"))
    picked = st.dataframe(
        visible_frame(table.rename(columns={"when": f"Time ({current.zone_title})"})),
        key="det_table",
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        width="stretch",
        column_config={
            "Severity": st.column_config.TextColumn(width=70),
            "Detection": st.column_config.TextColumn(width=200),
            "Principal": st.column_config.TextColumn(width=120),
            "Source IP": st.column_config.TextColumn(width=110),
            "Failed": st.column_config.CheckboxColumn(width=55),
            "Events": st.column_config.NumberColumn(width=55),
            "Status": st.column_config.TextColumn(width=100),
            "Assignee": st.column_config.TextColumn(width=90),
            "Note": st.column_config.TextColumn(width=100),
        },
    )
    st.caption(
        f"{len(shown):,} detections. Select one to see its events and decide what to do with it; "
        "select several (Ctrl or Shift and click, or the boxes on the left) to decide for them at once."
    )
    rows = [r for r in (picked.selection.rows if picked else []) if r < len(shown)]
    if rows != st.session_state.get("det_table-seen", []):
        # Positions mean rows only of the table they were picked in: keep the hits they named,
        # so that a refresh that adds or reorders rows changes nothing the analyst chose.
        before = set(st.session_state.get("det_table-seen", []))
        st.session_state["det_table-seen"] = rows
        st.session_state["det_picked"] = shown["id"].iloc[rows].tolist()
        added = [r for r in rows if r not in before]
        if added:
            st.session_state["det_open"] = shown["id"].iloc[added[-1]]
            st.rerun()  # the whole page: the selected detection's panel is outside this fragment
    _bulk_picked([h for h in st.session_state.get("det_picked", []) if h in set(frame["id"])])


def _bulk_picked(picked: list[str]) -> None:
    """One decision for the detections selected in the table."""
    if len(picked) < 2:
        return
    left, right, _ = st.columns([1, 1, 2])
    if left.button(f"Acknowledge the {len(picked)} selected", key="det_picked_ack", icon=":material/done_all:"):
        triage.acknowledge_many(picked, user)
        st.rerun(scope="app")
    label = f"Suppress the {len(picked)} selected"
    if right.button(label, key="det_picked_suppress", icon=":material/visibility_off:"):
        triage.suppress_many(picked, user)
        st.rerun(scope="app")


def _picked_bin(state, shown: pd.DataFrame, seconds: int, current: view.View) -> pd.DataFrame:
    """The hits of the timeline's clicked bar, or all of them when none is clicked."""
    points = (state.selection.get(charts.PICK) if state is not None else None) or []
    if not points:
        return shown
    t = int(points[0]["t"])
    st.caption(f"Only the bar {page.window_text(current, t, seconds)}. Double-click the timeline to see all.")
    epoch = shown["when"].astype("datetime64[ns, UTC]").array.asi8 // 1_000_000_000
    return shown[(epoch >= t) & (epoch < t + seconds)]


def _bulk(shown: pd.DataFrame) -> None:
    """One decision for every detection the filters show."""
    count = len(shown)
    with st.popover(f"Decide for all {count:,} shown", icon=":material/checklist:"):
        st.caption("Applies to every detection the filters above show, on every page of the table.")
        if st.button(f"Acknowledge all {count:,}", key="det_bulk_ack", icon=":material/done_all:"):
            triage.acknowledge_many(shown["id"].tolist(), user)
            st.rerun(scope="app")
        if st.button(f"Suppress all {count:,}", key="det_bulk_suppress", icon=":material/visibility_off:"):
            triage.suppress_many(shown["id"].tolist(), user)
            st.rerun(scope="app")


def _hit_by_id(hit_id: str):
    return next((h for h in detector.hits() if h.id == hit_id), None)


def opened() -> None:
    """The selected detection: what it means, its events, and the decisions."""
    hit = _hit_by_id(st.session_state.get("det_open", ""))
    if hit is None:
        return
    rule = next((r for r in detector.rules if r.id == hit.rule_id), None)  # the table's or a Sigma rule
    st.subheader("The selected detection")
    st.text(visible(f"{hit.title} · {hit.severity} · {hit.technique or 'no ATT&CK technique'} · {triage.status(hit)}"))
    st.text(visible(f"Account {hit.account or '(none)'} · region {hit.region or '(none)'}"))
    st.text(visible(hit.summary))
    if hit.iac:
        st.caption(f"Every event of it came from an infrastructure-as-code run ({visible(hit.iac)}).")
    if hit.tags:
        st.text(visible("Sigma tags: " + ", ".join(hit.tags)))
    if rule is not None and rule.description:
        st.caption(rule.description)
    buttons = st.columns(4)
    if buttons[0].button("Acknowledge", icon=":material/done:", disabled=hit.id in triage.acknowledged):
        triage.acknowledge(hit.id, user)
        st.rerun()
    if buttons[1].button("Suppress this hit", icon=":material/visibility_off:"):
        triage.suppress_hit(hit.id, user)
        st.rerun()
    if buttons[2].button(
        "Suppress this rule for this principal",
        icon=":material/block:",
        help="Hides this detection's hits for this principal from now on, older ones included.",
    ):
        triage.suppress_rule(hit.rule_id, hit.principal or "", user)
        st.rerun()
    if buttons[3].button("Reopen", icon=":material/undo:", disabled=triage.status(hit) == "new"):
        triage.reopen(hit.id)
        triage.lift_rule(hit.rule_id, hit.principal or "")
        st.rerun()
    with st.form(f"det_note_{hit.id}", border=True, width=760):
        st.caption("Who is on it, and what was found: kept with the decisions, for everyone.")
        who, text = st.columns([1, 3])
        assignee = who.text_input("Assignee", value=triage.assignee(hit.id), max_chars=80)
        note = text.text_area("Note", value=triage.note(hit.id), max_chars=2000, height=80)
        if st.form_submit_button("Save the note and assignee", icon=":material/save:"):
            triage.assign(hit.id, assignee, user)
            triage.set_note(hit.id, note, user)
            st.rerun()
    with page.busy("Reading its events…"):
        events = data.select_events(shared.engine, EventFilter(event_ids=tuple(hit.event_ids)))
    if events.empty:
        st.info("Its events have left the buffer (older than the retention period).")
    else:
        events_table(shared.engine, events, view.current(), key="det_events")


def suppressions() -> None:
    if not triage.suppressed_rules:
        return
    with st.expander(f"Suppressed rules ({len(triage.suppressed_rules)})"):
        for i, rule in enumerate(list(triage.suppressed_rules)):
            left, right = st.columns([5, 1])
            left.text(f"{rule['rule_id']} for {rule['principal'] or '(no principal)'}, by {rule['by']}")
            if right.button("Lift", key=f"det_lift_{i}"):
                triage.lift_rule(rule["rule_id"], rule["principal"])
                st.rerun()


@page.refreshing("bar_refresh_seconds")
def unusual() -> None:
    dimensions = shared.dimensions
    if dimensions is None:
        return
    at, current = page.now(), view.current()
    st.subheader("Unusual activity by service, principal and error code")
    start, end = current.bounds(at)
    # Only windows the source has fully delivered: newer ones are still filling with late events.
    watermark = shared.collector.source.watermark(at)
    end = min(end, int(watermark)) if watermark is not None else end
    top = dimensions.top(start, end, n=200)
    # The highest window of each series: one row per service, principal or error code.
    top = top.sort_values("score", ascending=False, kind="stable").drop_duplicates(["dimension", "key"]).head(10)
    top = top.reset_index(drop=True)
    if top.empty:
        st.info("Nothing scored yet: each series needs some history (about 20 minutes) before it is scored.")
        return
    threshold = shared.settings["score_threshold"]
    show_all = st.toggle(
        "Show series below the threshold too",
        value=held.value("det_unusual_all", False),
        key="det_unusual_all",
        help=f"By default only series whose score reached {threshold:g} (INSIGHTS_SCORE_THRESHOLD) are listed.",
    )
    if not show_all:
        top = top[top["score"] >= threshold].reset_index(drop=True)
        if top.empty:
            st.success(
                f"No service, principal or error code scored {threshold:g} or more in {current.label()}.",
                icon=":material/check_circle:",
            )
            return
    table = top.assign(window_start=current.wall(top["window_start"]).dt.strftime("%Y-%m-%d %H:%M"))
    picked = st.dataframe(
        visible_frame(table).rename(
            columns={
                "dimension": "Dimension",
                "key": "Which",
                "window_start": f"Minute ({current.zone_title})",
                "score": "Score",
                "calls": "Calls",
            }
        ),
        key="det_unusual",
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        column_config={"Score": st.column_config.NumberColumn(format="%.2f")},
    )
    st.caption("Random Cut Forest scores of each busy series per minute. Select a row to see what rose.")
    rows = picked.selection.rows if picked else []
    if rows and rows[0] < len(top):
        row = top.iloc[rows[0]]
        minute = int(row["window_start"].timestamp())
        events = data.events(shared.engine, EventFilter(start=minute - 3600, end=minute + dimensions.step))
        rose = dimensions.contributors(events, row["dimension"], row["key"], minute)
        st.text(visible(f"What rose in that minute for {row['dimension']} {row['key']}, against its usual level:"))
        st.dataframe(visible_frame(rose), hide_index=True, width="stretch")


hits()
opened()
suppressions()
unusual()
