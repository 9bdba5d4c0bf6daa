"""Chart builders through ``.to_dict()``: titled axes, UTC, the click selection, labels as data."""

import pandas as pd

from ui import charts

PAYLOAD = '<img src=x onerror="alert(1)">'


def frame(rows) -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=["window_start", "category", "subcategory", "value"])
    data["window_start"] = pd.to_datetime(data["window_start"], utc=True)
    return data.assign(metric="CallsPerAPI")


def dataset(spec) -> list[dict]:
    return next(iter(spec["datasets"].values()))


def test_activity_chart_has_two_titled_axes_a_threshold_and_a_click_on_windows():
    totals = frame([("2024-08-02T08:30:00Z", "", "", 3), ("2024-08-02T08:30:10Z", "", "", 0)])
    scores = totals.assign(value=[2.5, 0.0])
    spec = charts.activity(totals, scores, threshold=1.8).to_dict()
    assert spec["resolve"]["scale"]["y"] == "independent"
    bars, scored = spec["layer"]
    assert bars["encoding"]["y"]["title"] == "API calls per 10 s"
    assert bars["encoding"]["x"]["scale"]["type"] == "utc"
    assert bars["encoding"]["x"]["axis"]["title"] == "Time (UTC)"
    assert spec["params"][0]["select"]["fields"] == ["t"]
    assert spec["params"][0]["views"] == [bars["name"]]  # a click on a bar
    line, dots, rule = scored["layer"]
    assert line["encoding"]["y"]["title"] == "Anomaly score (RCF)"
    assert dots["transform"] == [{"filter": "datum.above"}]  # windows at or over the threshold
    assert dataset(spec)[0]["t"] == 1722587400
    assert [row["above"] for row in dataset(spec)] == [True, False]
    rule_data = [d for d in spec["datasets"].values() if d and "above" not in d[0]]
    assert rule_data == [[{"score": 1.8}]]


def test_top_bars_keep_the_largest_n_and_labels_stay_data():
    rows = [("2024-08-02T08:30:00Z", f"api{i}", "", i) for i in range(15)] + [("2024-08-02T08:30:00Z", PAYLOAD, "", 99)]
    spec = charts.top_bars(frame(rows), "category", "API").to_dict()
    values = dataset(spec)
    assert len(values) == 10
    assert values[0] == {"category": PAYLOAD, "value": 99, "shown": PAYLOAD}
    assert spec["encoding"]["y"]["sort"] == "-x"
    assert spec["encoding"]["x"]["title"] == "Calls"
    assert spec["params"][0]["select"]["fields"] == ["category"]


def test_lines_by_draw_one_line_per_value_and_drop_to_zero_in_gaps():
    rows = [
        ("2024-08-02T08:30:00Z", "s3.amazonaws.com", "", 2),
        ("2024-08-02T08:30:00Z", "iam.amazonaws.com", "", 1),
        ("2024-08-02T08:30:30Z", "iam.amazonaws.com", "", 4),
    ]
    spec = charts.lines_by(frame(rows), "category", "Service").to_dict()
    lines, points = spec["layer"]
    assert lines["encoding"]["color"]["field"] == "category_shown"  # the label shown; the value is kept
    assert lines["encoding"]["y"]["title"] == "Calls per 10 s"
    assert next(p for p in spec["params"] if p["name"] == "pick")["select"]["fields"] == ["t", "category"]
    values = {(r["t"], r["category"]): r["value"] for r in dataset(spec)}
    assert len(values) == 8  # 4 windows x 2 services
    assert values[(1722587410, "iam.amazonaws.com")] == 0
    assert values[(1722587430, "iam.amazonaws.com")] == 4


def test_local_time_is_drawn_as_the_zone_wall_clock():
    totals = frame([("2024-08-02T08:30:00Z", "", "", 3)])
    from ui.view import View

    wall = View("Last hour", None, (), (), "Europe/Paris").wall
    spec = charts.activity(totals, totals.assign(value=[0.0]), threshold=1.8, zone="Europe/Paris", wall=wall).to_dict()
    row = dataset(spec)[0]
    assert row["time"] == "2024-08-02 10:30:00"
    assert row["t"] == 1722587400  # the selection keeps the true window start
    assert spec["layer"][0]["encoding"]["x"]["axis"]["title"] == "Time (Europe/Paris)"


