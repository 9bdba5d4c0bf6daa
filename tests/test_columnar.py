"""The columnar fast path agrees with the one normaliser: same rows, same order, same rejects.

Records are generated with the odd cases real trails and hostile input hold: identity types
and shapes, missing and wrong-typed fields, over-long texts, impossible or out-of-range
eventTimes, and lines that are not JSON, not UTF-8 or hold a lone surrogate.
"""

import gzip
import io
import json

import orjson
import pyarrow.json as pj
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics import columnar
from metrics.columnar import normalise_lines
from metrics.events import Batch
from metrics.ingest import document_batches
from metrics.normalise import MAX_FIELD_CHARS, Rejects, normalise_all
from metrics.records import iter_bytes
from tests.conftest import BASE_RECORD

NOW = 1_800_000_000 * 1_000_000_000  # 2027-01-15
MISSING = object()

texts = st.one_of(
    st.sampled_from(["", "ec2.amazonaws.com", "AccessDenied", "us-east-1", "a/b", "é" * 3000]),
    st.text(max_size=12),
    st.just("x" * (MAX_FIELD_CHARS + 1)),
    st.just("é" * (MAX_FIELD_CHARS - 1)),
)
odd_values = st.one_of(st.none(), st.integers(-(2**70), 2**70), st.booleans(), st.lists(st.integers(), max_size=2))
fields = st.one_of(texts, texts, texts, odd_values, st.just(MISSING))
time_texts = st.one_of(
    st.datetimes(min_value=__import__("datetime").datetime(2012, 6, 1)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.sampled_from(
        [
            "2024-08-02T08:30:00Z",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-10T00:00:00Z",
            "2024-08-00T00:00:00Z",
            "2024-08-02T24:00:00Z",
            "2024-08-02T08:30:60Z",
            "2012-12-31T23:59:59Z",
            "2013-01-01T00:00:00Z",
            "2027-01-16T07:59:59Z",
            "2027-01-16T08:00:01Z",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "2024-08-02T08:30:00.123Z",
            "2024-08-02T08:30:00+02:00",
            "2024-08-02T08:30:00",
            "2024-08-02",
            "yesterday",
            "",
        ]
    ),
)
event_times = st.one_of(time_texts, odd_values, st.just(MISSING))
typed_event_times = st.one_of(time_texts, st.just(MISSING))
identity_types = st.sampled_from(["Root", "IAMUser", "AssumedRole", "FederatedUser", "AWSService", "", "Unknown"])
identities = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(identity_types, odd_values),
            "userName": fields,
            "invokedBy": fields,
            "principalId": fields,
            "arn": st.one_of(st.sampled_from(["arn:aws:sts::1:assumed-role/r/s", "arn/", "no-slash", "a/b/c"]), fields),
            "accountId": fields,
            "sessionContext": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "sessionIssuer": st.one_of(
                            st.fixed_dictionaries({}, optional={"userName": fields, "arn": fields}), odd_values, texts
                        )
                    },
                ),
                odd_values,
            ),
        },
    ),
    odd_values,
    texts,
    st.just(MISSING),
)
read_only = st.one_of(st.booleans(), st.none(), st.sampled_from(["true", "false", "yes", 1]), st.just(MISSING))
extras = st.dictionaries(
    st.sampled_from(["requestParameters", "tlsDetails", "additionalEventData"]),
    st.one_of(odd_values, st.floats(allow_nan=False, allow_infinity=False), st.just(1e15), texts),
    max_size=2,
)


typed_fields = st.one_of(texts, st.none(), st.just(MISSING))
typed_identities = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(identity_types, st.none()),
        "userName": typed_fields,
        "invokedBy": typed_fields,
        "principalId": typed_fields,
        "arn": st.one_of(
            st.sampled_from(["arn:aws:sts::1:assumed-role/r/s", "arn/", "no-slash", "a/b/c"]), typed_fields
        ),
        "accountId": typed_fields,
        "sessionContext": st.fixed_dictionaries(
            {}, optional={"sessionIssuer": st.fixed_dictionaries({}, optional={"userName": typed_fields})}
        ),
    },
)


