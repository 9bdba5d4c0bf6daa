"""Writing every metric of an engine for the command line, as CSV or JSON.

The forest learns the series on its own thread while the other metrics are formatted: the
pumps' rows need no score. CSV lines are built column by column with pyarrow, each distinct
label quoted once by Python's own ``csv`` module, so the text is exactly what
``csv.writer`` would write row by row.
"""

from __future__ import annotations

import csv
import io
import threading

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from metrics.engine import ANOMALY, METRIC_NAMES
from metrics.pumps import FRAME_COLUMNS

HEADER = (",".join(FRAME_COLUMNS) + "\n").encode()
# Rows formatted in one go; keeps every string array well under pyarrow's 2 GiB offsets.
SLICE_ROWS = 1_000_000


def scored_frames(engine, format_rest, forest=None) -> tuple[pd.DataFrame, list]:
    """(the anomaly frame, ``format_rest`` of each other metric's frame in name order), the
    forest learning the whole series meanwhile: in ``forest``'s process (a ``BatchForest``)
    when given, else on a thread. The caller has finished ingesting."""
    rest = [engine.metric_frame(name) for name in METRIC_NAMES if name != ANOMALY]
    if forest is not None:
        forest.send_final(engine.totals)
        formatted = [format_rest(frame) for frame in rest]
        finish_with(engine, forest)
        return engine.anomaly_frame(), formatted
    outcome: dict = {}

    def score():
        try:
            engine.finish()
            outcome["frame"] = engine.anomaly_frame()
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    scoring = threading.Thread(target=score, name="anomaly-forest")
    scoring.start()
    formatted = [format_rest(frame) for frame in rest]
    scoring.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["frame"], formatted


def finish_with(engine, forest) -> None:
    """``engine.finish()``, the scores taken from ``forest`` (after its ``send_final``) when
    its process gave them."""
    scores = forest.scores()
    if scores is not None and engine.totals.first is not None:
        engine.scorer.adopt(engine.totals.first, scores)
    else:
        engine.finish()


def write_csv(engine, out, forest=None) -> None:
    anomaly, rest = scored_frames(engine, csv_bytes, forest)
    out.write(HEADER)
    out.write(csv_bytes(anomaly))
    for part in rest:
        out.write(part)


def write_json(engine, out, forest=None) -> None:
    anomaly, rest = scored_frames(engine, rows, forest)
    out.write(orjson.dumps([row for part in [rows(anomaly), *rest] for row in part]) + b"\n")


def rows(frame: pd.DataFrame) -> list[dict]:
    """The frame's rows as dicts, values typed: a count as int, a score as float."""
    starts = frame["window_start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    out = []
    for metric, start, category, subcategory, value in zip(
        frame["metric"].tolist(),
        starts,
        frame["category"].tolist(),
        frame["subcategory"].tolist(),
        frame["value"].tolist(),
    ):
        value = round(float(value), 6) if metric == ANOMALY else int(value)
        out.append(
            {"metric": metric, "window_start": start, "category": category, "subcategory": subcategory, "value": value}
        )
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The rows of one metric's frame as CSV lines (no header)."""
    parts = []
    for start in range(0, len(frame), SLICE_ROWS):
        parts.append(_lines(frame.iloc[start : start + SLICE_ROWS]))
    return b"".join(parts)


def _lines(frame: pd.DataFrame) -> bytes:
    if not len(frame):
        return b""
    (metric,) = frame["metric"].unique()
    seconds = frame["window_start"].array.as_unit("s").asi8
    if metric == ANOMALY:
        values = pa.array([repr(round(float(v), 6)) for v in frame["value"].tolist()], pa.string())
    else:
        values = pa.array(frame["value"].to_numpy(dtype=np.int64)).cast(pa.string())
    lines = pc.binary_join_element_wise(
        _field(metric),
        _iso(seconds),
        _labels(frame["category"]),
        _labels(frame["subcategory"]),
        pc.binary_join_element_wise(values, "\n", ""),
        ",",
    )
    return _joined(lines)


def _field(text: str) -> str:
    """``text`` as the csv module writes it as one field among others."""
    if not text:
        return ""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([text])
    return buffer.getvalue()[:-1]


def _iso(seconds: np.ndarray) -> pa.Array:
    """Each second as 2024-08-02T08:30:00Z, worked out once per distinct second."""
    distinct, inverse = np.unique(seconds, return_inverse=True)
    texts = np.char.add(np.datetime_as_string(distinct.astype("datetime64[s]"), unit="s"), "Z")
    return pa.array(texts.tolist(), pa.string()).take(pa.array(inverse.ravel()))


def _labels(column: pd.Series) -> pa.Array:
    encoded = pc.dictionary_encode(pa.array(column.to_numpy(dtype=object), pa.string()))
    texts = [_field(v) for v in encoded.dictionary.to_pylist()]
    return pa.array(texts, pa.string()).take(encoded.indices)


def _joined(lines: pa.Array) -> bytes:
    """Every string of ``lines`` back to back."""
    lines = lines.cast(pa.large_string())
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return lines.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]
