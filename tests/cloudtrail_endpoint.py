"""A local CloudTrail endpoint that speaks LookupEvents the way botocore calls it, for tests.

moto has no LookupEvents, so this is a small real HTTP server (standard library only) that a boto3
client reaches through ``endpoint_url`` or ``AWS_ENDPOINT_URL_CLOUDTRAIL``. It keeps the parts of
CloudTrail that a poller has to get right:

- AWS JSON 1.1: ``POST /`` with ``X-Amz-Target: ...CloudTrail_20131101.LookupEvents``; errors are
  ``{"__type": ..., "message": ...}`` (HTTP 400 for ``ThrottlingException``, not 429).
- Events newest first (eventTime descending, ties by EventId descending, then insertion order);
  ``StartTime`` and ``EndTime`` inclusive; at most ``min(MaxResults or 50, page_size)`` a page.
- ``NextToken`` is opaque and bound to the query; the next page continues strictly after the last
  event returned, even if newer events became visible in the meantime. A garbage token, or one
  reused with other parameters, is ``InvalidNextTokenException``.
- Delivery delay: an event is returned only once ``eventTime + visible_after <= clock()``.
- A real-time token bucket per (account, region): ``rate_per_second`` (2) with a burst of 2;
  every request beyond it, retries included, is throttled and still logged.
- The region comes from the SigV4 credential scope, the account from the access key id.

Failures on demand: ``fail_region`` (a region that is not enabled, denied or unreachable) and
``inject`` (throttle, 500, 503, drop, slow, malformed), drawn from a seeded random generator.

>>> clock = ManualClock(1722587400.0)
>>> with CloudTrailEndpoint(clock) as endpoint:
...     endpoint.add([{"eventID": "e1", "eventTime": "2024-08-02T08:25:00Z", "awsRegion": "us-east-1"}])
...     [r["eventID"] for r in endpoint.visible("111122223333", "us-east-1")]
['e1']
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
DEFAULT_ACCOUNT = "111122223333"
MAX_PAGE = 50
FAULTS = ("throttle", "500", "503", "drop", "slow", "malformed")

_INVALID_KEY = "The security token included in the request is invalid."

# fail_region(error=...) -> (HTTP status, __type, message); "unreachable" drops the connection instead.
# A call to an opt-in region that is not enabled fails at authentication, as AWS answers it.
REGION_ERRORS = {
    "OptInRequired": (400, "UnrecognizedClientException", _INVALID_KEY),
    "AccessDenied": (
        400,
        "AccessDeniedException",
        "User is not authorized to perform: cloudtrail:LookupEvents because no identity-based policy allows it",
    ),
}
_FAULT_ERRORS = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "500": (500, "InternalFailure", "The request processing has failed because of an unknown error."),
    "503": (503, "ServiceUnavailable", "The service is unavailable. Please try again later."),
}
_LOOKUP_KEYS = (
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
)
_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")


def epoch(value: str | float | int) -> float:
    """Seconds since the epoch of an ISO-8601 time (UTC if it names no zone) or of a number."""
    if isinstance(value, int | float):
        return float(value)
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def busiest_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most of ``times`` that fall within any half-open interval ``[t, t + window)``."""
    ordered = sorted(times)
    best = first = 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


