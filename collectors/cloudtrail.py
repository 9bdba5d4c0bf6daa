"""The live CloudTrail source: LookupEvents in every region of every account.

One ``RegionPoller`` per account-region. Each poll it re-reads an overlap window up to now
(CloudTrail makes events visible minutes after their eventTime; the buffer drops what it
already holds by eventID), then reads a slice of the backfill, newest first, so that charts
fill from now backwards. Every HTTP attempt, retries included, first takes a token from the
account-region's ``RateLimiter``: CloudTrail allows 2 requests per second per account and
region, and answers more with ``ThrottlingException`` (HTTP 400), which botocore's standard
retry mode backs off from.

A region that fails is marked degraded with its reason and retried with backoff; the others
carry on. Progress lives in ``checkpoints()``, which the collector writes to disk only with
the buffer snapshot that holds the events read so far, so a restart never skips an event.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from metrics.normalise import parse_event_time
from metrics.records import records_from_lookup

RATE_PER_SECOND = 2.0
OVERLAP_SECONDS = 20 * 60
LOOKBACK_SECONDS = 3600
MAX_LOOKBACK_SECONDS = 90 * 86400
BACKFILL_PAGES_PER_POLL = 20
GLOBAL_REGION = "us-east-1"  # IAM, STS, sign-in and CloudFront events live here
OTHER_PARTITIONS = ("us-gov-", "cn-", "us-iso", "eusc-")  # need credentials of their own partition
MAX_BACKOFF = 600.0
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=5,
    read_timeout=30,
    user_agent_appid="account-activity-insights",
)


_limiters: dict[tuple[str, str], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(account: str, region: str) -> RateLimiter:
    """The one limiter of an account-region in this process, whoever calls it."""
    with _limiters_lock:
        return _limiters.setdefault((account, region), RateLimiter())


class RateLimiter:
    """At most ``rate`` acquisitions per second in any one-second window, shared by every
    thread that calls one account-region."""

    def __init__(self, rate: float = RATE_PER_SECOND, clock=time.monotonic, sleep=time.sleep):
        # A tenth over 1/rate between two requests: CloudTrail counts them when they arrive, and
        # a request delayed on the way (a busy host, the network) must not bring a third into
        # the same second; with 2% it did, under load, in our own tests.
        self.interval = 1.1 / rate
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Blocks until a request may go; returns how long it waited."""
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
        wait = start - now
        if wait > 0:
            self.sleep(wait)
        return wait


@dataclass
class RegionHealth:
    """What the Status page shows per account-region."""

    account: str
    region: str
    state: str = "starting"  # backfilling, live, degraded
    reason: str = ""  # why degraded
    last_success: float | None = None
    polls: int = 0
    api_calls: int = 0  # HTTP attempts, retries included
    throttles: int = 0
    retries: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_at: float | None = None
    events_last_poll: int = 0
    events: int = 0  # records returned, overlap re-reads included
    backfill_done: float = 0.0  # share of the look-back read, 0 to 1
    lags: deque = field(default_factory=lambda: deque(maxlen=2000), repr=False)  # seen time - eventTime

    def lag_percentiles(self) -> tuple[float, float, float] | None:
        """Median, 95th percentile and maximum of the recent delivery lags, in seconds."""
        if not self.lags:
            return None
        ordered = sorted(self.lags)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
        return pick(0.5), pick(0.95), ordered[-1]

    def as_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "lags"}
        data["lag_p50_p95_max"] = self.lag_percentiles()
        return data


@dataclass
class Checkpoint:
    """How far one account-region has been read. Times in epoch seconds."""

    backfill_start: float  # the oldest time the look-back reaches
    backfill_end: float  # the first poll's time: live polling covers what follows
    backfill_reached: float | None = None  # everything in [this, backfill_end] has been read
    backfill_complete: bool = False
    live_until: float | None = None  # everything visible up to this time has been read

    @classmethod
    def fresh(cls, now: float, lookback: float) -> Checkpoint:
        return cls(backfill_start=now - lookback, backfill_end=now, live_until=now)


