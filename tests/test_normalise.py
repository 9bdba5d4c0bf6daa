import pytest

from metrics.events import COLUMNS, POSITION
from metrics.normalise import (
    MAX_RECORD_BYTES,
    RejectedRecord,
    Rejects,
    attribute,
    normalise,
    normalise_all,
    parse_event_time,
)
from tests.conftest import all_stratus, make_record, stratus


def row_of(record) -> dict:
    row, _ = normalise(record)
    return dict(zip(COLUMNS, row))


def test_row_has_one_value_per_column():
    row, raw = normalise(make_record("e1", "2024-08-02T08:30:00Z"))
    assert len(row) == len(COLUMNS)
    assert raw.startswith(b"{")


def test_every_stratus_record_normalises():
    rejects = Rejects()
    batch = normalise_all(all_stratus(), rejects)
    assert len(batch) == 310
    assert rejects.total == 0


def test_event_time_is_utc_nanoseconds():
    assert parse_event_time("1970-01-01T00:00:01Z") == 1_000_000_000
    assert parse_event_time("2024-08-02T08:30:00Z") == 1_722_587_400 * 10**9
    assert parse_event_time("2024-08-02T10:30:00+02:00") == 1_722_587_400 * 10**9
    assert parse_event_time("2024-08-02T08:30:00") == 1_722_587_400 * 10**9  # naive is UTC
    assert parse_event_time("2024-08-02T08:30:00.250Z") == 1_722_587_400 * 10**9 + 250_000_000


def test_iam_user_is_attributed_to_its_user_name():
    record = stratus("aws.defense-evasion.cloudtrail-stop")[0]
    row = row_of(record)
    assert (row["user"], row["session"], row["identityType"]) == ("christophe", None, "IAMUser")
    assert row["account"] == "143434273843"
    assert row["principalArn"] == "arn:aws:iam::143434273843:user/christophe"


def test_assumed_role_is_attributed_to_the_role_and_its_session():
    record = next(
        r for r in stratus("aws.defense-evasion.organizations-leave") if r["userIdentity"]["type"] == "AssumedRole"
    )
    row = row_of(record)
    assert row["user"] == "stratus-red-team-leave-org-role"
    assert row["session"] == "aws-go-sdk-1722587398902687000"


def test_federated_user_is_attributed_to_its_issuer_and_name():
    record = next(
        r for r in stratus("aws.persistence.sts-federation-token") if r["userIdentity"]["type"] == "FederatedUser"
    )
    row = row_of(record)
    assert row["user"] == "stratus-red-team-user-federation-user"
    assert row["session"] == "stratus_red_team"


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ({"type": "Root", "principalId": "111122223333", "arn": "arn:aws:iam::111122223333:root"}, ("root", None)),
        ({"type": "AWSService", "invokedBy": "autoscaling.amazonaws.com"}, ("autoscaling.amazonaws.com", None)),
        ({"accountId": "111122223333", "invokedBy": "AWS Internal"}, ("AWS Internal", None)),
        ({"type": "AWSAccount", "principalId": "AIDAX:partner", "accountId": "999"}, ("AIDAX:partner", None)),
        (
            {"type": "AssumedRole", "principalId": "AROAX:s", "arn": "arn:aws:sts::1:assumed-role/r/s"},
            ("AROAX:s", None),
        ),
        ({"type": "IAMUser", "userName": "bob", "invokedBy": "x"}, ("bob", None)),
        ({}, ("unknown", None)),
    ],
)
def test_other_identities_follow_the_attribution_table(identity, expected):
    assert attribute(identity) == expected


def test_missing_user_identity_is_unknown():
    row = row_of(make_record("e1", "2024-08-02T08:30:00Z", userIdentity=...))
    assert row["user"] == "unknown"
    assert row["account"] == "111122223333"


def test_unknown_extra_fields_are_accepted_and_kept_in_the_raw_record():
    record = make_record("e1", "2024-08-02T08:30:00Z", someNewField={"nested": [1, 2]})
    row, raw = normalise(record)
    assert b"someNewField" in raw


def test_missing_error_code_is_none_and_present_one_is_kept():
    assert row_of(make_record("e1", "2024-08-02T08:30:00Z"))["errorCode"] is None
    row = row_of(make_record("e2", "2024-08-02T08:30:00Z", errorCode="AccessDenied", errorMessage="no"))
    assert (row["errorCode"], row["errorMessage"]) == ("AccessDenied", "no")


