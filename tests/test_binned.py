"""Coarse bins read straight from the per-window totals, and sparse scores: the same numbers as
the dense 10-second frames, without a row per window of a months-long range."""

import pandas as pd

from metrics.explore import rebin
from tests.conftest import batch_of, make_record

T0 = 1_722_587_400  # 2024-08-02T08:30:00Z, a multiple of 3600


def stamp(offset: int) -> str:
    return pd.Timestamp(T0 + offset, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def test_binned_totals_sum_each_bin_and_fill_quiet_bins_with_zero(engine):
    # 3 calls in the first minute, none in the second, 2 in the third (one failed), 1 a day later.
    offsets = [0, 15, 59, 125, 130, 86_400 + 5]
    records = [make_record(f"e{i}", stamp(o)) for i, o in enumerate(offsets)]
    records[4]["errorCode"] = "AccessDenied"
    engine.ingest(batch_of(records))
    frame = engine.binned_totals("TotalCalls", T0, T0 + 180, 60)
    assert frame["value"].tolist() == [3, 0, 2]
    assert frame["window_start"].tolist() == list(pd.to_datetime([T0, T0 + 60, T0 + 120], unit="s", utc=True))
    succeeded = engine.binned_totals("NumberOfSuccessfulCalls", T0, T0 + 180, 60)
    assert succeeded["value"].tolist() == [3, 0, 1]
    whole = engine.binned_totals("TotalCalls", T0, T0 + 2 * 86_400, 86_400)
    assert whole["value"].tolist() == [5, 1]  # the dense series ends with the last event's window
    dense = rebin(engine.metric_frame("TotalCalls", T0, T0 + 2 * 86_400), 3600)
    coarse = engine.binned_totals("TotalCalls", T0, T0 + 2 * 86_400, 3600)
    pd.testing.assert_frame_equal(coarse.reset_index(drop=True), dense.reset_index(drop=True), check_dtype=False)


def test_scored_windows_are_the_dense_scores_above_zero(engine):
    records = [make_record(f"e{i}", stamp(10 * i)) for i in range(200)]
    records += [make_record(f"burst{i}", stamp(1500)) for i in range(60)]
    engine.ingest(batch_of(records))
    engine.finish()
    dense = engine.metric_frame("AnomalyScore", T0, T0 + 2000)
    sparse = engine.scored_windows(T0, T0 + 2000)
    expected = dense[dense["value"] > 0].reset_index(drop=True)
    assert len(sparse) == len(expected) > 0
    assert sparse["window_start"].tolist() == expected["window_start"].tolist()
    assert sparse["value"].tolist() == expected["value"].tolist()