def test_chart_labels_show_bidi_controls_as_escapes_and_clicks_keep_the_value():
    from metrics.visible import vega_visible

    rows = [("2024-08-02T08:30:00Z", "ad\u202enimda", "", 2)]
    for spec in (
        charts.top_bars(frame(rows), "category", "User").to_dict(),
        charts.lines_by(frame(rows), "category", "User").to_dict(),
    ):
        text = str(spec)
        assert {"calculate": vega_visible("category"), "as": "category_shown"} in (
            spec.get("transform") or spec["layer"][0].get("transform") or []
        ), text[:300]
        pick = next(p for p in spec["params"] if p["name"] == "pick")
        assert "category" in pick["select"]["fields"]


def test_bins_are_named_as_people_say_them():
    assert [charts.bin_label(s) for s in (10, 300, 3600, 7200, 86400, 172800)] == [
        "10 s",
        "5 min",
        "1 h",
        "2 h",
        "1 day",
        "2 days",
    ]


def test_a_time_axis_over_days_shows_dates_and_covers_the_whole_range():
    start = int(pd.Timestamp("2024-08-01T00:00:00Z").timestamp())
    rows = [("2024-08-02T08:30:00Z", "s3", "", 3), ("2024-08-02T08:31:00Z", "s3", "", 1)]
    spec = charts.lines_by(frame(rows), "category", "Service", step=60, span=(start, start + 4 * 86400)).to_dict()
    x = spec["layer"][0]["encoding"]["x"]
    assert x["axis"]["format"] == "%d %b %H:%M"
    assert x["scale"]["domain"] == ["2024-08-01T00:00:00+00:00", "2024-08-05T00:00:00+00:00"]
    month = charts.lines_by(frame(rows), "category", "Service", step=60, span=(start, start + 60 * 86400)).to_dict()
    assert month["layer"][0]["encoding"]["x"]["axis"]["format"] == "%d %b %Y"  # not this year
    hour = charts.lines_by(frame(rows), "category", "Service", step=60, span=(start, start + 3600)).to_dict()
    assert hour["layer"][0]["encoding"]["x"]["axis"]["format"] == "%H:%M"


def test_lines_are_straight_and_a_single_window_still_draws():
    one = frame([("2024-08-02T08:30:00Z", "s3", "", 3)])
    lines = charts.lines_by(one, "category", "Service").to_dict()["layer"][0]
    assert lines["mark"]["type"] == "line"
    assert "interpolate" not in lines["mark"]
    assert lines["mark"]["point"] is True
    two = frame([("2024-08-02T08:30:00Z", "s3", "", 3), ("2024-08-02T08:30:10Z", "s3", "", 1)])
    assert charts.lines_by(two, "category", "Service").to_dict()["layer"][0]["mark"]["point"] is False


def test_the_detections_timeline_over_months_uses_round_day_bins():
    start = int(pd.Timestamp("2024-07-30T00:00:00Z").timestamp())
    hits = pd.DataFrame({"when": pd.to_datetime(["2024-08-02T08:30:00Z"], utc=True), "Severity": ["high"]})
    spec = charts.severity_timeline(hits, start=start, end=start + 124 * 86400).to_dict()
    assert spec["encoding"]["y"]["title"] == "Detections per 1 day"
    assert spec["encoding"]["x"]["axis"]["format"] == "%d %b %Y"


def test_long_names_are_shortened_in_the_middle_and_kept_whole_in_the_tooltip_and_the_click():
    arn = "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/alice"
    assert charts.middle(arn) == "arn:aws:sts::111122…23456789abcdef/alice"
    assert len(charts.middle(arn)) == 40
    assert charts.middle("short") == "short"
    spec = charts.top_bars(frame([("2024-08-02T08:30:00Z", arn, "", 3)]), "category", "User").to_dict()
    assert spec["encoding"]["y"]["field"] == "shown"
    assert spec["encoding"]["tooltip"][0]["field"] == "category_shown"  # the whole name, bidi controls visible
    assert dataset(spec)[0]["category"] == arn
    assert spec["params"][0]["select"]["fields"] == ["category"]


def test_the_matches_histogram_has_every_bin_of_the_range_and_a_click_on_a_bar():
    times = pd.Series(pd.to_datetime([1722587400, 1722587401, 1722587465], unit="s", utc=True))
    spec = charts.matches_histogram(times, start=1722587400, end=1722587400 + 180, seconds=60).to_dict()
    assert [(row["t"], row["value"]) for row in dataset(spec)] == [(1722587400, 2), (1722587460, 1), (1722587520, 0)]
    assert spec["params"][0]["select"]["fields"] == ["t"]
    assert spec["encoding"]["y"]["title"] == "Matches per 1 min"


