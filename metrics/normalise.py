"""The one normaliser: a parsed CloudTrail record becomes one event row, or a counted reject.

Every record, whether from a trail file, LookupEvents or the demo generator, passes through
``normalise``. Bad input never raises out of here and is never dropped silently: it is
tallied in ``Rejects`` with its reason and a short sample for inspection.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from metrics.events import Batch

# CloudTrail caps a delivered event at 256 KB; anything larger was not written by CloudTrail.
MAX_RECORD_BYTES = 256 * 1024
# The columns we chart and filter on are short in real records; a huge one is an attack on
# the dashboard or a corrupt record, not a user agent.
MAX_FIELD_CHARS = 8 * 1024
SAMPLE_CHARS = 300
# CloudTrail started in November 2013; a record dated before that, or more than a day after
# the moment it is read, is forged or corrupt, and would stretch every dense series to it.
EARLIEST_EVENT_NS = 1_356_998_400 * 1_000_000_000  # 2013-01-01T00:00:00Z
FUTURE_TOLERANCE_NS = 86_400 * 1_000_000_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_US = 1000
_ONE_US = timedelta(microseconds=1)

# The top-level text fields every row reads; the columnar path and the SQL query check the same ones.
TEXT_FIELDS = (
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "eventType",
    "recipientAccountId",
)


class RejectedRecord(ValueError):
    """A record that cannot become a row; ``reason`` is short and stable, for counting."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Rejects:
    """Counts of rejected records by reason, with the latest few kept for inspection.

    Thread-safe: the collector adds while the dashboard reads.
    """

    keep: int = 50
    counts: Counter = field(default_factory=Counter)
    samples: deque = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self.samples = deque(maxlen=self.keep)

    def add(self, reason: str, origin: str = "", record: object = None) -> None:
        sample = _sample_text(record)
        with self._lock:
            self.counts[reason] += 1
            self.samples.append({"reason": reason, "origin": origin, "sample": sample})

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def summary(self) -> list[tuple[str, int]]:
        """(reason, count) pairs, most frequent first."""
        with self._lock:
            return self.counts.most_common()

    def latest(self) -> list[dict]:
        with self._lock:
            return list(self.samples)


def _sample_text(record: object) -> str:
    if record is None:
        return ""
    if isinstance(record, bytes):
        text = record[: SAMPLE_CHARS * 4].decode("utf-8", "replace")
    elif isinstance(record, str):
        text = record
    else:
        try:
            text = orjson.dumps(record, default=repr).decode()
        except (TypeError, orjson.JSONEncodeError):
            text = repr(record)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "…"


_time_cache: dict[str, int] = {}