class RegionPoller:
    """LookupEvents for one account-region: the overlap re-read, then a backfill slice."""

    def __init__(
        self,
        account: str,
        region: str,
        client,
        limiter: RateLimiter,
        *,
        lookback: float = LOOKBACK_SECONDS,
        overlap: float = OVERLAP_SECONDS,
        checkpoint: Checkpoint | None = None,
        backfill_pages: int = BACKFILL_PAGES_PER_POLL,
        clock: Callable[[], float] = time.time,
    ):
        self.account, self.region, self.client = account, region, client
        self.lookback, self.overlap, self.backfill_pages = lookback, overlap, backfill_pages
        self.clock = clock
        self.checkpoint = checkpoint
        self.health = RegionHealth(account, region)
        self.retry_at = 0.0
        self._consecutive_errors = 0
        self._pages_read = 0
        self._recent: dict[str, float] = {}  # eventID -> eventTime, for the overlap window: first sightings
        events = client.meta.events
        events.register("before-send.cloudtrail.LookupEvents", self._before_send)
        events.register("needs-retry.cloudtrail.LookupEvents", self._on_attempt)
        self._limiter = limiter

    @property
    def key(self) -> str:
        return f"{self.account}/{self.region}"

    @property
    def failures(self) -> int:
        """Consecutive failed polls."""
        return self._consecutive_errors

    def _before_send(self, **_) -> None:
        self._limiter.acquire()
        self.health.api_calls += 1

    def _on_attempt(self, response=None, attempts: int = 1, **_) -> None:
        if response is not None and response[1].get("Error", {}).get("Code") == "ThrottlingException":
            self.health.throttles += 1

    # -- reading ------------------------------------------------------------------------------
    def _pages(self, start: float, end: float, max_pages: int | None = None, starting_token: str | None = None):
        paginator = self.client.get_paginator("lookup_events")
        config = {"PageSize": 50}
        if max_pages is not None:
            config["MaxItems"] = 50 * max_pages
        if starting_token:
            config["StartingToken"] = starting_token
        return paginator.paginate(StartTime=start, EndTime=end, PaginationConfig=config)

    def _read(self, start: float, end: float, max_pages: int | None = None) -> tuple[list, float | None, bool]:
        """Records in [start, end], newest first; the oldest eventTime seen; whether the
        range was read to its end."""
        records, oldest, complete = [], None, True
        pages = self._pages(start, end, max_pages)
        for page in pages:
            self._pages_read += 1
            events = page.get("Events", [])
            records.extend(events)
            if events:
                times = [_epoch(e.get("EventTime")) for e in events]
                oldest = min(t for t in [*times, oldest] if t is not None) if any(times) else oldest
        if max_pages is not None and pages.resume_token:
            complete = False
        return records, oldest, complete

    def step(self, now: float) -> list:
        """One poll of this account-region: records (parsed, or Unreadable markers)."""
        if self.checkpoint is None:
            self.checkpoint = Checkpoint.fresh(now, self.lookback)
        point = self.checkpoint
        before_calls, before_pages = self.health.api_calls, self._pages_read
        live_start = min(point.live_until, now) - self.overlap
        events, _, _ = self._read(max(live_start, point.backfill_start), now)
        self._note_lags(events, now)
        found = list(events)
        if not point.backfill_complete:
            self.health.state = "backfilling"
            reached = point.backfill_reached if point.backfill_reached is not None else point.backfill_end
            older, oldest, complete = self._read(point.backfill_start, reached, self.backfill_pages)
            found.extend(older)
            if complete:
                point.backfill_complete = True
                point.backfill_reached = point.backfill_start
            elif oldest is not None:
                # The inclusive end re-reads the boundary second next time; eventIDs dedupe it.
                point.backfill_reached = oldest
        point.live_until = now
        health = self.health
        health.state = "live" if point.backfill_complete else "backfilling"
        health.reason = ""
        span = point.backfill_end - point.backfill_start
        reached = point.backfill_reached if point.backfill_reached is not None else point.backfill_end
        health.backfill_done = 1.0 if point.backfill_complete or span <= 0 else (point.backfill_end - reached) / span
        health.polls += 1
        health.last_success = self.clock()
        health.events_last_poll = len(found)
        health.events += len(found)
        health.retries += max(0, (health.api_calls - before_calls) - (self._pages_read - before_pages))
        self._consecutive_errors = 0
        return list(records_from_lookup(found))

    def _note_lags(self, events: list[dict], now: float) -> None:
        """The delivery lag of each event seen for the first time (now minus its eventTime);
        history that happened before the first poll is not a lag."""
        recent, since = self._recent, self.checkpoint.backfill_end
        for event in events:
            event_id, when = event.get("EventId"), _epoch(event.get("EventTime"))
            if event_id and when is not None and when >= since and event_id not in recent:
                recent[event_id] = when
                self.health.lags.append(max(0.0, now - when))
        horizon = now - self.overlap - 60
        for event_id in [k for k, t in recent.items() if t < horizon]:
            del recent[event_id]

    def failed(self, error: BaseException, now: float) -> None:
        """Degraded: retried after a backoff that doubles up to ``MAX_BACKOFF``."""
        self._consecutive_errors += 1
        health = self.health
        health.errors += 1
        health.state = "degraded"
        health.reason = describe(error)
        health.last_error = health.reason
        health.last_error_at = now
        self.retry_at = now + min(MAX_BACKOFF, 5.0 * 2 ** min(self._consecutive_errors - 1, 8))

    def watermark(self) -> float | None:
        point = self.checkpoint
        if point is None or not point.backfill_complete or point.live_until is None:
            return None
        return point.live_until - self.overlap


