"""Every page through AppTest, on a buffer filled with known records (the files source):
anonymous sessions see only the sign-in form; signed-in ones see each page's charts with the
numbers the records imply, and explained empty states."""

from __future__ import annotations

import datetime
import io
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import APP, make_record

PAGES = {
    "overview": ("Overview", 2),
    "services": ("Services", 1),
    "apis": ("APIs", 1),
    "users": ("Users", 1),
    "ips": ("Source IPs", 2),
    "ec2": ("EC2", 1),
    "explorer": ("Events explorer", 1),  # the matches over time
    "status": ("Status", 0),
    "detections": ("Detections", None),  # a timeline only when something was detected
}


def known_records(now: float) -> list[dict]:
    """12 calls in the last 10 minutes: alice lists buckets 6 times from one IP, bob runs
    instances 4 times (3 denied) in eu-west-1, and 2 AssumeRole calls by a role session."""

    def at(seconds_ago: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - seconds_ago))

    alice = {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "userName": "alice"}
    bob = {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/bob", "userName": "bob"}
    role = {
        "type": "AssumedRole",
        "arn": "arn:aws:sts::111122223333:assumed-role/deployer/ci-run-7",
        "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "deployer"}},
    }
    records = [
        make_record(
            f"a{i}",
            at(500 - i * 30),
            userIdentity=alice,
            eventSource="s3.amazonaws.com",
            eventName="ListBuckets",
            sourceIPAddress="198.51.100.7",
        )
        for i in range(6)
    ]
    records += [
        make_record(
            f"b{i}",
            at(400 - i * 30),
            userIdentity=bob,
            eventSource="ec2.amazonaws.com",
            eventName="RunInstances",
            awsRegion="eu-west-1",
            sourceIPAddress="203.0.113.9",
            **({"errorCode": "Client.UnauthorizedOperation"} if i < 3 else {}),
        )
        for i in range(4)
    ]
    records += [
        make_record(
            f"r{i}",
            at(300 - i * 30),
            userIdentity=role,
            eventSource="sts.amazonaws.com",
            eventName="AssumeRole",
            sourceIPAddress="10.0.0.5",
        )
        for i in range(2)
    ]
    return records


@pytest.fixture
def app(start_app, tmp_path):
    """AppTest sessions on the known records, through the files source."""
    folder = tmp_path / "records"
    folder.mkdir()
    path = folder / "known.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in known_records(time.time())) + "\n")
    os.utime(path, (time.time() - 5, time.time() - 5))

    def start(page: str = "overview", signed_in: bool = True, query: dict | None = None, **session) -> AppTest:
        return start_app(page, signed_in, session, query, source="files", files_path=folder)

    return start


def chart_data(at: AppTest) -> list[list[dict]]:
    """Each chart's datasets, decoded from the Arrow bytes Streamlit sends to the browser."""
    charts = []
    for chart in at.get("vega_lite_chart"):
        tables = []
        for dataset in chart.proto.datasets:
            tables += pa.ipc.open_stream(io.BytesIO(dataset.data.data)).read_all().to_pylist()
        charts.append(tables)
    return charts


def test_an_anonymous_session_sees_only_the_sign_in_form(app):
    at = app(signed_in=False)
    assert not at.exception
    assert not at.get("vega_lite_chart") and not at.dataframe and not at.metric
    assert [b.label for b in at.button] == ["Log in"]
    assert [t.value for t in at.title] == ["Sign in to Account Activity Insights"]


@pytest.mark.parametrize("page", list(PAGES))
def test_a_page_module_run_on_its_own_refuses_an_anonymous_session(app, page):
    """What Streamlit does for /<page> on a fresh server: runs pages/<page>.py without app.py."""
    at = AppTest.from_file(str(Path(APP).parent / "pages" / f"{page}.py"), default_timeout=60).run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["Please sign in."]
    assert not at.get("vega_lite_chart") and not at.dataframe and not at.metric and not at.title


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_its_charts_for_a_signed_in_user(app, page):
    at = app(page)
    title, charts = PAGES[page]
    assert not at.exception, at.exception
    assert at.title[0].value == title
    if charts is not None:
        assert len(at.get("vega_lite_chart")) == charts
    assert not at.error


def test_overview_counts_the_known_records(app):
    at = app("overview")
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["API calls, last hour"] == "12"
    assert tiles["Failed calls"] == "25.0%"  # 3 of 12
    assert tiles["Events in memory"] == "12"
    activity, outcomes = chart_data(at)
    assert sum(row["calls"] for row in activity if "calls" in row) == 12
    failed = sum(row["value"] for row in outcomes if row.get("category") == "Failed")
    assert failed == 3


def test_apis_users_ips_and_ec2_show_the_known_leaders(app):
    apis = chart_data(app("apis"))[0]
    assert {(r["api"], r["value"]) for r in apis} == {
        ("ListBuckets (s3)", 6),
        ("RunInstances (ec2)", 4),
        ("AssumeRole (sts)", 2),
    }
    users_chart = chart_data(app("users"))[0]
    assert {(r["category"], r["value"]) for r in users_chart} == {("alice", 6), ("bob", 4), ("deployer", 2)}
    ips = chart_data(app("ips"))[0]
    assert {(r["category"], r["value"]) for r in ips} == {("198.51.100.7", 6), ("203.0.113.9", 4), ("10.0.0.5", 2)}
    ec2 = chart_data(app("ec2"))[0]
    by_outcome = {}
    for row in ec2:
        by_outcome[row["outcome"]] = by_outcome.get(row["outcome"], 0) + row["value"]
    assert by_outcome == {"Client.UnauthorizedOperation": 3, "Succeeded": 1}


def color_scale(at: AppTest, chart: int) -> dict[str, str]:
    spec = json.loads(at.get("vega_lite_chart")[chart].proto.spec)
    scale = next(layer["encoding"]["color"]["scale"] for layer in spec["layer"] if "color" in layer.get("encoding", {}))
    return dict(zip(scale["domain"], scale["range"]))


def test_success_has_one_colour_on_every_page(app):
    from ui import colors

    overview = color_scale(app("overview"), 1)
    ec2 = color_scale(app("ec2"), 0)
    assert overview == {"Succeeded": colors.SUCCESS, "Failed": colors.FAILURE}
    assert ec2["Succeeded"] == colors.SUCCESS
    assert ec2["Client.UnauthorizedOperation"] in colors.ERROR_COLORS


def test_services_draws_the_busiest_on_their_own_and_the_rest_as_one_line(app):
    at = app("services")
    assert at.multiselect[0].value == ["s3.amazonaws.com", "sts.amazonaws.com"]
    at.multiselect[0].set_value(["s3.amazonaws.com"]).run()
    lines = {}
    for row in chart_data(at)[0]:
        lines[row["category"]] = lines.get(row["category"], 0) + row["value"]
    assert lines == {"s3.amazonaws.com": 6, "All others": 2}
    assert "the other 1 summed in one line" in " ".join(c.value for c in at.caption)


def test_services_explains_an_empty_selection_instead_of_an_empty_axis(app):
    at = app("services")
    at.multiselect[0].set_value([]).run()
    at.toggle(key="services-others").set_value(False).run()
    assert not at.get("vega_lite_chart")
    assert any(i.value.startswith("No service is chosen") for i in at.info)


def test_users_page_lists_the_sessions_of_assumed_roles(app):
    at = app("users")
    sessions = at.dataframe[0].value
    assert ("deployer", "ci-run-7", 2) in set(zip(sessions["User"], sessions["Session"], sessions["Calls"]))


def test_a_region_scope_narrows_every_count(app):
    at = app("apis", view_regions=["eu-west-1"])
    assert {(r["api"], r["value"]) for r in chart_data(at)[0]} == {("RunInstances (ec2)", 4)}


def test_a_scope_without_events_explains_itself(app):
    at = app("services", view_regions=["eu-west-1"])  # only EC2 calls there, which this page leaves out
    assert not at.exception
    assert any("for the regions and accounts chosen in the sidebar" in i.value for i in at.info)


def test_explorer_filters_and_searches(app):
    at = app("explorer")
    assert len(at.dataframe[-1].value) == 12
    at.multiselect(key="ex_users").select("bob").run()
    assert set(at.dataframe[-1].value["Event ID"]) == {"b0", "b1", "b2", "b3"}
    at.multiselect(key="ex_errors").select("(none: succeeded)").run()
    assert list(at.dataframe[-1].value["Event ID"]) == ["b3"]
    at.text_input(key="ex_text").input("nothing matches this").run()
    assert any(i.value == "None of the 12 events in this range matches these filters." for i in at.info)


def test_status_shows_the_collector_health(app):
    at = app("status")
    sources = at.dataframe[0].value
    assert list(sources.columns) == ["files"]
    assert sources.loc["New events", "files"] == "12"
    assert sources.loc["Re-read after restart or overlap, kept once", "files"] == "0"
    assert sources.loc["Delivery lag at that poll", "files"].endswith(" min")  # the newest record is 4 min old
    assert sources.loc["Running", "files"] == "yes"
    assert {m.label: m.value for m in at.metric}["Records rejected"] == "0"


def test_status_lists_the_sigma_files_refused_with_their_reasons(start_app, tmp_path):
    rules = tmp_path / "sigma"
    rules.mkdir()
    good = "title: Root calls\nid: root-calls\nlogsource: {product: aws, service: cloudtrail}\n"
    (rules / "root.yml").write_text(good + "detection:\n  sel: {userIdentity.type: Root}\n  condition: sel\n")
    (rules / "keywords.yml").write_text(good.replace("root-calls", "kw") + "detection:\n  k: [evil]\n  condition: k\n")
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "known.jsonl").write_text("\n".join(json.dumps(r) for r in known_records(time.time())) + "\n")
    at = start_app("status", True, {}, source="files", files_path=folder, sigma_path=rules)
    assert not at.exception
    assert any(s.value == "Sigma rules" for s in at.subheader)
    assert any("1 Sigma file(s) refused" in w.value for w in at.warning)
    refused = next(d.value for d in at.dataframe if list(d.value.columns) == ["File", "Reason"])
    assert refused.to_dict("records") == [
        {"File": "keywords.yml", "Reason": "k: keyword searches (values without a field) are not supported"}
    ]