def parse_event_time(value: object) -> int:
    """ISO-8601 text to integer nanoseconds since the epoch, UTC (naive means UTC)."""
    if not isinstance(value, str):
        raise RejectedRecord("wrong type: eventTime")
    cached = _time_cache.get(value)
    if cached is not None:
        return cached
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ns = ((moment - _EPOCH) // _ONE_US) * _NS_PER_US
    except (ValueError, OverflowError):
        raise RejectedRecord("invalid eventTime") from None
    # Many events share a second; a small cache makes time parsing nearly free.
    if len(_time_cache) > 100_000:
        _time_cache.clear()
    _time_cache[value] = ns
    return ns


def attribute(identity: dict) -> tuple[str, str | None]:
    """(user, session) of a userIdentity, after the table in reference.md section 4."""
    kind = identity.get("type")
    if kind == "Root":
        return "root", None
    if kind in ("AssumedRole", "FederatedUser"):
        context = identity.get("sessionContext")
        issuer = context.get("sessionIssuer") if isinstance(context, dict) else None
        issuer_name = issuer.get("userName") if isinstance(issuer, dict) else None
        if isinstance(issuer_name, str) and issuer_name:
            arn = identity.get("arn")
            session = arn.rsplit("/", 1)[-1] if isinstance(arn, str) and "/" in arn else None
            return issuer_name, session or None
    for key in ("userName", "invokedBy", "principalId"):
        value = identity.get(key)
        if isinstance(value, str) and value:
            return value, None
    return "unknown", None


def _text(record: dict, name: str) -> str | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RejectedRecord(f"wrong type: {name}")
    if len(value) > MAX_FIELD_CHARS:
        raise RejectedRecord(f"field too long: {name}")
    return value


def _identity_text(identity: dict, name: str) -> str | None:
    value = identity.get(name)
    if isinstance(value, str) and value and len(value) <= MAX_FIELD_CHARS:
        return value
    return None


def latest_event_ns(now_ns: int | None = None) -> int:
    """The latest eventTime accepted when reading at ``now_ns`` (default: the clock)."""
    return (time.time_ns() if now_ns is None else now_ns) + FUTURE_TOLERANCE_NS


def normalise(record: object, latest_ns: int | None = None) -> tuple[tuple, bytes]:
    """A parsed record to ``(row, raw)``: the row in ``COLUMNS`` order and the record as
    compact JSON bytes for drill-down. Raises ``RejectedRecord`` with the reason.

    ``latest_ns`` is the latest eventTime accepted (``latest_event_ns()`` if None)."""
    if not isinstance(record, dict):
        raise RejectedRecord("not a JSON object")
    event_id = record.get("eventID")
    if event_id is None or event_id == "":
        raise RejectedRecord("missing eventID")
    if not isinstance(event_id, str):
        raise RejectedRecord("wrong type: eventID")
    if len(event_id) > 128:
        raise RejectedRecord("field too long: eventID")
    if record.get("eventTime") is None:
        raise RejectedRecord("missing eventTime")
    event_time = parse_event_time(record["eventTime"])
    if event_time < EARLIEST_EVENT_NS or event_time > (latest_event_ns() if latest_ns is None else latest_ns):
        raise RejectedRecord("eventTime out of range")

    try:
        raw = orjson.dumps(record)
    except orjson.JSONEncodeError as error:
        reason = "invalid UTF-8" if "surrogates" in str(error) else "not serialisable"
        raise RejectedRecord(reason) from None
    if len(raw) > MAX_RECORD_BYTES:
        raise RejectedRecord("record too large")

    source, name, region, ip, agent, error_code, error_message, event_type, recipient = (
        _text(record, field) for field in TEXT_FIELDS
    )
    read_only = record.get("readOnly")
    if read_only is not None and not isinstance(read_only, bool):
        # Some older records carry "true"/"false" as text.
        if read_only in ("true", "false"):
            read_only = read_only == "true"
        else:
            raise RejectedRecord("wrong type: readOnly")

    identity = record.get("userIdentity")
    if identity is None:
        identity = {}
    elif not isinstance(identity, dict):
        raise RejectedRecord("wrong type: userIdentity")
    user, session = attribute(identity)
    if len(user) > MAX_FIELD_CHARS:
        user = user[:MAX_FIELD_CHARS]
    account = recipient or _identity_text(identity, "accountId")

    row = (
        event_id,
        event_time,
        source,
        name,
        region,
        ip,
        agent,
        error_code,
        error_message,
        read_only,
        event_type,
        account,
        user,
        session,
        _identity_text(identity, "type"),
        _identity_text(identity, "arn"),
    )
    return row, raw


def normalise_all(records, rejects: Rejects, origin: str = "", now_ns: int | None = None) -> Batch:
    """Normalise an iterable of parsed records into a ``Batch``; rejects are tallied, never
    raised. Items may also be ``Unreadable`` markers from the readers, tallied as such.
    ``now_ns`` (default: the clock) bounds how far in the future an eventTime may be."""
    latest = latest_event_ns(now_ns)
    batch = Batch()
    columns, raws = batch.columns, batch.raws
    for record in records:
        if isinstance(record, Unreadable):
            rejects.add(record.reason, record.origin or origin, record.sample)
            continue
        try:
            row, raw = normalise(record, latest)
        except RejectedRecord as rejected:
            rejects.add(rejected.reason, origin, record)
            continue
        for column, value in zip(columns, row):
            column.append(value)
        raws.append(raw)
    return batch


@dataclass(frozen=True)
class Unreadable:
    """Input that could not even be parsed into a record (bad JSON, bad UTF-8, a bad file)."""

    reason: str
    origin: str = ""
    sample: object = None
