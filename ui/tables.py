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
from metrics.visible import visible_frame
from ui import login
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


def rows(frame: pd.DataFrame, view: View, limit: int) -> pd.DataFrame:
    """The newest ``limit`` events as displayed: named columns, times in the view's zone."""
    newest = frame.iloc[::-1].head(limit)
    out = newest[list(SHOWN)].rename(columns=SHOWN)
    out["Time"] = view.wall(newest["eventTime"]).dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy()
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
        visible_frame(shown),  # bidi controls shown as escapes; the downloads keep values exact
        key=key,
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        height=min(420, 38 + 35 * max(len(shown), 1)),
        column_config={"Read-only": st.column_config.CheckboxColumn("Read-only")},
    )
    picked = state.selection.rows if state else []
    left, middle, right, _ = st.columns([1, 1, 1.4, 3])
    stem = f"events-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%SZ}"
    # Callables: a file is built only when its button is pressed, for this session while it is
    # signed in (login.download).
    left.download_button(
        "CSV",
        login.download(lambda: to_csv(shown)),
        f"{stem}.csv",
        "text/csv",
        key=f"{key}-csv",
        icon=":material/download:",
    )
    middle.download_button(
        "JSON",
        login.download(lambda: to_json(shown)),
        f"{stem}.json",
        "application/json",
        key=f"{key}-json",
        icon=":material/download:",
    )
    right.download_button(
        "Raw records",
        login.download(lambda: raw_json(engine, shown["Event ID"].tolist())),
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