def test_read_only_as_text_is_understood():
    assert row_of(make_record("e1", "2024-08-02T08:30:00Z", readOnly="false"))["readOnly"] is False
    assert row_of(make_record("e1", "2024-08-02T08:30:00Z", readOnly=...))["readOnly"] is None


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (["not", "a", "record"], "not a JSON object"),
        ("text", "not a JSON object"),
        (make_record("e1", "2024-08-02T08:30:00Z", eventID=...), "missing eventID"),
        (make_record("", "2024-08-02T08:30:00Z"), "missing eventID"),
        (make_record("e1", "2024-08-02T08:30:00Z", eventTime=...), "missing eventTime"),
        (make_record("e1", "yesterday"), "invalid eventTime"),
        (make_record("e1", 1722587400), "wrong type: eventTime"),
        (make_record("e1", "2024-08-02T08:30:00Z", eventID=42), "wrong type: eventID"),
        (make_record("e1", "2024-08-02T08:30:00Z", eventName=["Run"]), "wrong type: eventName"),
        (make_record("e1", "2024-08-02T08:30:00Z", userIdentity="root"), "wrong type: userIdentity"),
        (make_record("e1", "2024-08-02T08:30:00Z", readOnly="maybe"), "wrong type: readOnly"),
        (make_record("e1", "2024-08-02T08:30:00Z", userAgent="x" * 1_000_000), "record too large"),
        (make_record("e1", "2024-08-02T08:30:00Z", userAgent="x" * 10_000), "field too long: userAgent"),
        (make_record("e1", "2024-08-02T08:30:00Z", requestParameters={"p": "\udcff"}), "invalid UTF-8"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(record, reason):
    with pytest.raises(RejectedRecord) as rejected:
        normalise(record)
    assert rejected.value.reason == reason


def test_a_one_megabyte_string_anywhere_is_rejected():
    record = make_record("e1", "2024-08-02T08:30:00Z", requestParameters={"policy": "A" * (1 << 20)})
    with pytest.raises(RejectedRecord, match="record too large"):
        normalise(record)
    assert MAX_RECORD_BYTES < 1 << 20


def test_rejects_are_counted_by_reason_and_inspectable():
    rejects = Rejects(keep=2)
    records = [
        make_record("ok", "2024-08-02T08:30:00Z"),
        make_record("a", "never"),
        make_record("b", "never"),
        make_record("c", "2024-08-02T08:30:00Z", eventID=...),
    ]
    batch = normalise_all(records, rejects, origin="test.json")
    assert len(batch) == 1
    assert rejects.total == 3
    assert rejects.summary() == [("invalid eventTime", 2), ("missing eventID", 1)]
    latest = rejects.latest()
    assert len(latest) == 2  # only the latest few are kept
    assert latest[-1]["reason"] == "missing eventID"
    assert latest[-1]["origin"] == "test.json"
    assert '"eventTime":"2024-08-02T08:30:00Z"' in latest[-1]["sample"]


def test_reject_samples_are_short():
    rejects = Rejects()
    normalise_all([make_record("e", "2024-08-02T08:30:00Z", userAgent="x" * 1_000_000)], rejects)
    assert len(rejects.latest()[0]["sample"]) <= 301


def test_batch_columns_follow_the_schema():
    batch = normalise_all([make_record("e1", "2024-08-02T08:30:00Z")], Rejects())
    assert batch.column("eventID") == ["e1"]
    assert batch.columns[POSITION["user"]] == ["alice"]


@pytest.mark.parametrize(
    "event_time",
    ["2300-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1999-06-01T00:00:00Z", "0001-01-01T00:00:00+01:00"],
)
def test_an_impossible_event_time_is_rejected_with_its_reason(event_time):
    with pytest.raises(RejectedRecord) as rejected:
        normalise(make_record("e1", event_time))
    assert rejected.value.reason in ("eventTime out of range", "invalid eventTime")


def test_a_record_more_than_a_day_ahead_of_the_reading_is_rejected_and_the_rest_kept():
    now_ns = parse_event_time("2026-01-01T00:00:00Z")
    records = [
        make_record("ok", "2026-01-01T12:00:00Z"),
        make_record("ahead", "2026-01-02T00:00:01Z"),
        make_record("year-2300", "2300-01-01T00:00:00Z"),
    ]
    rejects = Rejects()
    batch = normalise_all(records, rejects, now_ns=now_ns)
    assert batch.column("eventID") == ["ok"]
    assert dict(rejects.summary()) == {"eventTime out of range": 2}