class ManualClock:
    """A clock that stands still until told: ``clock()`` reads it, ``advance`` moves it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class RequestLog:
    """One request received: ``time`` is ``time.monotonic()`` on arrival; ``status`` is None when the
    connection was dropped; ``error`` the ``__type`` answered; ``fault`` what was injected
    (a name from FAULTS, or ``unreachable``/``OptInRequired``/``AccessDenied`` from fail_region)."""

    time: float
    account: str | None
    region: str | None
    status: int | None
    error: str | None = None
    fault: str | None = None
    events: int = 0


@dataclass
class _Fault:
    fault: str
    probability: float
    count: int | None
    region: str | None
    account: str | None
    seconds: float

    def applies(self, account: str, region: str) -> bool:
        return self.count != 0 and self.region in (None, region) and self.account in (None, account)


@dataclass(order=True)
class _Stored:
    key: tuple[float, str, int]  # (eventTime, EventId, -insertion): the order, newest = largest
    visible_at: float = field(compare=False)
    event: dict = field(compare=False)  # the LookupEvents entry, CloudTrailEvent included


class _Store:
    """The events of one (account, region), in ascending key order for bisecting."""

    def __init__(self) -> None:
        self.entries: list[_Stored] = []
        self.times: list[float] = []

    def extend(self, entries: list[_Stored]) -> None:
        self.entries = sorted(self.entries + entries)
        self.times = [entry.key[0] for entry in self.entries]


class _ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class CloudTrailEndpoint:
    """A LookupEvents server on ``127.0.0.1``; ``url`` is set by ``start()`` (or ``with``).

    ``clock`` decides which events are visible (epoch seconds; pass a ManualClock to step time);
    the rate limit and the request log use real time. ``rate_per_second=None`` turns the limit
    off. ``accounts`` maps access key ids to accounts; without it every key is ``default_account``,
    with it an unknown key is refused (UnrecognizedClientException). ``retention`` (seconds, e.g.
    90 days) hides older events; by default nothing expires, so old fixture records stay visible.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        page_size: int = MAX_PAGE,
        rate_per_second: float | None = 2.0,
        burst: int = 2,
        accounts: dict[str, str] | None = None,
        default_account: str = DEFAULT_ACCOUNT,
        retention: float | None = None,
        seed: int = 0,
    ) -> None:
        self.clock = clock
        self.page_size = page_size
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.accounts = accounts
        self.default_account = default_account
        self.retention = retention
        self.url = ""
        self._random = random.Random(seed)
        self._secret = os.urandom(16)
        self._lock = threading.Lock()
        self._stores: dict[tuple[str, str], _Store] = {}
        self._inserted = 0
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # -> (tokens, at)
        self._region_errors: dict[str, str] = {}
        self._faults: list[_Fault] = []
        self._log: list[RequestLog] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> CloudTrailEndpoint:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.endpoint = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="cloudtrail-endpoint", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes open connections (slow answers in progress end at once)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> CloudTrailEndpoint:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- data -------------------------------------------------------------------------------

    def add(
        self,
        records: Iterable[dict],
        *,
        region: str | None = None,
        account: str | None = None,
        visible_after: float | Callable[[dict], float] = 0.0,
    ) -> None:
        """Stores records for (account, region): by default the record's ``awsRegion`` and
        ``recipientAccountId`` (else ``default_account``). The record itself is served unchanged.
        ``visible_after``: seconds after eventTime before the event is returned (CloudTrail's
        delivery delay), or a function of the record giving them."""
        batches: dict[tuple[str, str], list[_Stored]] = {}
        with self._lock:
            for record in records:
                owner = account or record.get("recipientAccountId") or self.default_account
                key = (owner, region or record["awsRegion"])
                delay = visible_after(record) if callable(visible_after) else visible_after
                self._inserted += 1
                entry = _entry(record, self._inserted, delay)
                batches.setdefault(key, []).append(entry)
            for key, entries in batches.items():
                self._stores.setdefault(key, _Store()).extend(entries)

    def visible(self, account: str, region: str, now: float | None = None) -> list[dict]:
        """Ground truth: the records LookupEvents would return at clock time ``now`` (default
        ``clock()``) without a time range, newest first."""
        now = self.clock() if now is None else now
        with self._lock:
            store = self._stores.get((account, region), _Store())
            return [
                json.loads(entry.event["CloudTrailEvent"])
                for entry in reversed(store.entries)
                if entry.visible_at <= now and not self._expired(entry, now)
            ]

    # -- failures ---------------------------------------------------------------------------

    def fail_region(self, region: str, error: str = "OptInRequired") -> None:
        """Every call for ``region`` fails: ``OptInRequired`` (a region not enabled: 400
        UnrecognizedClientException, as AWS answers), ``AccessDenied`` (400
        AccessDeniedException) or ``unreachable`` (the connection is closed unanswered)."""
        if error not in REGION_ERRORS and error != "unreachable":
            raise ValueError(f"unknown region error {error!r}")
        with self._lock:
            self._region_errors[region] = error

    def restore_region(self, region: str) -> None:
        with self._lock:
            self._region_errors.pop(region, None)

    def inject(
        self,
        fault: str,
        *,
        probability: float = 1.0,
        count: int | None = None,
        region: str | None = None,
        account: str | None = None,
        seconds: float = 2.0,
    ) -> None:
        """Adds a fault: each matching request (not throttled by the rate limit) draws it with
        ``probability``, at most ``count`` times in all (None: no end); the first fault drawn wins.
        ``throttle`` 400 ThrottlingException, ``500`` InternalFailure, ``503`` ServiceUnavailable,
        ``drop`` closes the connection unanswered, ``slow`` waits ``seconds`` then answers,
        ``malformed`` gives one event of a non-empty page a CloudTrailEvent that is not JSON."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self._lock:
            self._faults.append(_Fault(fault, probability, count, region, account, seconds))

    def clear_faults(self) -> None:
        """Removes the injected faults (not the region failures: see restore_region)."""
        with self._lock:
            self._faults.clear()

    # -- observation ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestLog]:
        """A snapshot of every request received so far, in the order they were answered."""
        with self._lock:
            return list(self._log)

    def max_rate(self, account: str, region: str, window: float = 1.0) -> int:
        """The most requests received for (account, region) within any ``window`` seconds,
        throttled ones and retries included. A client kept under a token bucket of rate r and
        burst b scores at most ``r * window + b``."""
        return busiest_window((r.time for r in self.requests if (r.account, r.region) == (account, region)), window)

    # -- serving ----------------------------------------------------------------------------

    def _handle(self, headers, body: bytes) -> tuple[int, dict] | None:
        """The answer to one request as (status, JSON body), or None to drop the connection.
        In order: who and where, the region's failure, the rate limit, the injected faults."""
        arrived = time.monotonic()
        account = region = fault = None
        try:
            account, region = self._caller(headers.get("Authorization", ""))
            with self._lock:
                fault = self._region_errors.get(region)
                if fault is None and not self._admit((account, region), arrived):
                    raise _ApiError(*_FAULT_ERRORS["throttle"])
                injected = None if fault else self._draw(account, region, ("throttle", "500", "503", "drop", "slow"))
            if injected:
                fault = injected.fault
            if fault in ("drop", "unreachable"):
                self._record(RequestLog(arrived, account, region, None, fault=fault))
                return None
            if fault in REGION_ERRORS or fault in _FAULT_ERRORS:
                raise _ApiError(*(REGION_ERRORS.get(fault) or _FAULT_ERRORS[fault]))
            if fault == "slow":
                self._stopping.wait(injected.seconds)
            if headers.get("X-Amz-Target") != TARGET:
                raise _ApiError(400, "UnknownOperationException", "")
            events, token = self._lookup(account, region, _request(body))
            if events:
                with self._lock:
                    malformed = self._draw(account, region, ("malformed",))
                    victim = self._random.randrange(len(events)) if malformed else 0
                if malformed:
                    fault, text = malformed.fault, events[victim]["CloudTrailEvent"]
                    events[victim] = {**events[victim], "CloudTrailEvent": text[: len(text) // 2]}
        except _ApiError as error:
            self._record(RequestLog(arrived, account, region, error.status, error.kind, fault))
            return error.status, {"__type": error.kind, "message": error.message}
        self._record(RequestLog(arrived, account, region, 200, None, fault, len(events)))
        return 200, {"Events": events, **({"NextToken": token} if token else {})}

    def _caller(self, authorization: str) -> tuple[str, str]:
        scope = _SCOPE.search(authorization)
        if not scope:
            raise _ApiError(400, "MissingAuthenticationTokenException", "Missing Authentication Token")
        key, region, service = scope.groups()
        if service != "cloudtrail":
            raise _ApiError(
                400, "InvalidSignatureException", f"Credential should be scoped to cloudtrail, not {service}"
            )
        if self.accounts is None:
            return self.default_account, region
        if key not in self.accounts:
            raise _ApiError(400, "UnrecognizedClientException", _INVALID_KEY)
        return self.accounts[key], region

    def _admit(self, key: tuple[str, str], now: float) -> bool:
        """Token bucket (lock held): refills ``rate_per_second``, holds at most ``burst``."""
        if self.rate_per_second is None:
            return True
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_second)
        admitted = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if admitted else tokens, now)
        return admitted

    def _draw(self, account: str, region: str, kinds: tuple[str, ...]) -> _Fault | None:
        """The first injected fault of ``kinds`` that fires for this request (lock held)."""
        for fault in self._faults:
            if fault.fault in kinds and fault.applies(account, region):
                if fault.probability < 1.0 and self._random.random() >= fault.probability:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                return fault
        return None

    def _lookup(self, account: str, region: str, request: dict) -> tuple[list[dict], str | None]:
        start, end = _time(request, "StartTime"), _time(request, "EndTime")
        if start is not None and end is not None and start > end:
            raise _ApiError(400, "InvalidTimeRangeException", "Start time must be before end time.")
        limit = request.get("MaxResults") or MAX_PAGE
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise _ApiError(400, "InvalidMaxResultsException", "MaxResults must be between 1 and 50.")
        match = _matcher(request.get("LookupAttributes") or [])
        category = request.get("EventCategory")
        if category not in (None, "insight"):
            raise _ApiError(400, "InvalidEventCategoryException", f"Invalid event category {category}.")
        query = _digest([account, region, start, end, request.get("LookupAttributes") or [], category])
        position = self._position(request.get("NextToken"), query)
        limit = min(limit, self.page_size)
        now = self.clock()
        page: list[_Stored] = []
        with self._lock:
            store = self._stores.get((account, region), _Store())
            entries = store.entries
            index = len(entries) if end is None else bisect.bisect_right(store.times, end)
            if position is not None:
                index = min(index, bisect.bisect_left(entries, _Stored(position, 0.0, {})))
            for position in range(index - 1, -1 if category is None else index - 1, -1):
                entry = entries[position]
                if start is not None and entry.key[0] < start:
                    break
                if entry.visible_at <= now and not self._expired(entry, now) and match(entry.event):
                    page.append(entry)
                    if len(page) > limit:
                        break
        more = len(page) > limit
        page = page[:limit]
        token = self._token(query, page[-1].key) if more else None
        return [dict(entry.event) for entry in page], token

    def _expired(self, entry: _Stored, now: float) -> bool:
        return self.retention is not None and entry.key[0] < now - self.retention

    def _token(self, query: str, position: tuple[float, str, int]) -> str:
        payload = base64.urlsafe_b64encode(json.dumps([query, list(position)]).encode()).decode()
        return f"{payload}.{self._sign(payload)}"

    def _position(self, token: str | None, query: str) -> tuple[float, str, int] | None:
        if token is None:
            return None
        payload, _, signature = token.rpartition(".")
        try:
            if not hmac.compare_digest(signature, self._sign(payload)):
                raise ValueError("signature")
            token_query, (moment, event_id, order) = json.loads(base64.urlsafe_b64decode(payload))
            if token_query != query:
                raise ValueError("another query")
            return float(moment), str(event_id), int(order)
        except (ValueError, TypeError):
            raise _ApiError(400, "InvalidNextTokenException", "Invalid NextToken.") from None

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]

    def _record(self, entry: RequestLog) -> None:
        with self._lock:
            self._log.append(entry)


