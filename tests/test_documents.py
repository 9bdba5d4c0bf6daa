import gzip
import math
import os
import time

import orjson

from collectors.analyses import Detections
from collectors.collector import Collector
from collectors.files import FileSource
from metrics.detections import Detector
from metrics.documents import Document, Lines, normalise_documents
from metrics.engine import Engine
from metrics.normalise import Rejects, Unreadable
from metrics.triage import Triage
from tests.conftest import all_stratus, make_record

T = "2024-08-02T08:30:{:02d}Z"


def trail(records) -> bytes:
    return orjson.dumps({"Records": records})


def odd_items() -> list:
    good = all_stratus()[:40]
    wrong = [
        make_record("w1", T.format(1), eventName=12),  # wrong type
        make_record("w2", "2024-02-30T00:00:00Z"),  # no such day
        {"eventTime": T.format(2)},  # no eventID
        make_record("w3", T.format(3), userIdentity="root"),
    ]
    return [
        Document(gzip.compress(trail(good[:20])), "a.json.gz"),
        Document(trail([*good[20:30], *wrong, 7, None]), "b.json"),
        Document(b'{"Records": [{"eventID": "x", ', "cut.json"),  # invalid JSON
        Document(b"\x1f\x8bnot gzip", "bad.json.gz"),
        Document(gzip.compress(trail(all_stratus()[:3]))[:-30], "cut.json.gz"),  # a truncated gzip
        Document(b"\x1f\x8b\x08\x00" + b"not gzip" * 8, "corrupt.json.gz"),
        Document(orjson.dumps(good[30:35]), "array.json"),  # a bare JSON array
        Document(b"\n".join(orjson.dumps(r) for r in good[35:38]), "lines.json"),  # JSON Lines in a .json
        Document(trail([{**good[38], "eventSource": "caf\xe9"}]) + b" ", "utf8.json"),
        Document(trail([good[0]]), "again.json"),  # a duplicate of the first record
        Lines(orjson.dumps(good[39]) + b"\n{broken\n\n" + orjson.dumps(wrong[0]) + b"\n", "x.jsonl", 7),
        Unreadable("unreadable file: Permission denied", "denied.json"),
    ]


def normalised(fast: bool):
    rejects = Rejects()
    batch, observed = normalise_documents(odd_items(), rejects, "files", fast_bytes=0 if fast else math.inf)
    return batch, observed, rejects


def test_a_large_poll_gives_the_rows_and_rejects_of_the_per_record_path():
    fast, fast_observed, fast_rejects = normalised(True)
    slow, slow_observed, slow_rejects = normalised(False)
    assert fast.columns == slow.columns
    assert [orjson.loads(r) for r in fast.raws] == [orjson.loads(r) for r in slow.raws]
    assert fast_rejects.counts == slow_rejects.counts
    assert [s["reason"] for s in fast_rejects.latest()] == [s["reason"] for s in slow_rejects.latest()]
    assert {s["sample"] for s in fast_rejects.latest()} == {s["sample"] for s in slow_rejects.latest()}
    assert all(isinstance(r, bytes) for r in fast_observed) and len(fast_observed) == len(fast)
    assert any(isinstance(r, dict) for r in slow_observed)


def test_a_document_counts_its_records_either_way():
    for fast in (True, False):
        items = odd_items()
        normalise_documents(items, Rejects(), "files", fast_bytes=0 if fast else math.inf)
        assert [item.records for item in items[:2]] == [20, 16]


def test_the_collector_feeds_a_large_folder_the_columnar_way_and_the_analyses_raw_json(tmp_path):
    records = [make_record(f"e{i:05d}", T.format(i % 60), userAgent=os.urandom(200).hex()) for i in range(6000)]
    for part in range(6):
        (tmp_path / f"{part}.json.gz").write_bytes(gzip.compress(trail(records[part * 1000 : (part + 1) * 1000])))

    class Seen:
        def __init__(self):
            self.records = []

        def observe(self, records, columns):
            self.records.extend(records)

        def advance(self, watermark_s, limit=None):
            pass

    seen = Seen()
    collector = Collector(FileSource(tmp_path, settle_seconds=0), Engine(retention_seconds=None), analyses=[seen])
    collector.poll_once(time.time())
    assert collector.health.events == 6000 and not collector.health.rejects.total
    assert len(seen.records) == 6000 and all(isinstance(r, bytes) for r in seen.records)
    assert orjson.loads(collector.engine.buffer.raw_record("e01234")) == records[1234]
    assert sorted(collector.engine.buffer.snapshot().frame()["eventID"]) == [r["eventID"] for r in records]


def test_rule_detections_see_every_event_of_a_large_poll_read_the_columnar_way(tmp_path):
    records = all_stratus() + [
        make_record(f"pad{i:05d}", T.format(i % 60), userAgent=os.urandom(200).hex()) for i in range(5000)
    ]
    (tmp_path / "history.json.gz").write_bytes(gzip.compress(trail(records)))
    detector = Detector()
    collector = Collector(
        FileSource(tmp_path, settle_seconds=0),
        Engine(retention_seconds=None),
        analyses=[Detections(detector, Triage())],
    )
    collector.poll_once(time.time())
    assert collector.health.events == len(records)
    expected = Detector().observe(records)
    assert len(expected) >= 40
    assert sorted(h.id for h in detector.hits()) == sorted(h.id for h in expected)