def _epoch(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "timestamp"):
        return value.timestamp()
    try:
        return parse_event_time(str(value)) / 1e9
    except ValueError:
        return None


def describe(error: BaseException) -> str:
    """A short reason for the Status page: the AWS error code and message when there is one."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"{info.get('Code', 'Error')}: {info.get('Message', '')}".strip()
    if isinstance(error, BotoCoreError):
        return f"{type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error}"


class CloudTrailSource:
    """Every account-region's poller, polled concurrently; a source for ``Collector``."""

    name = "cloudtrail"

    def __init__(self, pollers: Iterable[RegionPoller], *, workers: int = 8, clock: Callable[[], float] = time.time):
        self.pollers = {p.key: p for p in pollers}
        self.clock = clock
        size = max(1, min(workers, len(self.pollers)))
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="lookup")

    def poll(self, now: float) -> list:
        due = [p for p in self.pollers.values() if p.retry_at <= now]
        futures = {self._pool.submit(p.step, now): p for p in due}
        records = []
        for future, poller in futures.items():
            try:
                records.extend(future.result())
            except Exception as error:  # one region failing never stops the others
                poller.failed(error, self.clock())
        return records

    def watermark(self, now: float) -> float | None:
        """The forest may learn up to the oldest watermark of the healthy regions; nothing
        while any of them is still backfilling (the series would start in the wrong place)."""
        marks = [p.watermark() for p in self.pollers.values() if p.health.state != "degraded"]
        if not marks or any(m is None for m in marks):
            return None
        return min(marks)

    def checkpoints(self) -> dict[str, dict]:
        return {key: asdict(p.checkpoint) for key, p in self.pollers.items() if p.checkpoint is not None}

    def progress(self) -> float:
        """Share of the look-back read over all account-regions, 0 to 1."""
        if not self.pollers:
            return 1.0
        return sum(p.health.backfill_done for p in self.pollers.values()) / len(self.pollers)

    def region_health(self) -> list[dict]:
        return [p.health.as_dict() for p in self.pollers.values()]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- building the pollers ---------------------------------------------------------------------
def enabled_regions(session, allow: tuple[str, ...] = ()) -> list[str]:
    """The account's enabled regions of the commercial partition, us-east-1 always, cut to
    ``allow`` when given. DescribeRegions lists only enabled regions; the opt-in status is
    checked as well, for endpoints that list every region."""
    ec2 = session.client("ec2", region_name=GLOBAL_REGION, config=RETRY_CONFIG)
    found = {
        r["RegionName"]
        for r in ec2.describe_regions(AllRegions=False)["Regions"]
        if r.get("OptInStatus") != "not-opted-in" and not r["RegionName"].startswith(OTHER_PARTITIONS)
    }
    if allow:
        found &= set(allow)
    return sorted(found | {GLOBAL_REGION})


