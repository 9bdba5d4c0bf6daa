"""Rule detections over a batch's columns give exactly the hits of the rules over parsed records."""

import copy
import gzip
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from collectors.analyses import Detections
from collectors.collector import Collector
from collectors.demo import DemoSource
from collectors.files import FileSource
from metrics.columnar import normalise_lines
from metrics.detections import RULES, Detector, FirstSeen, Rule
from metrics.detections.columns import ColumnRecord, NeedsRecord
from metrics.detections.firstseen import FirstSeenTracker
from metrics.detections.gates import where
from metrics.detections.matchers import describe
from metrics.detections.record import get
from metrics.detections.sigma import load_folder
from metrics.documents import FAST_BYTES
from metrics.engine import Engine
from metrics.events import Batch
from metrics.normalise import Rejects, normalise_all
from metrics.triage import Triage
from tests.conftest import all_stratus, make_record

DAY_START = 1_789_948_800  # a Monday, 00:00 UTC


def demo(events: int) -> list[dict]:
    source = DemoSource(seed=11, rate=max(1.0, events / 86_400 / 0.566))
    return source.records(DAY_START, DAY_START + 86_400)[:events]


def hostile(records: list[dict]) -> list[dict]:
    """Each record also in odd shapes the normaliser accepts (and a few it rejects)."""
    odd = []

    def variant(n, record, change):
        copied = copy.deepcopy(record)
        change(copied)
        copied["eventID"] = f"{record['eventID']}-odd{n}"
        odd.append(copied)

    def identity(record):
        who = record.get("userIdentity")
        return who if isinstance(who, dict) else {}

    changes = [
        lambda r: r.update(errorCode=""),
        lambda r: r.update(errorCode=None),
        lambda r: r.update(errorCode="AccessDenied", errorMessage=""),
        lambda r: r.update(readOnly="false"),
        lambda r: r.update(readOnly="true"),
        lambda r: r.update(readOnly=False),
        lambda r: r.pop("readOnly", None),
        lambda r: r.update(userAgent=""),
        lambda r: r.update(userAgent=None, sourceIPAddress=""),
        lambda r: r.pop("eventType", None),
        lambda r: r.update(eventType="AwsServiceEvent"),
        lambda r: r.pop("userIdentity", None),
        lambda r: r.update(userIdentity=None),
        lambda r: identity(r).update(type=5),
        lambda r: identity(r).update(type=""),
        lambda r: identity(r).update(type="Root"),
        lambda r: identity(r).update(invokedBy="cloudformation.amazonaws.com"),
        lambda r: identity(r).update(invokedBy=""),
        lambda r: identity(r).update(invokedBy={"service": "x"}),
        lambda r: identity(r).update(invokedBy=None),
        lambda r: identity(r).update(arn=None),
        lambda r: identity(r).update(arn=["x"], accountId=7),
        lambda r: identity(r).update(sessionContext="odd"),
        lambda r: r.update(requestParameters="not an object"),
        lambda r: r.update(requestParameters={"eventName": "StopLogging", "readOnly": True, "invokedBy": 1}),
        lambda r: r.update(responseElements=[1, 2]),
        lambda r: r.update(additionalEventData={"MFAUsed": 5}),
        lambda r: r.update(userAgent="pacu caf\u00e9 \u2603"),
        lambda r: r.update(padding="x" * 9000),  # longer than the normaliser's field limit
        lambda r: r.update(recipientAccountId=""),
        lambda r: r.update(eventSource=7),  # rejected by the normaliser
        lambda r: r.update(eventName=None),
    ]
    for record in records:
        for n, change in enumerate(changes):
            variant(n, record, change)
    return odd


def detected(detector: Detector, new: list) -> tuple:
    return new, detector.hits(), dict(detector.errors)


def reference(raws: list[bytes], rules=RULES, **settings) -> tuple:
    detector = Detector(rules, max_hits=10**9, **settings)
    return detected(detector, detector.observe([orjson.loads(r) for r in raws]))


def by_columns(batch, rules=RULES, **settings) -> tuple:
    detector = Detector(rules, max_hits=10**9, **settings)
    return detected(detector, detector.observe_batch(batch))


def both_ways(records: list[dict]):
    """The records as the per-record normaliser and as the columnar reader make them."""
    per_record = normalise_all(records, Rejects())
    columnar = normalise_lines([orjson.dumps(r) for r in records], Rejects())
    assert per_record.columns == columnar.columns
    return per_record, columnar


@pytest.mark.parametrize("way", [0, 1], ids=["per-record batch", "columnar batch"])
def test_the_columns_give_the_same_hits_as_parsed_records_on_every_stratus_record(way):
    batch = both_ways(all_stratus())[way]
    expected = reference(batch.raws)
    assert len(expected[1]) >= 40 and not expected[2]
    assert by_columns(batch) == expected


