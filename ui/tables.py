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


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as formulas get a leading apostrophe (OWASP's
    advice against CSV injection); the JSON download keeps every value exact."""

    def defuse(value):
        return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value

    return frame.apply(lambda column: column.map(defuse) if pd.api.types.is_string_dtype(column) else column)


def to_csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    spreadsheet_safe(frame).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def to_json(frame: pd.DataFrame) -> bytes:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return orjson.dumps(records, option=orjson.OPT_INDENT_2)


def raw_json(engine: Engine, event_ids: list[str]) -> bytes:
    """The shown events' full CloudTrail records, as a trail file."""
    records = [orjson.Fragment(raw) for raw in engine.buffer.raw_records(event_ids) if raw is not None]
    return orjson.dumps({"Records": records})


def events_table(engine: Engine, frame: pd.DataFrame, view: View, *, key: str, limit: int = 1000) -> None:
    """A table of the newest matching events; selecting a row shows its full record."""
    total = len(frame)
    shown = rows(frame, view, limit)
    note = f"{total:,} matching event{'s' if total != 1 else ''}"
    note += f"; the newest {limit:,} are shown." if total > limit else "."
    st.caption(f"{note} Times in {view.zone_title}. Select a row to see its full record.")
    state = st.dataframe(
        shown,
        key=key,
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        height=min(420, 38 + 35 * max(len(shown), 1)),
        column_config={
            "Time": st.column_config.TextColumn(f"Time ({view.zone_abbreviation})", help=view.zone_title),
            "Read-only": st.column_config.CheckboxColumn("Read-only"),
        },
    )
    picked = state.selection.rows if state else []
    left, middle, right, _ = st.columns([1, 1, 1.4, 3])
    stem = f"events-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%SZ}"
    # Callables: a file is built only when its button is pressed.
    left.download_button(
        "CSV",
        lambda: to_csv(rows(frame, view, limit, for_file=True)),
        f"{stem}.csv",
        "text/csv",
        key=f"{key}-csv",
        icon=":material/download:",
    )
    middle.download_button(
        "JSON",
        lambda: to_json(rows(frame, view, limit, for_file=True)),
        f"{stem}.json",
        "application/json",
        key=f"{key}-json",
        icon=":material/download:",
    )
    right.download_button(
        "Raw records",
        lambda: raw_json(engine, shown["Event ID"].tolist()),
        f"{stem}-records.json",
        "application/json",
        key=f"{key}-raw",
        icon=":material/download:",
        help="The full CloudTrail records of the events shown, as a trail file.",
    )
    if picked and picked[0] < len(shown):
        event_id = shown["Event ID"].iloc[picked[0]]
        raw = engine.buffer.raw_record(event_id)
        st.subheader("Full record")
        if raw is None:
            st.info("This event has left the buffer (older than the retention period).")
        else:
            st.json(orjson.loads(raw), expanded=2)
