import pandas as pd

from ui import charts

PAYLOAD = '<img src=x onerror="alert(1)">'


def frame(rows) -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=["window_start", "category", "subcategory", "value"])
    data["window_start"] = pd.to_datetime(data["window_start"], utc=True)
    return data.assign(metric="CallsPerAPI")


def test_activity_chart_has_two_titled_axes_in_utc():
    totals = frame([("2024-08-02T08:30:00Z", "", "", 3), ("2024-08-02T08:30:10Z", "", "", 0)])
    scores = totals.assign(value=[0.5, 0.0])
    spec = charts.activity(totals, scores).to_dict()
    assert spec["resolve"]["scale"]["y"] == "independent"
    bars, line = spec["layer"]
    assert bars["encoding"]["y"]["title"] == "API calls per 10 s"
    assert line["encoding"]["y"]["title"] == "Anomaly score (RCF)"
    assert bars["encoding"]["x"]["scale"]["type"] == "utc"
    assert bars["encoding"]["x"]["axis"]["title"] == "Time (UTC)"


def test_top_bars_keep_the_largest_n_and_labels_stay_data():
    rows = [("2024-08-02T08:30:00Z", f"api{i}", "", i) for i in range(15)] + [("2024-08-02T08:30:00Z", PAYLOAD, "", 99)]
    spec = charts.top_bars(frame(rows), "category", "API").to_dict()
    values = next(iter(spec["datasets"].values()))
    assert len(values) == 10
    assert values[0] == {"category": PAYLOAD, "value": 99}
    assert spec["encoding"]["y"]["sort"] == "-x"
    assert spec["encoding"]["x"]["title"] == "Calls"


def test_lines_by_draw_one_line_per_value():
    rows = [("2024-08-02T08:30:00Z", "s3.amazonaws.com", "", 2), ("2024-08-02T08:30:00Z", "iam.amazonaws.com", "", 1)]
    spec = charts.lines_by(frame(rows), "category", "Service").to_dict()
    assert spec["encoding"]["color"]["field"] == "category"
    assert spec["encoding"]["y"]["title"] == "Calls per 10 s"