def test_the_columns_give_the_same_hits_on_a_generated_day_with_incidents():
    batch = both_ways(demo(6000))[1]
    expected = reference(batch.raws, learning_seconds=600)
    assert len(expected[1]) >= 50 and {h.rule_id for h in expected[1]} > {"first-seen-api"}
    assert by_columns(batch, learning_seconds=600) == expected


def test_the_columns_give_the_same_hits_on_hostile_records():
    records = all_stratus()
    records = records + hostile(records[::3])
    per_record, columnar = both_ways(records)
    assert len(per_record) < len(records)  # some were rejected
    expected = reference(per_record.raws)
    assert len(expected[1]) >= 60 and not expected[2]
    assert by_columns(per_record) == expected
    assert by_columns(columnar) == expected


def test_polls_give_the_same_hits_by_columns_as_by_parsed_records():
    batch = both_ways(all_stratus() + demo(1500))[1]
    parsed, columns = Detector(max_hits=10**9), Detector(max_hits=10**9)
    step = 97
    for start in range(0, len(batch), step):
        part = batch.select(list(range(start, min(start + step, len(batch)))))
        assert columns.observe_batch(part) == parsed.observe([orjson.loads(r) for r in part.raws])
    assert columns.hits() == parsed.hits() and len(parsed.hits()) >= 40


def test_rules_without_a_gate_run_on_every_row_and_read_the_record_where_the_columns_cannot_answer():
    seen = []

    def bucket_named_evil(record):
        seen.append(type(record).__name__)
        name = get(record, "requestParameters.bucketName")
        return describe(record) if isinstance(name, str) and "evil" in name else None

    rule = Rule("evil-bucket", "Evil bucket", "high", "T1530", "test", (), bucket_named_evil)
    records = [
        make_record("a", "2024-08-02T08:30:00Z", requestParameters={"bucketName": "evil-1"}),
        make_record("b", "2024-08-02T08:30:01Z", requestParameters={"bucketName": "good"}),
        make_record("c", "2024-08-02T08:30:02Z"),
    ]
    hits = Detector((rule,)).observe_batch(normalise_all(records, Rejects()))
    assert [h.event_ids for h in hits] == [("a",)]
    assert seen.count("dict") == 3  # each asked again with its parsed record


def test_a_gated_matcher_refuses_a_record_whose_columns_fail_its_gate():
    @where(eventName={"StopLogging"})
    def stop(record):
        return "stopped"

    assert stop({"eventName": "StopLogging"}) == "stopped"
    assert stop({"eventName": "StartLogging"}) is None
    assert stop({"eventName": ["StopLogging"]}) is None
    with pytest.raises(ValueError, match="not a column"):
        where(requestParameters={"x"})


def test_a_column_record_answers_only_what_its_columns_hold_exactly():
    records = [
        make_record("a", "2024-08-02T08:30:00Z", errorCode=...),
        make_record("b", "2024-08-02T08:30:00Z", errorCode=""),
        make_record("c", "2024-08-02T08:30:00Z", errorCode=None, readOnly="true"),
    ]
    batch = normalise_all(records, Rejects())
    absent, empty, null = (ColumnRecord(batch.columns, i, batch.raws[i]) for i in range(3))
    assert absent.get("errorCode") is None and absent.get("eventName") == "GetCallerIdentity"
    assert absent.get("readOnly") is True and absent.get("userIdentity").get("type") == "IAMUser"
    assert absent.user == "alice" and absent.account == "111122223333"
    for ask in (
        lambda: empty.get("errorCode"),
        lambda: null.get("errorCode"),
        lambda: null.get("readOnly"),  # the text "true", not a boolean
        lambda: absent.get("requestParameters"),
        lambda: absent.get("userIdentity").get("userName"),
        lambda: "eventName" in absent,
        lambda: absent["eventName"],
        lambda: list(absent),
    ):
        with pytest.raises(NeedsRecord):
            ask()


def test_the_engine_reports_the_rows_it_took_as_new():
    engine = Engine(retention_seconds=3600)
    now = 1_722_590_000 * 10**9
    first = normalise_all([make_record(f"e{i}", "2024-08-02T09:00:00Z") for i in range(3)], Rejects(), now_ns=now)
    assert engine.ingest(first, now_ns=now).positions.tolist() == [0, 1, 2]
    mixed = normalise_all(
        [
            make_record("e1", "2024-08-02T09:00:00Z"),  # held
            make_record("n1", "2024-08-02T09:00:01Z"),
            make_record("n1", "2024-08-02T09:00:01Z"),  # twice in the batch
            make_record("old", "2024-08-02T06:00:00Z"),  # older than the retention: expired, still new
            make_record("n2", "2024-08-02T09:00:02Z"),
        ],
        Rejects(),
        now_ns=now,
    )
    result = engine.ingest(mixed, now_ns=now)
    assert (result.added, result.duplicates, result.expired) == (2, 2, 1)
    assert result.positions.tolist() == [1, 3, 4]
    assert engine.ingest(first, now_ns=now).positions.tolist() == []