@st.composite
def records(draw, typed=False):
    """A record; ``typed`` ones hold only the types the columnar schema reads (text or null),
    so that the vectorised expressions rather than the fallback decide them."""
    fields = typed_fields if typed else globals()["fields"]
    identities = typed_identities if typed else globals()["identities"]
    read_only = st.one_of(st.booleans(), st.none()) if typed else globals()["read_only"]
    record = dict(BASE_RECORD)
    record["eventID"] = draw(st.one_of(st.uuids().map(str), st.uuids().map(str), fields, st.just("i" * 129)))
    record["eventTime"] = draw(
        event_times.filter(lambda t: isinstance(t, str) or t is MISSING) if typed else event_times
    )
    for name in ("eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent", "errorCode"):
        if draw(st.booleans()):
            record[name] = draw(fields)
    for name in ("errorMessage", "eventType", "recipientAccountId"):
        if draw(st.integers(0, 3)) == 0:
            record[name] = draw(fields)
    if draw(st.booleans()):
        record["readOnly"] = draw(read_only)
    if draw(st.booleans()):
        record["userIdentity"] = draw(identities)
    if not typed:
        record.update(draw(extras))
    return without_missing(record)


def without_missing(value):
    if isinstance(value, dict):
        return {k: without_missing(v) for k, v in value.items() if v is not MISSING}
    return value


