import gzip
import json

import pytest

from metrics.normalise import Rejects, Unreadable, normalise_all
from metrics.records import iter_bytes, iter_paths, parse_cloudtrail_event, records_from_lookup
from tests.conftest import STRATUS, make_record, stratus

RECORDS = stratus("aws.execution.ec2-launch-unusual-instances")  # three records
IDS = [r["eventID"] for r in RECORDS]


def ids_of(items) -> list[str]:
    return [item["eventID"] for item in items if isinstance(item, dict)]


def encodings() -> dict[str, bytes]:
    trail = json.dumps({"Records": RECORDS}).encode()
    array = json.dumps(RECORDS, indent=2).encode()
    lines = "\n".join(json.dumps(r) for r in RECORDS).encode() + b"\n"
    return {"trail": trail, "array": array, "lines": lines}


@pytest.mark.parametrize("kind", ["trail", "array", "lines"])
@pytest.mark.parametrize("zipped", [False, True])
def test_every_accepted_format_gives_the_same_records(tmp_path, kind, zipped):
    data = encodings()[kind]
    path = tmp_path / f"file.json{'.gz' if zipped else ''}"
    path.write_bytes(gzip.compress(data) if zipped else data)
    items = [record for _, record in iter_paths([path])]
    assert ids_of(items) == IDS
    assert not [i for i in items if isinstance(i, Unreadable)]


def test_a_single_record_object_is_one_record():
    assert ids_of(iter_bytes(json.dumps(RECORDS[0]).encode())) == IDS[:1]


def test_byte_order_mark_and_blank_lines_are_fine():
    data = b"\xef\xbb\xbf" + b"\n\n".join(json.dumps(r).encode() for r in RECORDS) + b"\n\n"
    assert ids_of(iter_bytes(data)) == IDS


def test_empty_file_has_no_records():
    assert list(iter_bytes(b"  \n")) == []


def test_folders_are_walked_in_name_order_taking_record_files_only(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.json.gz").write_bytes(gzip.compress(json.dumps([RECORDS[1]]).encode()))
    (tmp_path / "a.jsonl").write_text(json.dumps(RECORDS[0]))
    (tmp_path / "NOTICE").write_text("not records")
    (tmp_path / ".hidden.json").write_text("[]")
    pairs = list(iter_paths([tmp_path]))
    assert [origin.rsplit("/", 1)[-1] for origin, _ in pairs] == ["a.jsonl", "2.json.gz"]
    assert ids_of(r for _, r in pairs) == IDS[:2]


def test_the_whole_stratus_folder_reads_310_records():
    items = [r for _, r in iter_paths([STRATUS])]
    assert len(items) == 310


def test_a_missing_file_is_reported_not_raised(tmp_path):
    (item,) = [r for _, r in iter_paths([tmp_path / "absent.json"])]
    assert isinstance(item, Unreadable)
    assert item.reason.startswith("unreadable file")


def test_a_broken_gzip_is_reported():
    (item,) = list(iter_bytes(b"\x1f\x8b\x08\x00garbage"))
    assert isinstance(item, Unreadable)
    assert item.reason.startswith("unreadable gzip")


def test_a_truncated_document_is_one_invalid_json():
    (item,) = list(iter_bytes(json.dumps({"Records": RECORDS}).encode()[:-40]))
    assert item.reason == "invalid JSON"


def test_bad_lines_of_json_lines_are_rejected_one_by_one():
    data = b"\n".join(
        [json.dumps(RECORDS[0]).encode(), b'{"eventID": "cut', b"\xff\xfe{}", json.dumps(RECORDS[1]).encode()]
    )
    items = list(iter_bytes(data, "f.jsonl"))
    assert ids_of(items) == IDS[:2]
    reasons = [i.reason for i in items if isinstance(i, Unreadable)]
    assert reasons == ["invalid JSON", "invalid UTF-8"]
    assert [i.origin for i in items if isinstance(i, Unreadable)] == ["f.jsonl:2", "f.jsonl:3"]


def test_invalid_utf8_inside_a_trail_file_rejects_only_that_record():
    good = make_record("good", "2024-08-02T08:30:00Z")
    bad = make_record("bad", "2024-08-02T08:30:00Z", userAgent="PLACEHOLDER")
    data = json.dumps({"Records": [good, bad]}).encode().replace(b"PLACEHOLDER", b"agent\xff\xfe")
    rejects = Rejects()
    batch = normalise_all(iter_bytes(data), rejects)
    assert batch.column("eventID") == ["good"]
    assert rejects.summary() == [("invalid UTF-8", 1)]


def test_lookup_events_answers_give_their_records():
    events = [{"EventId": r["eventID"], "CloudTrailEvent": json.dumps(r)} for r in RECORDS]
    assert ids_of(records_from_lookup(events)) == IDS


@pytest.mark.parametrize(
    ("text", "reason"),
    [(None, "missing CloudTrailEvent"), ('{"eventID": ', "invalid JSON"), ("\udcff", "invalid UTF-8")],
)
def test_a_malformed_cloudtrail_event_string_is_reported(text, reason):
    item = parse_cloudtrail_event(text)
    assert isinstance(item, Unreadable)
    assert item.reason == reason


def test_records_with_invalid_regions_and_addresses_are_plain_strings():
    # The Stratus logs are scrubbed with impossible regions and addresses on purpose.
    batch = normalise_all(RECORDS, Rejects())
    assert set(batch.column("awsRegion")) == {RECORDS[0]["awsRegion"]}
    assert batch.column("sourceIPAddress")[0] == "06.237.252.245"
