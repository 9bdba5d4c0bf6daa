"""One colour per meaning and one steady colour per series, through the palette and the
chart specs (``.to_dict()``)."""

import pandas as pd

from ui import charts, colors


def frame(rows) -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=["window_start", "category", "subcategory", "value"])
    data["window_start"] = pd.to_datetime(data["window_start"], utc=True)
    return data.assign(metric="CallsPerServiceType")


def scale_of(spec) -> dict[str, str]:
    scale = spec["layer"][0]["encoding"]["color"]["scale"]
    return dict(zip(scale["domain"], scale["range"]))


def test_a_series_keeps_its_colour_when_another_is_added_or_the_order_changes():
    palette = colors.series_palette()
    first = palette.of(["s3.amazonaws.com", "iam.amazonaws.com"])
    later = palette.of(["kms.amazonaws.com", "iam.amazonaws.com", "s3.amazonaws.com", "sts.amazonaws.com"])
    assert later["s3.amazonaws.com"] == first["s3.amazonaws.com"]
    assert later["iam.amazonaws.com"] == first["iam.amazonaws.com"]
    assert len(set(later.values())) == 4  # free colours first: no two series share one


def test_the_same_names_get_the_same_colours_in_every_session():
    names = [f"service{i}" for i in range(6)]
    assert colors.series_palette().of(names) == colors.series_palette().of(names)


def test_when_every_colour_is_taken_a_series_shares_rather_than_fails():
    palette = colors.series_palette()
    many = palette.of([f"ip{i}" for i in range(len(colors.SERIES_COLORS) + 3)])
    assert set(many.values()) == set(colors.SERIES_COLORS)


def test_success_failure_others_and_severities_have_fixed_colours_never_given_to_a_series():
    outcome = colors.error_palette("Succeeded", "Failed")
    assert outcome.of(["Succeeded", "Failed"]) == {"Succeeded": colors.SUCCESS, "Failed": colors.FAILURE}
    assert colors.SUCCESS not in colors.ERROR_COLORS
    assert colors.series_palette().color(colors.OTHERS) == colors.OTHER
    assert colors.SUCCESS not in colors.SERIES_COLORS and colors.FAILURE not in colors.SERIES_COLORS
    assert colors.OTHER not in colors.SERIES_COLORS
    assert charts.SEVERITY_COLORS is colors.SEVERITY


def test_a_line_chart_uses_the_given_colours_whatever_order_the_rows_come_in():
    rows = [
        ("2024-08-02T08:30:00Z", "sts.amazonaws.com", "", 2),
        ("2024-08-02T08:30:00Z", "s3.amazonaws.com", "", 1),
    ]
    given = {"s3.amazonaws.com": "#54a24b", "sts.amazonaws.com": "#f58518"}
    forward = charts.lines_by(frame(rows), "category", "Service", colors=given).to_dict()
    backward = charts.lines_by(frame(rows[::-1]), "category", "Service", colors=given).to_dict()
    assert scale_of(forward) == scale_of(backward) == given


def test_the_zero_line_is_drawn_above_the_axis_and_no_negative_label_shows():
    rows = [("2024-08-02T08:30:00Z", "Succeeded", "", 200), ("2024-08-02T08:30:10Z", "AccessDenied", "", 0)]
    spec = charts.lines_by(frame(rows), "category", "Outcome").to_dict()
    y = spec["layer"][0]["encoding"]["y"]
    low, high = y["scale"]["domain"]
    assert low < 0 < 200 <= high
    assert y["axis"]["labelExpr"] == "datum.value < 0 ? '' : datum.label"


def test_a_few_errors_beside_many_successes_get_a_log_axis_that_lifts_them():
    rows = [("2024-08-02T08:30:00Z", "Succeeded", "", 900), ("2024-08-02T08:30:00Z", "AccessDenied", "", 2)]
    spec = charts.lines_by(frame(rows), "category", "Outcome", log=True).to_dict()
    y = spec["layer"][0]["encoding"]["y"]
    assert y["scale"]["type"] == "symlog"
    assert y["title"] == "Calls per 10 s (log scale)"


def test_the_busiest_ip_dots_use_the_given_colours_and_grey_for_the_rest():
    rows = [("2024-08-02T08:30:00Z", "198.51.100.7", "", 5), ("2024-08-02T08:31:00Z", "203.0.113.9", "", 3)]
    given = {"198.51.100.7": "#54a24b", colors.OTHERS: colors.OTHER}
    spec = charts.busiest_line(frame(rows), colors=given).to_dict()
    scale = spec["layer"][1]["encoding"]["color"]["scale"]
    assert dict(zip(scale["domain"], scale["range"])) == given
