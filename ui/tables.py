"""The events table shared by the explorer and every drill-down, with its downloads.

Record values go into ``st.dataframe`` and ``st.json``, which show them as text; nothing from
a record is ever passed to markdown or HTML.
"""

from __future__ import annotations

import io

import orjson
import pandas as pd
import streamlit as st

from metrics.engine import Engine
from metrics.selection import Selection
from metrics.visible import visible_frame
from ui import data, held, login
from ui.view import View

SHOWN = {
    "eventTime": "Time",
    "account": "Account",
    "awsRegion": "Region",
    "eventSource": "Service",
    "eventName": "API",
    "user": "User",
    "session": "Session",
    "sourceIPAddress": "Source IP",
    "errorCode": "Error code",
    "readOnly": "Read-only",
    "userAgent": "User agent",
    "eventID": "Event ID",
}
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def rows(frame: pd.DataFrame, view: View, limit: int | None = None, *, for_file: bool = False) -> pd.DataFrame:
    """The newest ``limit`` events (all: ``None``) as displayed: named columns, times as the
    wall clock of the view's zone; ``for_file``: times with their UTC offset, as a file read
    elsewhere needs them."""
    newest = frame.iloc[::-1] if limit is None else frame.iloc[::-1].head(limit)
    out = newest[list(SHOWN)].rename(columns=SHOWN)
    times = (
        view.iso(newest["eventTime"]) if for_file else view.wall(newest["eventTime"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    )
    out["Time"] = times.to_numpy()
    out["Service"] = out["Service"].astype(object).str.replace(".amazonaws.com", "", regex=False)
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype(object)
    return out.reset_index(drop=True)


def _defuse(value):
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as formulas get a leading apostrophe (OWASP's
    advice against CSV injection); the JSON download keeps every value exact.

    By value, in every column whatever its dtype: pandas calls a column of text with a missing
    value ``object``, not a string column, and a categorical holds text too."""
    return frame.apply(lambda column: column.astype(object).map(_defuse))


def to_csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    spreadsheet_safe(frame).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def to_json(frame: pd.DataFrame) -> bytes:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return orjson.dumps(records, option=orjson.OPT_INDENT_2)


def raw_json(engine: Engine, event_ids: list[str]) -> bytes:
    """The shown events' full CloudTrail records, as a trail file."""
    records = [orjson.Fragment(raw) for raw in data.raw_records(engine, event_ids) if raw is not None]
    return orjson.dumps({"Records": records})


PAGE_SIZE = 500
OPTIONAL = ("Session", "Read-only", "User agent", "Event ID")  # offered by the column chooser


def _record_dialog(engine: Engine, event_id: str) -> None:
    @st.dialog("Full record", width="large")
    def show() -> None:
        st.text(f"Event ID {event_id}")
        raw = data.raw_records(engine, [event_id])[0]
        if raw is None:
            st.info("This event has left the buffer (older than the retention period).")
        else:
            st.json(orjson.loads(raw), expanded=2)

    show()


def events_table(
    engine: Engine,
    events: Selection,
    view: View,
    *,
    key: str,
    page_size: int | None = None,
    choose_columns: bool = False,
    remember: str | None = None,
) -> None:
    """Every matching event, newest first, a page at a time; selecting a row opens its full
    record in a dialog. The downloads hold every match, not only the page shown.

    ``choose_columns`` offers a column chooser; ``remember`` is the session key that keeps the
    opened event (the explorer puts it in the URL)."""
    total, page_size = len(events), page_size or PAGE_SIZE
    pages = max(1, -(-total // page_size))
    number = 1
    head = st.columns([4, 1.2]) if pages > 1 else None
    if head is not None:
        number = head[1].number_input(
            f"Page (of {pages:,})", min_value=1, max_value=pages, value=1, step=1, key=f"{key}-page"
        )
    first = (number - 1) * page_size
    shown = rows(events.newest(first, page_size), view)  # only this page is made a frame
    note = f"{total:,} matching event{'s' if total != 1 else ''}"
    if pages > 1:
        note += f", newest first: {first + 1:,} to {first + len(shown):,} shown"
    (head[0] if head is not None else st).caption(
        f"{note}. Times in {view.zone_title}. Select a row to open its full record."
    )
    columns = [c for c in SHOWN.values() if c not in OPTIONAL]  # what fits 1440 px uncut
    if choose_columns:
        columns = st.multiselect(
            "Columns",
            list(SHOWN.values()),
            default=held.chosen(f"{key}-columns", list(SHOWN.values()), columns),
            key=f"{key}-columns",
            help="The columns of the table below; every field is in the full record.",
        ) or ["Time"]
    state = st.dataframe(
        visible_frame(
            shown[[c for c in columns if c in shown.columns] + ([] if "Event ID" in columns else ["Event ID"])]
        ),
        key=key,
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        height=min(420, 38 + 35 * max(len(shown), 1)),
        column_config={
            "Time": st.column_config.TextColumn(f"Time ({view.zone_abbreviation})", help=view.zone_title, width=140),
            "Read-only": st.column_config.CheckboxColumn("Read-only", width="small"),
            # Widths that, with the selection column, fit the main column at 1440 px with the
            # sidebar open (a browser test holds it).
            "Region": st.column_config.TextColumn("Region", width=95),
            "Account": st.column_config.TextColumn("Account", width=105),
            "Service": st.column_config.TextColumn("Service", width=75),
            "API": st.column_config.TextColumn("API", width=145),
            "User": st.column_config.TextColumn("User", width=145),
            "Source IP": st.column_config.TextColumn("Source IP", width=105),
            "Error code": st.column_config.TextColumn("Error code", width=100),
            **({} if "Event ID" in columns else {"Event ID": None}),
        },
    )
    picked = state.selection.rows if state else []
    left, middle, right, _ = st.columns([1.3, 1.3, 1.6, 2])
    stem = f"events-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%SZ}"
    every = f" (all {total:,})" if pages > 1 else ""
    # Callables: a file is built only when its button is pressed, for this session while it is
    # signed in (login.download).
    left.download_button(
        f"CSV{every}",
        login.download(lambda: to_csv(rows(events.frame(), view, for_file=True))),
        f"{stem}.csv",
        "text/csv",
        key=f"{key}-csv",
        icon=":material/download:",
        help="Every matching event, times with their UTC offset.",
    )
    middle.download_button(
        f"JSON{every}",
        login.download(lambda: to_json(rows(events.frame(), view, for_file=True))),
        f"{stem}.json",
        "application/json",
        key=f"{key}-json",
        icon=":material/download:",
        help="Every matching event, values exact, times with their UTC offset.",
    )
    right.download_button(
        f"Raw records{every}",
        login.download(lambda: raw_json(engine, events.event_ids())),
        f"{stem}-records.json",
        "application/json",
        key=f"{key}-raw",
        icon=":material/download:",
        help="The full CloudTrail records of every matching event, as a trail file.",
    )
    seen_key = f"{key}:opened"
    event_id = shown["Event ID"].iloc[picked[0]] if picked and picked[0] < len(shown) else None
    if event_id is None and remember and st.session_state.get(remember) != st.session_state.get(seen_key):
        event_id = st.session_state.get(remember)  # from a link: open it once
    if event_id is not None and event_id != st.session_state.get(seen_key):
        st.session_state[seen_key] = event_id
        if remember:
            st.session_state[remember] = event_id
        _record_dialog(engine, event_id)