def _entry(record: dict, inserted: int, delay: float) -> _Stored:
    """The stored form of a record: its LookupEvents entry, its order key and when it shows."""
    moment = epoch(record["eventTime"])
    event_id = str(record.get("eventID", ""))
    identity = record.get("userIdentity") or {}
    read_only = record.get("readOnly")
    event = {
        "EventId": event_id,
        "EventName": record.get("eventName"),
        "ReadOnly": str(read_only).lower() if read_only is not None else None,
        "AccessKeyId": identity.get("accessKeyId"),
        "EventTime": moment,
        "EventSource": record.get("eventSource"),
        "Username": _username(identity),
        "Resources": [
            {"ResourceType": resource.get("type"), "ResourceName": resource.get("ARN")}
            for resource in record.get("resources") or []
        ],
        "CloudTrailEvent": json.dumps(record),
    }
    event = {name: value for name, value in event.items() if value is not None}
    return _Stored((moment, event_id, -inserted), moment + delay, event)


def _username(identity: dict) -> str | None:
    """LookupEvents' Username: the IAM user, the role session name, or ``root``."""
    if identity.get("userName"):
        return identity["userName"]
    if identity.get("type") in ("AssumedRole", "FederatedUser") and identity.get("arn"):
        return identity["arn"].rsplit("/", 1)[-1]
    if identity.get("type") == "Root":
        return "root"
    return None