def write_trail(path, records, compress=True):
    data = orjson.dumps({"Records": records})
    path.with_suffix(".gz" if compress else "").write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("large", [False, True], ids=["small polls", "large poll"])
def test_the_collector_hands_the_detector_its_batches_and_the_engine_drops_the_duplicates(tmp_path, large):
    records = all_stratus() + hostile(all_stratus()[::7])
    if large:
        records += demo(4000)
    half = len(records) // 2
    write_trail(tmp_path / "a.json.gz", records[:half], compress=not large)
    write_trail(tmp_path / "b.json.gz", records[half:], compress=not large)
    size = sum(path.stat().st_size for path in tmp_path.iterdir())
    assert (size >= FAST_BYTES) is large  # a large poll takes the columnar path
    detector = Detector(max_hits=10**9)
    collector = Collector(
        FileSource(tmp_path, settle_seconds=0),
        Engine(retention_seconds=None),
        analyses=[Detections(detector, Triage())],
    )
    collector.poll_once(time.time())
    write_trail(tmp_path / "c.json.gz", records[: half // 2])  # the same events again, in a new file
    collector.poll_once(time.time())
    assert collector.health.duplicates >= len(normalise_all(records[: half // 2], Rejects()))
    accepted = normalise_all(records, Rejects())
    assert collector.health.events == len(accepted)
    expected = reference(accepted.raws)
    assert detector.hits() == expected[1] and not detector.errors
    assert detector.remembered_ids == 0  # the engine's buffer knows the eventIDs, the detector keeps none


def test_a_standalone_detector_still_skips_events_it_has_seen():
    batch = normalise_all(all_stratus(), Rejects())
    detector = Detector()
    first = detector.observe_batch(batch)
    assert first and detector.observe_batch(batch) == [] and detector.observe(all_stratus()) == []
    assert detector.remembered_ids == len(set(batch.column("eventID")))


def test_rows_the_engine_did_not_take_are_not_observed():
    batch = normalise_all(all_stratus(), Rejects())
    hits = Detector(RULES).observe_batch(batch, positions=np.array([], dtype=np.intp))
    assert hits == [] and Detector().observe_batch(Batch()) == []  # an empty poll, too


def test_sigma_rules_give_the_same_hits_by_columns_and_skip_rows_by_their_derived_gates():
    loaded = load_folder(str(Path(__file__).parent / "data" / "sigma"))
    assert loaded.rules and not loaded.refused
    gated = {rule.id for rule in loaded.rules if getattr(rule.match, "gate", None) is not None}
    assert len(gated) >= len(loaded.rules) - 1  # each names an eventName, a type or an errorCode
    records = all_stratus()
    records = records + hostile(records[::4])
    records += [
        make_record("quiet", "2024-08-02T08:30:00Z", eventSource="cloudtrail.amazonaws.com", eventName="StopLogging"),
        make_record("loud", "2024-08-02T08:30:01Z", eventName="StopLogging", errorCode=""),
        make_record("root", "2024-08-02T08:30:02Z", userIdentity={"type": "Root"}, errorCode="Throttling"),
    ]
    rules = (*RULES, *loaded.rules)
    for batch in both_ways(records):
        expected = reference(batch.raws, rules=rules)
        assert {h.rule_id for h in expected[1]} & {rule.id for rule in loaded.rules}
        assert by_columns(batch, rules=rules) == expected


@pytest.mark.parametrize("max_keys", [1000, 7], ids=["no key forgotten", "keys forgotten"])
def test_first_seen_learns_a_batch_from_its_firsts_as_it_would_event_by_event(max_keys):
    rng = np.random.default_rng(5)
    keys = [f"k{k}" for k in rng.integers(0, 12, 3000)]
    values = [None if v == 0 else f"v{v}" for v in rng.integers(0, 40, 3000)]
    times = sorted(rng.uniform(0, 20_000, 3000).tolist())
    spec = FirstSeen(lambda r: r, lambda r: r, "value")
    one_by_one, at_once = (FirstSeenTracker(spec, 3600, max_keys=max_keys, max_values=25) for _ in range(2))
    for part in (slice(0, 1200), slice(1200, 3000)):
        expected = []
        for i, (key, value, t) in enumerate(zip(keys[part], values[part], times[part])):
            seen = one_by_one.learn(key, value, t)
            if seen is not None:
                expected.append((i, seen, one_by_one.known(key)))
        assert at_once.learn_many(keys[part], values[part], times[part]) == expected
        assert list(at_once._known.items()) == list(one_by_one._known.items())


def test_a_detector_fed_by_the_engine_lets_go_of_the_eventids_a_replay_made_it_keep():
    detector = Detector()
    detector.observe(all_stratus())  # the restore replays the saved history as records
    assert detector.remembered_ids > 0
    batch = normalise_all([make_record("new", "2024-08-02T08:30:00Z")], Rejects())
    detector.observe_batch(batch, np.arange(1))
    assert detector.remembered_ids == 0