def test_status_shows_each_account_region_of_the_cloudtrail_source(start_app, monkeypatch):
    from tests.cloudtrail_endpoint import CloudTrailEndpoint, moto_server

    now = time.time()
    with CloudTrailEndpoint(rate_per_second=None) as endpoint, moto_server() as url:
        endpoint.add(known_records(now))
        endpoint.fail_region("eu-west-1", "AccessDenied")
        for name, value in {
            "AWS_ENDPOINT_URL_CLOUDTRAIL": endpoint.url,
            "AWS_ENDPOINT_URL_EC2": url,
            "AWS_ENDPOINT_URL_STS": url,
            "AWS_ACCESS_KEY_ID": "AKIDTEST",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        at = start_app("status", source="cloudtrail", regions="us-east-1,eu-west-1")
        assert not at.exception  # the first page does not wait for AWS: the thread polls
        from ui.runtime import runtime

        deadline = time.time() + 20
        while runtime().collector.health.polls < 1 and time.time() < deadline:
            time.sleep(0.1)
        at.run()
        regions = at.dataframe[1].value
        states = dict(zip(regions["Region"], regions["State"]))
        assert states == {"eu-west-1": "degraded", "us-east-1": "live"}
        reason = regions.loc[regions["Region"] == "eu-west-1", "Reason"].iloc[0]
        assert reason.startswith("AccessDeniedException")
        assert any("degraded" in w.value for w in at.warning)
        overview = start_app("overview", source="cloudtrail", regions="us-east-1,eu-west-1")
        deadline = time.time() + 20
        while runtime().collector.health.polls < 1 and time.time() < deadline:
            time.sleep(0.1)
        overview.run()
        tiles = {m.label: m.value for m in overview.metric}
        assert tiles["API calls, last hour"] == "8"  # the us-east-1 records; eu-west-1 is denied


def test_detections_page_lists_a_hit_with_its_events_and_keeps_the_decision(start_app, tmp_path):
    from metrics.detections import Detector
    from metrics.triage import Triage

    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 120))
    mallory = {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/mallory", "userName": "mallory"}
    tampering = make_record(
        "stop-1", stamp, eventSource="cloudtrail.amazonaws.com", eventName="StopLogging", userIdentity=mallory
    )
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "r.jsonl").write_text(json.dumps(tampering) + "\n")
    os.utime(folder / "r.jsonl", (now - 5, now - 5))
    hit = Detector().observe([tampering])[0]
    at = start_app("detections", source="files", files_path=folder)
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["Detection"]) == [hit.title]
    assert list(table["Principal"]) == ["mallory"]
    assert len(at.get("vega_lite_chart")) == 1
    at.session_state["det_open"] = hit.id
    at.run()
    assert hit.summary in [t.value for t in at.text]
    events = at.dataframe[1].value
    assert list(events["Event ID"]) == ["stop-1"]
    next(b for b in at.button if b.label == "Acknowledge").click().run()
    assert not at.exception
    assert Triage(tmp_path / "state" / "detections.json").status(hit) == "acknowledged"


