"""The normaliser's fast path for large inputs: many records at once, parsed in native code.

``normalise_lines`` gives exactly what ``normalise_all`` gives for the same JSON texts (the
same rows in the same order, the same rejects with the same reasons and samples), which a
property test holds. It gets there by reading each block of records with pyarrow's JSON
reader against an explicit schema of the columns a row needs and computing the row with
vectorised expressions, but only for records that are *plain*: every field of the expected
type, short, an eventTime in CloudTrail's own format and in range. Anything else, and any
block pyarrow refuses, goes through ``metrics.normalise.normalise`` record by record, so that
function stays the one definition of what a record means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from metrics.events import COLUMNS, POSITION, Batch
from metrics.normalise import (
    EARLIEST_EVENT_NS,
    MAX_FIELD_CHARS,
    MAX_RECORD_BYTES,
    TEXT_FIELDS,
    RejectedRecord,
    Rejects,
    latest_event_ns,
    normalise,
)
from metrics.records import _reason

_S = pa.string()
_IDENTITY = pa.struct(
    [
        ("type", _S),
        ("userName", _S),
        ("invokedBy", _S),
        ("principalId", _S),
        ("arn", _S),
        ("accountId", _S),
        ("sessionContext", pa.struct([("sessionIssuer", pa.struct([("userName", _S)]))])),
    ]
)
_TEXT = TEXT_FIELDS
SCHEMA = pa.schema(
    [("eventID", _S), ("eventTime", _S), *((name, _S) for name in _TEXT), ("readOnly", pa.bool_())]
    + [("userIdentity", _IDENTITY)]
)
_PARSE = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
# CloudTrail writes eventTime as 2024-08-02T08:30:00Z; other spellings take the slow path.
_PLAIN_TIME = r"^\d{4}-\d{2}-\d{2}T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ$"
# A record this short cannot pass MAX_RECORD_BYTES once re-serialised (a number spelled 1e15
# grows 4.5 times, the worst case), so the size check is left to the slow path above it.
_PLAIN_BYTES = MAX_RECORD_BYTES // 5
# Escaped UTF-16 surrogates: orjson refuses a lone one; pyarrow's reader may not.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
READ_BLOCK_BYTES = 1 << 20


class _Trail(msgspec.Struct):
    Records: list[msgspec.Raw]


# Each record's JSON text as it is in a trail document, checked as JSON on the way.
TRAIL_RECORDS = msgspec.json.Decoder(_Trail)
# Texts read by one pyarrow call; a block pyarrow refuses is halved (below).
BLOCK_LINES = 16_384
# A block pyarrow refuses is halved until the odd record is alone among this many.
_SMALLEST_BLOCK = 64


def normalise_lines(
    lines: list[bytes],
    rejects: Rejects,
    origin: str = "",
    now_ns: int | None = None,
    numbers: list[int] | None = None,
    checked: bool = False,
) -> Batch:
    """The events of JSON texts (one record each, no blank ones), as ``normalise_all`` would
    make them after ``orjson.loads`` of each text, an unparseable one counted as ``Unreadable``
    at ``origin:number`` (``numbers[i]`` is the line number of ``lines[i]``, default i + 1).
    ``checked``: the texts are known to be valid UTF-8 without a lone escaped surrogate (cut
    by msgspec, which refuses those), so the scans for them are skipped.

    The raw JSON kept for drill-down is the text as given."""
    latest = latest_event_ns(now_ns)
    numbers = numbers if numbers is not None else range(1, len(lines) + 1)
    parts = []
    step = BLOCK_LINES
    for start in range(0, len(lines), step):
        block = lines[start : start + step]
        parts.append(_block(block, numbers[start : start + step], latest, rejects, origin, checked=checked))
    return Batch.concat(parts)


def _block(lines, numbers, latest: int, rejects: Rejects, origin: str, records=None, checked=False) -> Batch:
    """One block of texts: vectorised for the plain ones, the normaliser for the rest."""
    n = len(lines)
    if not n:
        return Batch()
    plain = None
    data = b"\n".join(lines)
    # pyarrow 26 crashes on a text such as "null" at the start of a block: only objects go to it.
    objects = all(line.startswith(b"{") for line in lines)
    if not objects or checked or (not _has_surrogate(data) and _valid_utf8(data)):
        lengths = np.fromiter(map(len, lines), dtype=np.int64, count=n)
        table = None
        try:
            # Blocks of about a MiB are parsed on both cores, and cheaper per record than one
            # big block; a block must hold the longest line whole.
            if objects:
                table = pj.read_json(
                    pa.BufferReader(data),
                    read_options=pj.ReadOptions(block_size=max(READ_BLOCK_BYTES, int(lengths.max()) + 2)),
                    parse_options=_PARSE,
                )
        except pa.ArrowInvalid:
            pass
        if table is not None and table.num_rows == n:
            plain, columns = _vectorised(table, latest)
            columns = _rows(columns)
            plain &= lengths <= _PLAIN_BYTES
        elif n > _SMALLEST_BLOCK:
            halves = ((0, n // 2), (n // 2, n))
            return Batch.concat(
                [
                    _block(lines[a:b], _part(numbers, a, b), latest, rejects, origin, _part(records, a, b), checked)
                    for a, b in halves
                ]
            )
    if plain is None or not plain.all():
        return _mixed(lines, numbers, latest, rejects, origin, records, plain, columns if plain is not None else None)
    return Batch([column.tolist() for column in columns], list(lines))


def normalise_chunk(
    data: bytes | memoryview,
    rejects: Rejects,
    origin: str = "",
    now_ns: int | None = None,
    first_line: int = 1,
    counted: tuple[str, ...] | None = None,
) -> tuple[Batch | Coded, int] | None:
    """(the events, the number of lines) of a piece of JSON Lines text, as ``normalise_lines``
    gives them for its lines, read by pyarrow as it is: no list of lines, no joining them
    again. None when the text is not one record per line that pyarrow can align with its
    lines (blank lines, ``\\r``, text around a record), for the caller to take the line path.
    ``counted``: the columns a batch count reads; a piece whose every record is plain then
    comes back as ``Coded`` events with only those columns (batch counting keeps no rows).
    ``data`` may be a memoryview of a larger read: nothing here copies it."""
    body = data[:-1] if data[-1:] == b"\n" else data
    view = np.frombuffer(body, dtype=np.uint8)
    if not len(view) or view[-1] == 10 or (view == 13).any() or _has_surrogate(body) or not _valid_utf8(body):
        return None
    ends = np.flatnonzero(view == 10)
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [len(body)]))
    # Each line one object: it opens with "{" and closes with "}", so no object spans lines
    # (a line within one would start after a ":" or "," and the line before it end so).
    if (view[starts] != 0x7B).any() or (view[stops - 1] != 0x7D).any():
        return None
    lengths = stops - starts
    try:
        table = pj.read_json(
            pa.BufferReader(body),
            read_options=pj.ReadOptions(block_size=max(READ_BLOCK_BYTES, int(lengths.max()) + 2)),
            parse_options=_PARSE,
        )
    except pa.ArrowInvalid:
        return None
    n = len(starts)
    if table.num_rows != n:  # two records on a line
        return None
    latest = latest_event_ns(now_ns)
    plain, columns = _vectorised(table, latest)
    plain &= lengths <= _PLAIN_BYTES
    if plain.all() and counted is not None:
        return Coded.of(columns, counted), n
    columns = _rows(columns)
    lines = bytes(body).split(b"\n")
    if plain.all():
        return Batch([column.tolist() for column in columns], lines), n
    numbers = range(first_line, first_line + n)
    return _mixed(lines, numbers, latest, rejects, origin, None, plain, columns), n


@dataclass
class Coded:
    """Plain events of one piece for counting alone: their eventIDs and times, and the
    counted text columns as codes into their distinct values (-1 for None). No Python string
    is made per row but the eventID, which deduplicating needs."""

    event_ids: np.ndarray
    times: np.ndarray
    codes: dict[str, np.ndarray]
    labels: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def of(cls, columns: list, names: tuple[str, ...]) -> Coded:
        codes, labels = {}, {}
        for name in names:
            codes[name], labels[name] = coded(columns[POSITION[name]])
        return cls(columns[POSITION["eventID"]], columns[POSITION["eventTime"]], codes, labels)

    def select(self, positions: np.ndarray) -> Coded:
        codes = {name: column[positions] for name, column in self.codes.items()}
        return Coded(self.event_ids[positions], self.times[positions], codes, self.labels)


def _part(items, start: int, end: int):
    return None if items is None else items[start:end]


def _mixed(lines, numbers, latest, rejects, origin, records, plain, columns) -> Batch:
    """Rows in input order: the vectorised values where plain, the normaliser's elsewhere."""
    n = len(lines)
    raws = list(lines)
    keep = np.ones(n, dtype=bool)
    out = [np.empty(n, dtype=object) for _ in COLUMNS]
    if plain is not None:
        for target, column in zip(out, columns):
            target[plain] = column[plain]
        odd = np.flatnonzero(~plain).tolist()
    else:
        odd = range(n)
    for i in odd:
        if records is not None:
            record = records[i]
        else:
            try:
                record = orjson.loads(lines[i])
            except orjson.JSONDecodeError as error:
                number = numbers[i] if numbers is not None else i + 1
                rejects.add(_reason(str(error)), f"{origin}:{number}", lines[i])
                keep[i] = False
                continue
        try:
            row, raw = normalise(record, latest)
        except RejectedRecord as rejected:
            rejects.add(rejected.reason, origin, record)
            keep[i] = False
            continue
        for target, value in zip(out, row):
            target[i] = value
        raws[i] = raw
    if keep.all():
        return Batch([column.tolist() for column in out], raws)
    positions = np.flatnonzero(keep)
    return Batch([column[positions].tolist() for column in out], [raws[i] for i in positions.tolist()])