def dumps(value) -> bytes:
    """JSON as another writer would make it: any integer size, UTF-8 text unescaped."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def to_line(record: dict, damage: int) -> bytes:
    line = dumps(record)
    if damage == 1:
        return line.replace(b'"eventName"', b'"event\xffName"')  # invalid UTF-8
    if damage == 2:
        return line[: len(line) // 2]  # cut short
    if damage == 3:
        return line.replace(b'"awsRegion":"', b'"awsRegion":"\\ud800')  # a lone surrogate
    if damage == 4:
        return b"[1, 2]"
    return line


lines_of = st.lists(st.tuples(records(), st.sampled_from([0] * 12 + [1, 2, 3, 4])), max_size=100).map(
    lambda pairs: [to_line(record, damage) for record, damage in pairs]
)
FAST = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def reference(lines: list[bytes]):
    """What the per-record path makes of JSON Lines: parse each, then the one normaliser."""
    rejects = Rejects()
    batch = normalise_all(iter_bytes(b"\n".join(lines), "f.jsonl"), rejects, "f.jsonl", now_ns=NOW)
    return batch, rejects


def joined(pieces) -> Batch:
    whole = Batch()
    for piece in pieces:
        whole.extend(piece)
    return whole


def assert_same(fast, fast_rejects, slow, slow_rejects):
    assert fast.columns == slow.columns
    assert [orjson.loads(r) for r in fast.raws] == [orjson.loads(r) for r in slow.raws]
    assert fast_rejects.counts == slow_rejects.counts
    assert [s["reason"] for s in fast_rejects.latest()] == [s["reason"] for s in slow_rejects.latest()]


@FAST
@given(lines_of)
def test_json_lines_give_the_same_rows_and_rejects_on_both_paths(lines):
    if len(lines) < 2:
        lines = [*lines, orjson.dumps(BASE_RECORD), orjson.dumps(BASE_RECORD)]
    lines[0] = orjson.dumps(BASE_RECORD)  # so that the reader takes the text for JSON Lines
    slow, slow_rejects = reference(lines)
    rejects = Rejects()
    fast = normalise_lines(list(lines), rejects, "f.jsonl", now_ns=NOW)
    assert_same(fast, rejects, slow, slow_rejects)
    # And through the file reader, which also decides the format and numbers the lines.
    rejects = Rejects()
    whole = joined(document_batches(b"\n".join(lines), rejects, "f.jsonl", now_ns=NOW))
    assert_same(whole, rejects, slow, slow_rejects)
    assert [s["origin"] for s in rejects.latest()] == [s["origin"] for s in slow_rejects.latest()]


@FAST
@given(st.lists(records(typed=True), min_size=2, max_size=40))
def test_records_of_the_schema_types_are_decided_by_the_vectorised_path_as_by_the_normaliser(items):
    lines = [dumps(record) for record in items]
    table = pj.read_json(io.BytesIO(b"\n".join(lines)), parse_options=columnar._PARSE)
    assert table.num_rows == len(lines)  # nothing here falls back for the reader's sake
    slow, slow_rejects = reference(lines)
    rejects = Rejects()
    fast = normalise_lines(list(lines), rejects, "f.jsonl", now_ns=NOW)
    assert_same(fast, rejects, slow, slow_rejects)


@FAST
@given(st.lists(st.one_of(records(), records(), records(), odd_values, texts), max_size=100), st.booleans())
def test_a_trail_file_gives_the_same_rows_and_rejects_on_both_paths(items, zipped):
    data = dumps({"Records": items})
    if zipped:
        data = gzip.compress(data)
    slow_rejects, rejects = Rejects(), Rejects()
    slow = normalise_all(iter_bytes(data, "t.json.gz"), slow_rejects, "t.json.gz", now_ns=NOW)
    fast = joined(document_batches(data, rejects, "t.json.gz", now_ns=NOW))
    assert_same(fast, rejects, slow, slow_rejects)


def test_plain_records_take_the_vectorised_path_and_keep_their_text_as_raw():
    lines = [orjson.dumps({**BASE_RECORD, "eventID": f"id-{i}"}) for i in range(100)]
    batch = normalise_lines(list(lines), Rejects(), now_ns=NOW)
    assert batch.raws == lines
    assert batch.column("user")[:2] == ["alice", "alice"]
    assert batch.column("eventTime")[0] == 1_722_587_400 * 1_000_000_000


@FAST
@given(st.lists(st.lists(st.one_of(records(typed=True), records()), max_size=20), min_size=1, max_size=8))
def test_trail_files_read_together_give_the_normalisers_rows_or_step_aside(files):
    documents = [dumps({"Records": items}) for items in files]
    slow_rejects = Rejects()
    slow = joined(normalise_all(iter_bytes(d, "t"), slow_rejects, "t", now_ns=NOW) for d in documents)
    read = columnar.normalise_trails(documents, now_ns=NOW)
    if read is None:
        return  # something odd: the caller reads these the per-record way, tested above
    fast, counts = read
    assert fast.columns == slow.columns
    assert counts == [len(items) for items in files]
    assert not slow_rejects.total


def test_plain_trail_files_are_read_together_the_fast_way():
    documents = [dumps({"Records": [{**BASE_RECORD, "eventID": f"{f}-{i}"} for i in range(f)]}) for f in range(4)]
    fast, counts = columnar.normalise_trails(documents, now_ns=NOW)
    assert counts == [0, 1, 2, 3]
    assert fast.column("eventID") == ["1-0", "2-0", "2-1", "3-0", "3-1", "3-2"]


@pytest.mark.parametrize(
    "impossible",
    [
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-08-00T00:00:00Z",
    ],
)
def test_an_impossible_date_is_left_to_the_normaliser_which_rejects_it(impossible):
    lines = [
        dumps({**BASE_RECORD, "eventID": f"id-{i}", "eventTime": t})
        for i, t in enumerate([impossible, "2024-02-29T00:00:00Z"])
    ]
    rejects = Rejects()
    batch = normalise_lines(lines, rejects, now_ns=NOW)
    assert batch.column("eventID") == ["id-1"]
    assert rejects.counts == {"invalid eventTime": 1}
    assert columnar.normalise_trails([dumps({"Records": [orjson.loads(lines[0])]})], now_ns=NOW) is None


def damaged_document(items: list, damage: int) -> bytes:
    """A trail document as another writer may leave it: gzipped, with a BOM, with invalid
    UTF-8 or an escaped surrogate (lone, or a valid pair) in a record."""
    data = dumps({"Records": items})
    if damage == 1:
        data = data.replace(b'"eventName":"', b'"eventName":"\xff', 1)
    elif damage == 2:
        data = data.replace(b'"awsRegion":"', b'"awsRegion":"\\ud800', 1)
    elif damage == 3:
        data = data.replace(b'"awsRegion":"', b'"awsRegion":"\\ud83d\\ude00', 1)
    elif damage == 4:
        data = b"\xef\xbb\xbf" + data
    elif damage == 5:
        data = data[: len(data) // 2]
    return gzip.compress(data) if damage == 6 or damage == 0 and len(items) % 2 else data


documents_of = st.lists(
    st.tuples(
        st.lists(st.one_of(records(typed=True), records(), records(), odd_values, texts), max_size=30),
        st.sampled_from([0] * 6 + [1, 2, 3, 4, 5, 6]),
    ),
    min_size=1,
    max_size=6,
)


@FAST
@given(documents_of)
def test_a_large_poll_of_trail_documents_gives_the_same_rows_and_rejects_as_the_per_record_path(documents):
    from metrics.documents import Document, normalise_documents

    def items():
        return [Document(damaged_document(r, damage), f"d{i}.json") for i, (r, damage) in enumerate(documents)]

    slow_rejects, fast_rejects = Rejects(), Rejects()
    slow, _ = normalise_documents(items(), slow_rejects, "files", now_ns=NOW, fast_bytes=float("inf"))
    fast, observed = normalise_documents(items(), fast_rejects, "files", now_ns=NOW, fast_bytes=0)
    assert_same(fast, fast_rejects, slow, slow_rejects)
    assert {s["sample"] for s in fast_rejects.latest()} == {s["sample"] for s in slow_rejects.latest()}
    assert observed == fast.raws


COUNTED = ("eventSource", "eventName", "user", "errorCode", "awsRegion")


def counted_columns(pieces, names=COUNTED) -> dict[str, list]:
    """eventID, eventTime and ``names`` of rows and ``Coded`` pieces alike, decoded."""
    out = {name: [] for name in ("eventID", "eventTime", *names)}
    for piece in pieces:
        if isinstance(piece, columnar.Coded):
            out["eventID"] += piece.event_ids.tolist()
            out["eventTime"] += piece.times.tolist()
            for name in names:
                labels = piece.labels[name]
                out[name] += [labels[code] if code >= 0 else None for code in piece.codes[name].tolist()]
        else:
            for name in out:
                out[name] += piece.column(name)
    return out


@FAST
@given(lines_of, st.booleans())
def test_a_large_json_lines_file_read_chunk_by_chunk_gives_the_same_rows_and_rejects(lines, counting):
    import tempfile
    from pathlib import Path

    from metrics import ingest

    lines = [orjson.dumps(BASE_RECORD), *lines]
    slow, slow_rejects = reference(lines)
    sizes = ingest.STREAM_BYTES, ingest.CHUNK_BYTES
    ingest.STREAM_BYTES, ingest.CHUNK_BYTES = 100, 700  # several chunks, cut between lines
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "f.jsonl"
            path.write_bytes(b"\n".join(lines) + b"\n")
            rejects = Rejects()
            pieces = list(ingest.file_batches(path, rejects, now_ns=NOW, counted=COUNTED if counting else None))
    finally:
        ingest.STREAM_BYTES, ingest.CHUNK_BYTES = sizes
    assert fast_rejects_origins(rejects) == [s["origin"].replace("f.jsonl", str(path)) for s in slow_rejects.latest()]
    assert rejects.counts == slow_rejects.counts
    if counting:
        assert counted_columns(pieces) == counted_columns([slow])
    else:
        fast = joined(pieces)
        assert fast.columns == slow.columns
        assert [orjson.loads(r) for r in fast.raws] == [orjson.loads(r) for r in slow.raws]


def fast_rejects_origins(rejects: Rejects) -> list[str]:
    return [s["origin"] for s in rejects.latest()]


def test_plain_json_lines_are_read_as_one_chunk_and_odd_ones_take_the_line_path():
    lines = [orjson.dumps({**BASE_RECORD, "eventID": f"id-{i}"}) for i in range(5)]
    rejects = Rejects()
    batch, count = columnar.normalise_chunk(b"\n".join(lines) + b"\n", rejects, now_ns=NOW)
    assert count == 5 and batch.column("eventID") == [f"id-{i}" for i in range(5)] and batch.raws == lines
    coded, count = columnar.normalise_chunk(b"\n".join(lines), rejects, now_ns=NOW, counted=("eventName", "errorCode"))
    assert count == 5 and coded.event_ids.tolist() == [f"id-{i}" for i in range(5)]
    assert counted_columns([coded], ("eventName", "errorCode")) == counted_columns([batch], ("eventName", "errorCode"))
    assert coded.codes["errorCode"].tolist() == [-1] * 5 and set(coded.codes) == {"eventName", "errorCode"}
    for odd in (b"\n".join(lines[:2]) + b"\n\n", lines[0] + b"\r\n" + lines[1], lines[0] + b" " + lines[1]):
        assert columnar.normalise_chunk(odd, rejects, now_ns=NOW) is None
    mixed = b"\n".join([lines[0], b'{"eventID": "", "eventTime": "2024-08-02T08:30:00Z"}', lines[1]])
    batch, count = columnar.normalise_chunk(mixed, rejects, "f", now_ns=NOW, first_line=10)
    assert count == 3 and batch.column("eventID") == ["id-0", "id-1"]
    assert rejects.counts == {"missing eventID": 1}
    assert columnar.normalise_chunk(lines[0] + b'\n{"eventID": 7}', rejects, now_ns=NOW) is None  # pyarrow refuses


def test_a_record_that_is_not_an_object_is_rejected_without_reaching_pyarrow_which_would_crash_on_it():
    # pyarrow 26's JSON reader dies (SIGSEGV) on a block that starts with "null".
    good = orjson.dumps(BASE_RECORD)
    for texts in ([b"null", good], [good, b"null"], [b"7", b'"x"', b"[1]", good] * 40):
        rejects = Rejects()
        batch = normalise_lines(texts, rejects, "f", now_ns=NOW)
        assert len(batch) == texts.count(good)
        assert rejects.counts == {"not a JSON object": len(texts) - texts.count(good)}


@FAST
@given(lines_of, st.integers(1, 50))
def test_a_large_poll_of_json_lines_gives_the_same_rows_and_rejects_as_the_per_record_path(lines, first_line):
    from metrics.documents import Lines, normalise_documents

    data = b"\n".join([orjson.dumps(BASE_RECORD), *lines]) + b"\n"
    slow_rejects, fast_rejects = Rejects(), Rejects()
    items = [Lines(data, "f.jsonl", first_line)]
    slow, _ = normalise_documents(items, slow_rejects, now_ns=NOW, fast_bytes=float("inf"))
    fast, _ = normalise_documents(items, fast_rejects, now_ns=NOW, fast_bytes=0)
    assert_same(fast, fast_rejects, slow, slow_rejects)
    assert {s["sample"] for s in fast_rejects.latest()} == {s["sample"] for s in slow_rejects.latest()}


@pytest.mark.parametrize("ending", [b"\n", b""], ids=["newline at the end", "no newline at the end"])
def test_a_streamed_file_with_a_byte_order_mark_and_a_line_longer_than_a_read_keeps_every_line(tmp_path, ending):
    from metrics import ingest

    long_record = {**BASE_RECORD, "eventID": "long", "requestParameters": {"policy": "x" * 2_000}}
    records = [BASE_RECORD, long_record, {**BASE_RECORD, "eventID": "e3"}, {**BASE_RECORD, "eventID": "e4"}]
    lines = [orjson.dumps(record) for record in records[:2]] + [b"not json"] + [orjson.dumps(r) for r in records[2:]]
    slow, slow_rejects = reference(lines)
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + ending)
    sizes = ingest.STREAM_BYTES, ingest.CHUNK_BYTES
    ingest.STREAM_BYTES, ingest.CHUNK_BYTES = 100, 700  # the long line spans three reads
    try:
        rejects = Rejects()
        fast = joined(ingest.file_batches(path, rejects, now_ns=NOW))
    finally:
        ingest.STREAM_BYTES, ingest.CHUNK_BYTES = sizes
    assert fast.column("eventID") == slow.column("eventID") == [BASE_RECORD["eventID"], "long", "e3", "e4"]
    assert [orjson.loads(r) for r in fast.raws] == records
    assert rejects.counts == slow_rejects.counts
    assert fast_rejects_origins(rejects) == [f"{path}:3"]


@FAST
@given(lines_of, st.lists(st.integers(min_value=0, max_value=99), max_size=8))
def test_a_batch_count_of_a_streamed_file_counts_what_the_engine_counts_holding_every_event(lines, repeats):
    """The CLI's count (``hold=False``: plain pieces as ``Coded``, duplicates by eventID counted
    once) gives every metric the engine gives when it holds each event."""
    import tempfile
    from pathlib import Path

    from metrics import ingest
    from metrics.engine import ANOMALY, METRIC_NAMES, Engine

    lines = [orjson.dumps(BASE_RECORD), *lines]
    lines += [lines[i % len(lines)] for i in repeats]  # duplicates, in and across pieces
    sizes = ingest.STREAM_BYTES, ingest.CHUNK_BYTES
    ingest.STREAM_BYTES, ingest.CHUNK_BYTES = 100, 700
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "f.jsonl"
            path.write_bytes(b"\n".join(lines) + b"\n")
            counted, held = Engine(retention_seconds=None), Engine(retention_seconds=None)
            counted_fed = ingest.feed(counted, [path], Rejects(), NOW, hold=False)
            held_fed = ingest.feed(held, [path], Rejects(), NOW, hold=True)
    finally:
        ingest.STREAM_BYTES, ingest.CHUNK_BYTES = sizes
    assert (counted_fed.added, counted_fed.duplicates) == (held_fed.added, held_fed.duplicates)
    for name in METRIC_NAMES:
        if name != ANOMALY:
            assert counted.metric_frame(name).equals(held.metric_frame(name)), name