def history_folder(tmp_path, records) -> Path:
    folder = tmp_path / "history"
    folder.mkdir()
    (folder / "old.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    os.utime(folder / "old.jsonl", (time.time() - 5, time.time() - 5))
    return folder


def test_history_from_files_opens_on_its_own_range_and_says_what_the_retention_left_out(start_app, tmp_path):
    records = [make_record(f"h{i}", f"2024-08-05T11:{10 + i}:00Z") for i in range(5)]
    records.append(make_record("too-old", "2024-08-01T11:00:00Z"))  # over 24 h before the newest
    at = start_app("overview", source="files", files_path=history_folder(tmp_path, records))
    assert not at.exception
    assert at.session_state["view_range"] == "Custom range"
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["API calls, 05 Aug 2024 11:10 to 05 Aug 2024 11:15 UTC"] == "5"
    assert tiles["Delivery lag of newest event"].endswith(" days")  # not hundreds of millions of seconds
    dropped = [c.value for c in at.caption if "left out" in c.value]
    assert dropped == [
        "1 event was left out: they happened more than 24 h before the newest event read (2024-08-05 11:14 UTC), "
        "the retention. Set INSIGHTS_RETENTION_HOURS higher and restart the app to keep them."
    ]
    status = at.switch_page("pages/status.py").run()
    assert [w.value for w in status.warning] == dropped


def test_explorer_search_reads_the_full_record_with_fields_and_operators(app):
    at = app("explorer")
    at.text_input(key="ex_text").input("arn:aws:sts::111122223333:assumed-role/deployer/ci-run-7").run()
    assert set(at.dataframe[-1].value["Event ID"]) == {"r0", "r1"}  # the ARN is only in the full record
    at.text_input(key="ex_text").input("userIdentity.userName:bob AND NOT errorCode:*").run()
    assert list(at.dataframe[-1].value["Event ID"]) == ["b3"]
    at.text_input(key="ex_text").input("eventName:List* OR errorCode:Client.Unauthorized*").run()
    assert len(at.dataframe[-1].value) == 9  # alice's 6 and bob's 3 denied calls
    at.text_input(key="ex_text").input("(errorCode:x").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The search cannot be read: a parenthesis is not closed."]
    assert any("errorCode:AccessDenied" in c.value for c in at.caption)


def custom_range(start: str, end: str) -> dict:
    first, last = (datetime.datetime.fromisoformat(t) for t in (start, end))
    return {
        "view_range": "Custom range",
        "view_from_day": first.date(),
        "view_from_time": first.time(),
        "view_to_day": last.date(),
        "view_to_time": last.time(),
    }


def test_a_custom_range_ending_before_it_starts_blocks_the_page_instead_of_showing_the_last_hour(app):
    at = app("overview", **custom_range("2026-11-20T10:00", "2026-11-19T10:00"))
    assert not at.exception
    assert not at.metric and not at.get("vega_lite_chart")
    assert any("ends before it starts" in e.value for e in at.error)


def test_a_range_in_the_future_or_without_data_says_so(app):
    at = app("apis", **custom_range("2099-01-01T00:00", "2099-01-02T00:00"))
    assert any("is in the future" in i.value for i in at.info)
    past = app("apis", **custom_range("2020-01-01T00:00", "2020-01-02T00:00"))
    assert any("the events held run from" in i.value for i in past.info)


def test_a_lag_reads_in_the_unit_that_suits_it():
    from ui.page import duration_text

    assert [duration_text(s) for s in (None, 42, 600, 5.5 * 3600, 3 * 86400)] == [
        "–",
        "42 s",
        "10 min",
        "5.5 h",
        "3 days",
    ]


def test_the_readme_files_example_shows_the_stratus_records_on_first_try(start_app):
    from tests.conftest import STRATUS

    at = start_app("overview", source="files", files_path=STRATUS, retention_hours=3000)
    assert not at.exception
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["API calls, 30 Jul 2024 21:31 to 30 Nov 2024 08:44 UTC"] == "310"
    assert not [c.value for c in at.caption if "left out" in c.value]
    activity = chart_data(at)[0]
    assert sum(row["calls"] for row in activity if "calls" in row) == 310
    assert len(activity) < 400  # coarse bins over four months, not a row per 10 s


def test_times_are_shown_in_the_browsers_zone_unless_the_user_asks_for_utc(app, monkeypatch):
    from ui import view

    monkeypatch.setattr(view, "browser_zone", lambda: "Asia/Tokyo")
    at = app("status")
    sources = at.dataframe[0].value
    assert sources.loc["Last poll", "files"].endswith(" JST")
    assert any(c.value.startswith("Data as of the last poll") and " JST." in c.value for c in at.caption)
    at.session_state["view_local_time"] = False  # the sidebar's switch
    at.run()
    assert at.dataframe[0].value.loc["Last poll", "files"].endswith(" UTC")


def test_a_custom_range_is_entered_as_the_local_wall_clock(app, monkeypatch):
    import datetime as dt

    from ui import view

    monkeypatch.setattr(view, "browser_zone", lambda: "Asia/Tokyo")
    at = app(  # AppTest keeps the sidebar of the first run only: the range is set before it
        "overview",
        view_range=view.CUSTOM,
        view_from_day=dt.date(2024, 8, 2),
        view_from_time=dt.time(17, 30),
        view_to_day=dt.date(2024, 8, 2),
        view_to_time=dt.time(19, 30),
    )
    assert at.sidebar.date_input(key="view_from_day").label == "From (Asia/Tokyo)"
    assert at.session_state["view_custom"] == (1_722_587_400, 1_722_594_600)  # 08:30 to 10:30 UTC


def test_the_url_carries_the_view_and_a_link_opens_it_again(app):
    at = app("overview", view_range="Last 6 hours", view_regions=["eu-west-1"])
    assert dict(at.query_params) == {"range": "6h", "region": "eu-west-1"}
    link = {"range": "6h", "region": "eu-west-1", "user": "bob", "q": "RunInstances"}
    again = app("overview", query=link)  # a reload, or a colleague opening the link
    assert again.session_state["view_range"] == "Last 6 hours"
    assert again.session_state["view_regions"] == ["eu-west-1"]
    assert again.session_state["ex_users"] == ["bob"]
    assert again.session_state["ex_text"] == "RunInstances"
    tiles = {m.label: m.value for m in again.metric}
    assert tiles["API calls, last 6 hours"] == "4"  # bob's calls in eu-west-1


def test_the_explorer_filters_go_in_its_own_link_only():
    from ui import link

    state = {"ex_users": ["bob"], "ex_errors": ["AccessDenied"], "ex_text": "AKIA", "open_event": "e1"}
    assert link.to_params(state, "explorer") == {"user": ["bob"], "error": ["AccessDenied"], "q": "AKIA", "event": "e1"}
    assert link.to_params(state, "services") == {}


def test_a_custom_range_and_the_opened_detection_travel_in_the_url():
    from ui import link, view

    state = {"view_range": view.CUSTOM, "view_custom": (1_722_587_400, 1_722_594_600), "det_open": "h1"}
    params = link.to_params(state, "detections")
    assert params == {"range": "custom", "start": "2024-08-02T08:30:00Z", "end": "2024-08-02T10:30:00Z", "hit": "h1"}
    assert "hit" not in link.to_params(state, "overview")  # a page's own selection stays on its page
    back = link.to_state({name: [value] for name, value in params.items()}, "Asia/Tokyo")
    assert back["view_custom"] == state["view_custom"]
    assert (str(back["view_from_day"]), str(back["view_from_time"])) == ("2024-08-02", "17:30:00")
    assert back["det_open"] == "h1"
    assert link.to_state({"range": ["custom"], "start": ["nonsense"], "end": ["2024"]}, "UTC") == {}


def test_the_explorer_pages_through_every_match_and_offers_all_of_them_for_download(app, monkeypatch):
    from ui import tables

    monkeypatch.setattr(tables, "PAGE_SIZE", 5)
    at = app("explorer")
    assert list(at.dataframe[-1].value["Event ID"]) == ["r1", "r0", "b3", "b2", "a5"]  # the newest 5
    assert at.number_input(key="explorer-table-page").label == "Page (of 3)"
    assert "CSV (all 12)" in [b.label for b in at.get("download_button")]
    at.number_input(key="explorer-table-page").set_value(3).run()
    assert list(at.dataframe[-1].value["Event ID"]) == ["a1", "a0"]  # the oldest


def test_the_explorer_column_chooser_keeps_only_the_chosen_columns(app):
    at = app("explorer")
    at.multiselect(key="explorer-table-columns").set_value(["Time", "User", "API"]).run()
    assert list(at.dataframe[-1].value.columns) == ["Time", "User", "API", "Event ID"]


def test_an_event_named_in_the_link_opens_in_a_dialog(app):
    at = app("explorer", open_event="b0")
    assert not at.exception
    assert "Event ID b0" in [t.value for t in at.text]
    assert at.json[0].value and '"b0"' in at.json[0].value


def test_the_explorer_shows_the_matches_over_time_and_the_top_values_of_the_main_fields(app):
    at = app("explorer")
    histogram = chart_data(at)[0]
    assert sum(row["value"] for row in histogram) == 12
    users = next(d.value for d in at.dataframe if "User" in d.value.columns and "Events" in d.value.columns)
    assert list(zip(users["User"], users["Events"])) == [("alice", 6), ("bob", 4), ("deployer", 2)]
    errors = next(d.value for d in at.dataframe if "Error code" in d.value.columns and "Events" in d.value.columns)
    assert list(zip(errors["Error code"], errors["Events"])) == [
        ("(none: succeeded)", 9),
        ("Client.UnauthorizedOperation", 3),
    ]


def test_a_value_left_out_hides_its_events_and_travels_in_the_link(app):
    at = app("explorer", query={"not": ["users:alice", "error_codes:"]})
    assert set(at.dataframe[-1].value["Event ID"]) == {"b0", "b1", "b2"}  # no alice, and only failures
    assert at.multiselect(key="ex_left_out_0").value == ["User: alice", "Error code: (none: succeeded)"]
    at.multiselect(key="ex_left_out_0").unselect("Error code: (none: succeeded)").run()
    assert set(at.dataframe[-1].value["Event ID"]) == {"b0", "b1", "b2", "b3", "r0", "r1"}


@pytest.fixture
def two_hits(start_app, tmp_path):
    """A critical StopLogging hit 10 minutes ago and a medium root hit 2 minutes ago."""
    now = time.time()

    def at(seconds_ago: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - seconds_ago))

    mallory = {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/mallory", "userName": "mallory"}
    root = {"type": "Root", "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333"}
    records = [
        make_record(
            "stop-1",
            at(600),
            eventSource="cloudtrail.amazonaws.com",
            eventName="StopLogging",
            userIdentity=mallory,
            readOnly=False,
        ),
        make_record("root-1", at(120), eventSource="s3.amazonaws.com", eventName="ListBuckets", userIdentity=root),
    ]
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "r.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    os.utime(folder / "r.jsonl", (now - 5, now - 5))
    return lambda **session: start_app("detections", True, session, source="files", files_path=folder)


def test_detections_sort_by_time_or_severity(two_hits):
    at = two_hits()
    assert list(at.dataframe[0].value["Severity"]) == ["medium", "critical"]  # newest first
    at = two_hits(det_sort="Most severe first")
    assert list(at.dataframe[0].value["Severity"]) == ["critical", "medium"]


def test_one_click_acknowledges_every_detection_shown(two_hits, tmp_path):
    from metrics.triage import Triage

    at = two_hits()
    at.button(key="det_bulk_ack").click().run()
    assert not at.exception
    triage = Triage(tmp_path / "state" / "detections.json")
    assert len(triage.acknowledged) == 2
    assert set(at.dataframe[0].value["Status"]) == {"acknowledged"}


def test_rows_picked_in_the_table_are_suppressed_together_and_one_picked_row_opens_its_panel(two_hits, tmp_path):
    from metrics.triage import Triage

    at = two_hits()
    assert "The selected detection" not in [h.value for h in at.subheader]
    at.session_state["det_table"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert "The selected detection" in [h.value for h in at.subheader]  # at once, no other click needed
    assert not [b for b in at.button if b.key == "det_picked_suppress"]  # one row: its panel decides
    at.session_state["det_table"] = {"selection": {"rows": [0, 1], "columns": [], "cells": []}}
    at.run()
    at.button(key="det_picked_suppress").click().run()
    assert not at.exception
    triage = Triage(tmp_path / "state" / "detections.json")
    assert len(triage.suppressed_hits) == 2 and not triage.acknowledged


def test_a_note_and_an_assignee_are_kept_per_detection_and_shown_in_the_table(two_hits, tmp_path):
    from metrics.triage import Triage
    from ui.runtime import runtime

    at = two_hits()
    hit = next(h for h in runtime().detector.hits() if h.rule_id == "cloudtrail-stopped")
    at.session_state["det_open"] = hit.id
    at.run()
    next(t for t in at.text_input if t.label == "Assignee").input("carol")
    next(t for t in at.text_area if t.label == "Note").input("Logging restarted at 10:05.")
    next(b for b in at.button if b.label == "Save the note and assignee").click().run()
    assert not at.exception
    triage = Triage(tmp_path / "state" / "detections.json")
    assert (triage.assignee(hit.id), triage.note(hit.id)) == ("carol", "Logging restarted at 10:05.")
    table = at.dataframe[0].value
    row = table[table["Detection"] == hit.title].iloc[0]
    assert (row["Assignee"], row["Note"]) == ("carol", "Logging restarted at 10:05.")


def test_the_detections_timeline_is_clickable(two_hits):
    spec = json.loads(two_hits().get("vega_lite_chart")[0].proto.spec)
    assert spec["params"][0]["select"] == {"type": "point", "fields": ["t"], "on": "click", "clear": "dblclick"}


def test_a_range_dragged_on_a_chart_becomes_the_custom_range_of_every_page(app):
    from ui import view

    start = int(time.time()) // 60 * 60 - 600
    at = app("overview", view_zoom=(start, start + 300))  # what drill.chart leaves for the next run
    assert at.session_state["view_range"] == view.CUSTOM
    assert at.session_state["view_custom"] == (start, start + 300)
    labels = [m.label for m in at.metric]
    assert any(label.startswith("API calls, ") and " to " in label for label in labels), labels


def test_the_sign_in_form_keeps_a_readable_width_on_a_wide_screen(app):
    at = app(signed_in=False)
    form = next(b for b in at.main.children.values() if type(b).__name__ == "Block" and b.proto.HasField("form"))
    assert form.proto.form.form_id == "login"
    assert 0 < form.proto.width_config.pixel_width <= 480
