"""The columnar CSV writer writes exactly what csv.writer writes, row by row."""

import csv
import io

import pandas as pd

from metrics.output import HEADER, csv_bytes, rows


def frame(metric: str, labels: list[str], values: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "metric": metric,
            "window_start": pd.to_datetime([1_722_587_400 + 10 * i for i in range(len(labels))], unit="s", utc=True),
            "category": labels,
            "subcategory": list(reversed(labels)),
            "value": values,
        }
    )


def by_csv_module(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADER.decode().strip().split(","), lineterminator="\n")
    writer.writerows(rows(frame))
    return buffer.getvalue().encode()


def test_labels_that_need_quoting_are_quoted_as_the_csv_module_does():
    labels = ["", "plain", "a,b", 'say "hi"', "two\nlines", "carriage\rreturn", " lead", "é🙂", "=cmd", "plain"]
    counts = frame("CallsPerUser", labels, list(range(len(labels))))
    assert csv_bytes(counts) == by_csv_module(counts)


def test_scores_are_written_rounded_to_six_places_like_python_floats():
    scores = frame("AnomalyScore", [""] * 5, [0.0, 1.23456789, 1e-07, 12345678.0, 2.5])
    assert csv_bytes(scores) == by_csv_module(scores)
    assert b",1.234568\n" in csv_bytes(scores) and b",0.0\n" in csv_bytes(scores)


def test_an_empty_frame_writes_nothing():
    assert csv_bytes(frame("TotalCalls", [], [])) == b""