def account_of(session) -> str:
    sts = session.client("sts", region_name=GLOBAL_REGION, config=RETRY_CONFIG)
    return sts.get_caller_identity()["Account"]


def assumed_session(base_session, role_arn: str, external_id: str | None = None):
    """A boto3 session whose credentials come from AssumeRole and are refreshed by botocore
    before they expire."""
    import boto3
    import botocore.session
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

    extra = {"RoleSessionName": "account-activity-insights"}
    if external_id:
        extra["ExternalId"] = external_id
    core = base_session._session
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=core.create_client,
        source_credentials=core.get_credentials(),
        role_arn=role_arn,
        extra_args=extra,
    )
    credentials = DeferredRefreshableCredentials(method="assume-role", refresh_using=fetcher.fetch_credentials)
    assumed = botocore.session.Session()
    assumed._credentials = credentials
    return boto3.Session(botocore_session=assumed)


def parse_roles(text: str) -> list[tuple[str, str | None]]:
    """``arn[|external-id]`` entries separated by commas or new lines."""
    roles = []
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if part:
            arn, _, external = part.partition("|")
            if not arn.startswith("arn:aws") or ":role/" not in arn:
                raise ValueError(f"{arn!r} is not a role ARN")
            roles.append((arn.strip(), external.strip() or None))
    return roles


def build_pollers(
    sessions: list,
    *,
    regions: tuple[str, ...] = (),
    lookback: float = LOOKBACK_SECONDS,
    overlap: float = OVERLAP_SECONDS,
    checkpoints: dict[str, dict] | None = None,
    clock: Callable[[], float] = time.time,
) -> list[RegionPoller]:
    """A poller per enabled region of each session's account, resuming from ``checkpoints``."""
    checkpoints = checkpoints or {}
    pollers = []
    for session in sessions:
        account = account_of(session)
        for region in enabled_regions(session, regions):
            client = session.client("cloudtrail", region_name=region, config=RETRY_CONFIG)
            saved = checkpoints.get(f"{account}/{region}")
            point = Checkpoint(**saved) if saved else None
            pollers.append(
                RegionPoller(
                    account,
                    region,
                    client,
                    limiter_for(account, region),
                    lookback=lookback,
                    overlap=overlap,
                    checkpoint=point,
                    clock=clock,
                )
            )
    return pollers


class DeferredSource:
    """Builds a source on its first poll, so that missing credentials or an unreachable
    endpoint become a failed poll (shown, retried with backoff) instead of a crashed app."""

    def __init__(self, name: str, build: Callable[[], object]):
        self.name = name
        self._build = build
        self.source = None

    def poll(self, now: float) -> list:
        if self.source is None:
            self.source = self._build()
        return self.source.poll(now)

    def watermark(self, now: float) -> float | None:
        return None if self.source is None else self.source.watermark(now)

    def checkpoints(self) -> dict:
        inner = getattr(self.source, "checkpoints", None)
        return inner() if inner else {}

    def region_health(self) -> list[dict]:
        inner = getattr(self.source, "region_health", None)
        return inner() if inner else []

    def progress(self) -> float | None:
        """Share of the history read, 0 to 1 (None before the first poll)."""
        inner = getattr(self.source, "progress", None)
        if callable(inner):
            return inner()
        if isinstance(inner, dict):  # the S3 source: days of history listed and read
            total = inner.get("days_total") or 0
            return min(1.0, inner.get("days_done", 0) / total) if total else None
        return None

    def details(self) -> dict:
        """The inner source's own progress figures, for the Status page."""
        inner = getattr(self.source, "progress", None)
        return dict(inner) if isinstance(inner, dict) else {}


def sessions_for(role_arns: str) -> list:
    """The default credential chain's session, or one assumed session per role."""
    import boto3

    base = boto3.Session()
    roles = parse_roles(role_arns)
    return [assumed_session(base, arn, external) for arn, external in roles] if roles else [base]