def test_time_charts_zoom_on_a_drag_and_lines_isolate_a_series_from_the_legend():
    rows = [("2024-08-02T08:30:00Z", "s3.amazonaws.com", "", 2), ("2024-08-02T08:30:00Z", "iam.amazonaws.com", "", 1)]
    lines = charts.lines_by(frame(rows), "category", "Service").to_dict()
    params = {p["name"]: p for p in lines["params"]}
    assert params["zoom"]["select"] == {"type": "interval", "encodings": ["x"], "clear": "dblclick"}
    assert params["legend"]["bind"] == "legend" and params["legend"]["select"]["fields"] == ["category_shown"]
    assert lines["layer"][0]["encoding"]["opacity"]["condition"][0]["param"] == "legend"
    totals = frame([("2024-08-02T08:30:00Z", "", "", 3)])
    activity = charts.activity(totals, totals.assign(value=[0.0]), threshold=1.8).to_dict()
    assert {p["name"] for p in activity["params"]} == {"pick", "zoom"}
    assert charts.has_zoom(charts.activity(totals, totals, threshold=1.8))
    assert not charts.has_zoom(charts.top_bars(frame(rows), "category", "Service"))


def test_a_dragged_range_is_read_back_in_true_utc_whole_minutes():
    # 17:30:20 to 18:29:50 on a Tokyo wall clock drawn as UTC: 08:30 to 09:30 UTC
    start, end = 1722619820_000, 1722623390_000
    assert charts.zoomed_range({"when": [end, start]}, "Asia/Tokyo") == (1722587400, 1722591000)
    assert charts.zoomed_range({"when": [start, start]}, "UTC") == (1722619800, 1722619860)
    assert charts.zoomed_range({}, "UTC") is None


def test_detections_are_marked_on_the_calls_chart_in_their_severity_colour():
    totals = frame([("2024-08-02T08:30:00Z", "", "", 3)])
    found = pd.DataFrame(
        {"when": pd.to_datetime(["2024-08-02T08:30:04Z"], utc=True), "severity": ["critical"], "title": [PAYLOAD]}
    )
    spec = charts.activity(totals, totals.assign(value=[0.0]), threshold=1.8, detections=found).to_dict()
    bars, rules = spec["layer"][0]["layer"]
    assert rules["mark"] == "rule" or rules["mark"]["type"] == "rule"
    assert rules["encoding"]["color"]["scale"]["range"][0] == "#8b0000"
    marked = [d for d in spec["datasets"].values() if d and "title" in d[0]]
    assert marked[0][0]["title"] == PAYLOAD  # as data, drawn as text


def test_charts_sent_unvalidated_are_the_same_spec_and_each_builder_with_every_option_is_valid(monkeypatch):
    # The app sends its charts without Altair's JSON-schema check at every refresh
    # (charts.unvalidated): this is where every builder's spec, all options on, is checked.
    rows = [("2024-08-02T08:30:00Z", "ec2.amazonaws.com", "", 3), ("2024-08-02T08:30:10Z", "s3.amazonaws.com", "", 1)]
    totals = frame(rows)
    start = 1722587400
    detections = pd.DataFrame(
        {"when": pd.to_datetime([start + 5], unit="s", utc=True), "severity": ["high"], "title": [PAYLOAD]}
    )
    hits = pd.DataFrame(
        {"when": pd.to_datetime([start, start + 3600], unit="s", utc=True), "Severity": ["high", "low"]}
    )
    built = {
        "activity": lambda: charts.activity(
            totals, totals.assign(value=[2.5, 0.0]), threshold=1.8, span=(start, start + 60), detections=detections
        ),
        "lines_by": lambda: charts.lines_by(totals, "category", "Service", log=True, span=(start, start + 60)),
        "top_bars": lambda: charts.top_bars(totals, "category", "API", keys=("category", "subcategory")),
        "busiest_line": lambda: charts.busiest_line(totals, colors={"ec2.amazonaws.com": "#1f5fa8"}),
        "severity_timeline": lambda: charts.severity_timeline(hits, start=start, end=start + 86400),
        "matches_histogram": lambda: charts.matches_histogram(
            totals["window_start"], start=start, end=start + 180, seconds=60
        ),
    }
    for name, build in built.items():
        validated = build().to_dict(validate=True)  # raises on a spec the schema refuses
        calls = []
        monkeypatch.setattr(type(build()), "validate", lambda *args, seen=calls, **kwargs: seen.append(args))
        assert charts.unvalidated(build()).to_dict() == validated, name
        assert calls == [], name
        monkeypatch.undo()