def _has_surrogate(data: bytes | memoryview) -> bool:
    # (The regex alone: a test for b"\\u" first scans twice as slowly as it.)
    return _SURROGATE.search(data) is not None


def _valid_utf8(data: bytes | memoryview) -> bool:
    if data.isascii() if isinstance(data, bytes) else np.frombuffer(data, dtype=np.uint8).max(initial=0) < 0x80:
        return True
    try:
        str(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _short(array: pa.Array, limit: int = MAX_FIELD_CHARS) -> np.ndarray:
    """Whether each value is surely within ``limit`` characters: no more bytes than that (a
    longer text of fewer characters is left to the slow path, which counts characters)."""
    return pc.fill_null(pc.less_equal(pc.binary_length(array), limit), True).to_numpy(zero_copy_only=False)


def _text(array: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(values with "" as None, whether each is short enough to be plain)."""
    short = _short(array)
    empty = pc.fill_null(pc.equal(array, ""), False)
    return pc.if_else(empty, pa.scalar(None, _S), array), short


def coded(array: pa.Array) -> tuple[np.ndarray, list[str]]:
    """(a code per value, -1 for None; the distinct values): what counting reads, with no
    Python string made per row."""
    encoded = pc.dictionary_encode(array)
    return pc.fill_null(encoded.indices, -1).to_numpy(), encoded.dictionary.to_pylist()


def _objects(array: pa.Array) -> np.ndarray:
    """The values as Python objects, one object per distinct text: making a Python string
    per row cost more than the rest of the normalising, and the buffer then hashes each
    distinct object once."""
    codes, values = coded(array)
    return np.array([*values, None], dtype=object)[codes]  # code -1: the None at the end


def _rows(columns: list) -> list[np.ndarray]:
    """``_vectorised``'s columns with the text ones as Python objects."""
    return [_objects(column) if isinstance(column, pa.Array) else column for column in columns]


def _present(array: pa.Array) -> pa.Array:
    """Whether each value is a non-empty string (what the normaliser's truth tests ask)."""
    return pc.fill_null(pc.greater(pc.binary_length(array), 0), False)


def _vectorised(table: pa.Table, latest: int) -> tuple[np.ndarray, list[np.ndarray | pa.Array]]:
    """(which rows are plain, the row columns in ``COLUMNS`` order): eventID, eventTime and
    readOnly as numpy arrays, the texts as Arrow arrays (``_rows`` makes them objects)."""
    table = table.combine_chunks()
    n = table.num_rows
    plain = np.ones(n, dtype=bool)

    event_id = table["eventID"].chunk(0) if n else pa.array([], _S)
    plain &= _present(event_id).to_numpy(zero_copy_only=False) & _short(event_id, 128)

    times_text = table["eventTime"].chunk(0)
    well_formed = pc.fill_null(pc.match_substring_regex(times_text, _PLAIN_TIME), False)
    time_texts = pc.if_else(well_formed, times_text, pa.scalar("2013-01-01T00:00:00Z"))
    parsed = pc.strptime(time_texts, format="%Y-%m-%dT%H:%M:%SZ", unit="s", error_is_null=True)
    # strptime rolls an impossible date such as February 30 or month 13 over, which changes
    # its day or month; the normaliser refuses it. (Cheaper than strftime and comparing.)
    round_trip = pc.fill_null(
        pc.and_(_same_number(pc.day(parsed), time_texts, 8), _same_number(pc.month(parsed), time_texts, 5)), False
    )
    seconds = pc.fill_null(parsed.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    times = seconds * 1_000_000_000
    plain &= well_formed.to_numpy(zero_copy_only=False) & round_trip.to_numpy(zero_copy_only=False)
    plain &= (times >= EARLIEST_EVENT_NS) & (times <= latest)

    texts = {}
    for name in _TEXT:
        texts[name], short = _text(table[name].chunk(0))
        plain &= short

    read_only = table["readOnly"].chunk(0).to_numpy(zero_copy_only=False)

    identity = table["userIdentity"].chunk(0)
    fields = {name: pc.struct_field(identity, name) for name in ("type", "userName", "invokedBy", "principalId", "arn")}
    fields["accountId"] = pc.struct_field(identity, "accountId")
    issuer = pc.struct_field(pc.struct_field(pc.struct_field(identity, "sessionContext"), "sessionIssuer"), "userName")
    for value in (*fields.values(), issuer):
        plain &= _short(value)
    kind = fields["type"]
    root = pc.fill_null(pc.equal(kind, "Root"), False)
    assumed = pc.and_(pc.fill_null(pc.is_in(kind, pa.array(["AssumedRole", "FederatedUser"])), False), _present(issuer))
    after_slash = _session_of(fields["arn"])
    named = [
        pc.if_else(_present(fields[k]), fields[k], pa.scalar(None, _S))
        for k in ("userName", "invokedBy", "principalId")
    ]
    fallback = pc.coalesce(*named, pa.scalar("unknown"))
    user = pc.if_else(root, pa.scalar("root"), pc.if_else(assumed, issuer, fallback))
    session = pc.if_else(pc.and_(pc.invert(root), assumed), after_slash, pa.scalar(None, _S))
    session = pc.if_else(_present(session), session, pa.scalar(None, _S))

    def identity_text(value):
        return pc.if_else(_present(value), value, pa.scalar(None, _S))

    recipient = table["recipientAccountId"].chunk(0)
    account = identity_text(pc.if_else(_present(recipient), recipient, fields["accountId"]))

    columns = [
        event_id.to_numpy(zero_copy_only=False),
        times,
        texts["eventSource"],
        texts["eventName"],
        texts["awsRegion"],
        texts["sourceIPAddress"],
        texts["userAgent"],
        texts["errorCode"],
        texts["errorMessage"],
        read_only,
        texts["eventType"],
        account,
        user,
        session,
        identity_text(kind),
        identity_text(fields["arn"]),
    ]
    return plain, columns


def _same_number(parts: pa.Array, texts: pa.Array, at: int) -> pa.Array:
    """Whether each of ``parts`` is the two-digit number at ``at`` in its text."""
    return pc.equal(parts, pc.cast(pc.utf8_slice_codeunits(texts, at, at + 2), pa.int64()))


def _session_of(arn: pa.Array) -> pa.Array:
    """The text after the last "/" of each ARN, worked out once per distinct ARN."""
    encoded = (
        pc.dictionary_encode(arn).combine_chunks() if isinstance(arn, pa.ChunkedArray) else pc.dictionary_encode(arn)
    )
    sessions = [a.rsplit("/", 1)[-1] if "/" in a else None for a in encoded.dictionary.to_pylist()]
    return pc.take(pa.array(sessions, _S), encoded.indices)


TRAIL_START = re.compile(rb'\s*\{\s*"Records"\s*:\s*\[')
_TRAIL_SCHEMA = pa.schema([("Records", pa.list_(pa.struct(list(SCHEMA))))])
_TRAIL_PARSE = pj.ParseOptions(explicit_schema=_TRAIL_SCHEMA, unexpected_field_behavior="ignore")


def _holds_long_record(data: bytes) -> bool:
    """Whether a trail document holds a record too long to be surely under MAX_RECORD_BYTES
    (or is not one msgspec reads): its size is then for the per-record path to judge."""
    try:
        records = TRAIL_RECORDS.decode(data).Records
    except (msgspec.DecodeError, msgspec.ValidationError):
        return True
    return any(len(record) >= _PLAIN_BYTES for record in records)


def normalise_trails(documents: list[bytes], now_ns: int | None = None) -> tuple[Batch, list[int]] | None:
    """The events of trail files' bytes (each ``{"Records": [...]}`` on one line, as CloudTrail
    writes them) read in one go, and how many records each held, when every record is plain;
    None otherwise, for the caller to take the per-record path. Keeps no raw records: for
    batch use, where nothing drills down to a record."""
    for data in documents:
        if not TRAIL_START.match(data) or b"\n" in data.strip():
            return None
        if len(data) >= _PLAIN_BYTES and _holds_long_record(data):
            return None  # the per-record path rejects it as too large, or takes it
    data = b"\n".join(documents)
    if _has_surrogate(data) or not _valid_utf8(data):
        return None
    try:
        table = pj.read_json(
            pa.BufferReader(data), read_options=pj.ReadOptions(block_size=len(data) + 1), parse_options=_TRAIL_PARSE
        )
    except pa.ArrowInvalid:
        return None
    lists = table["Records"].combine_chunks()
    if table.num_rows != len(documents) or lists.null_count:
        return None
    records = lists.flatten()
    if records.null_count:
        return None
    plain, columns = _vectorised(pa.Table.from_struct_array(records), latest_event_ns(now_ns))
    if not plain.all():
        return None
    rows = _rows(columns)
    return Batch([column.tolist() for column in rows], [b""] * len(plain)), lists.value_lengths().to_pylist()