def _request(body: bytes) -> dict:
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise _ApiError(400, "SerializationException", "The request body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise _ApiError(400, "SerializationException", "The request body is not a JSON object.")
    return request


def _time(request: dict, name: str) -> float | None:
    value = request.get(name)
    if value is None:
        return None
    try:
        return epoch(value)
    except (TypeError, ValueError):
        raise _ApiError(400, "SerializationException", f"{name} is not a timestamp.") from None


def _matcher(attributes: list) -> Callable[[dict], bool]:
    if not attributes:
        return lambda event: True
    if len(attributes) > 1:
        raise _ApiError(400, "InvalidLookupAttributesException", "Only one lookup attribute is allowed.")
    key, value = attributes[0].get("AttributeKey"), attributes[0].get("AttributeValue")
    if key not in _LOOKUP_KEYS or not isinstance(value, str):
        raise _ApiError(400, "InvalidLookupAttributesException", f"Invalid lookup attribute {key}.")
    if key in ("ResourceType", "ResourceName"):
        return lambda event: any(resource.get(key) == value for resource in event["Resources"])
    return lambda event: event.get(key) == value


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:24]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: CloudTrailEndpoint

    def __init__(self, *args, **kwargs) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that hung up is no error
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    disable_nagle_algorithm = True
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.endpoint._handle(self.headers, body)
        if answer is None:
            self.close_connection = True
            return
        status, payload = answer
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args) -> None:
        pass


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Runs moto in server mode on a free loopback port for the EC2, STS (and every other moto)
    API and yields its URL: point ``endpoint_url`` or ``AWS_ENDPOINT_URL_EC2``/``_STS`` at it.
    moto's state is reset on the way in and out (it is shared with ``mock_aws`` in this process).
    Needs flask and flask-cors."""
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    try:
        urllib.request.urlopen(reset, timeout=10).close()
        yield url
    finally:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(reset, timeout=10).close()
        server.stop()
        werkzeug.setLevel(level)
