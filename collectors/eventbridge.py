"""The EventBridge source: CloudTrail events that EventBridge rules push into an SQS queue,
on the chart seconds after the API call, at any volume.

Receiver threads long-poll the queue (20 s, 10 messages a receive); while receives come back
full the queue is deep and more receivers join in, up to ``receivers``. Each message is an
EventBridge envelope whose ``detail`` is the CloudTrail record; the envelope's ``account`` and
``region`` fill in a record that lacks them.

Nothing is lost: a message is deleted only after the collector says its events are in a
saved snapshot (``ingested`` then ``acknowledge``), so a crash at any moment means the queue
delivers it again, and the buffer drops the repeat by eventID. A message that is not JSON or
not a CloudTrail event is counted as a reject and deleted, never retried forever; one whose
events could not be ingested is left to the queue's redrive policy (its dead-letter queue).

EventBridge carries only what happened after its rule existed. On the first start, and after
an outage longer than the queue's retention, the missing stretch is read from LookupEvents or
the trail's S3 files in a thread of its own (see ``collectors.gaps``), and Status shows the
gap until it is closed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import orjson

from metrics.normalise import Unreadable, parse_event_time

DETAIL_TYPES = frozenset(
    ("AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail", "AWS Service Event via CloudTrail")
)
WAIT_SECONDS = 20  # SQS's longest long poll: one request per 20 s on a quiet queue
MESSAGES_PER_RECEIVE = 10  # SQS's most
RECEIVERS = 8  # measured in bench.eventbridge: 8 beat 4 and 16 on this 2-core machine
SETTLE_SECONDS = 300.0  # EventBridge delivers within seconds; a queue backlog can hold older events
VISIBILITY_MARGIN = 60.0  # a save takes seconds; the warning leaves a minute for it
MAX_UNACKED = 60_000  # half a standard queue's 120,000 in-flight messages: ask for a save first
MAX_IN_MEMORY = 20_000  # received, not yet handed to the collector: receivers pause beyond
MAX_BATCH = 5_000
LINGER = 0.2  # on a deep queue, wait this long for more: one ingest per batch, not per event
POLL_WAIT = 1.0  # the longest a poll waits for a first message
FRESHNESS_SECONDS = 900.0
FRESHNESS_KEEP = 50_000  # lags kept per region; a busier region's window is shorter than 15 minutes
RECEIVE_BACKOFF = (1.0, 60.0)


def parse_message(body: object) -> object:
    """The CloudTrail record of one message body, or an ``Unreadable`` reject."""
    try:
        envelope = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError) as error:
        reason = "invalid UTF-8" if "utf-8" in str(error).lower() else "invalid JSON"
        return Unreadable(reason, "", body)
    if (
        not isinstance(envelope, dict)
        or envelope.get("detail-type") not in DETAIL_TYPES
        or not isinstance(envelope.get("detail"), dict)
    ):
        return Unreadable("not a CloudTrail event", "", body)
    record = envelope["detail"]
    for field, fallback in (("awsRegion", "region"), ("recipientAccountId", "account")):
        if not record.get(field) and isinstance(envelope.get(fallback), str):
            record[field] = envelope[fallback]
    return record


def region_of_queue(url: str) -> str | None:
    """``eu-west-1`` of ``https://sqs.eu-west-1.amazonaws.com/123456789012/name``."""
    host = urlparse(url).hostname or ""
    parts = host.split(".")
    return parts[1] if len(parts) > 3 and parts[0] == "sqs" else None


@dataclass
class _Message:
    handle: str
    received: float
    region: str | None
    event_time: float | None  # seconds
    generation: int = 0


class Freshness:
    """Per region, arrival in the buffer minus eventTime of the events the queue brought."""

    def __init__(self, window: float = FRESHNESS_SECONDS, keep: int = FRESHNESS_KEEP):
        self.window = window
        self.keep = keep
        self._lags: dict[str, deque] = {}
        self._lock = threading.Lock()

    def add(self, region: str, arrival: float, lag: float) -> None:
        with self._lock:
            self._lags.setdefault(region, deque(maxlen=self.keep)).append((arrival, max(0.0, lag)))

    def summary(self, now: float) -> list[dict]:
        """One row per region, then ``all``: events, median and 95th percentile of the lag in
        seconds, over the last ``window`` seconds."""
        since = now - self.window
        with self._lock:
            recent = {r: sorted(lag for at, lag in lags if at >= since) for r, lags in self._lags.items()}
        rows = [_percentiles(region, lags) for region, lags in sorted(recent.items()) if lags]
        everything = sorted(lag for lags in recent.values() for lag in lags)
        if everything:
            rows.append(_percentiles("all", everything))
        return rows


def _percentiles(region: str, ordered: list[float]) -> dict:
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"region": region, "events": len(ordered), "p50": pick(0.5), "p95": pick(0.95)}


class SqsSource:
    """A source for ``Collector``: the queue's CloudTrail events, deleted once saved.

    ``gap_filler(start, end, saved)`` builds what reads a gap from LookupEvents or S3 (see
    ``collectors.gaps``); None leaves gaps shown but unfilled.
    """

    name = "eventbridge"
    long_polls = True  # poll() waits for the first message itself: the collector polls again at once

    def __init__(
        self,
        client,
        queue_url: str,
        *,
        receivers: int = RECEIVERS,
        regions: tuple[str, ...] = (),
        save_every: float = 300.0,
        lookback: float = 3600.0,
        checkpoint: dict | None = None,
        gap_filler: Callable | None = None,
        wait_seconds: int = WAIT_SECONDS,
        settle: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        self.client, self.queue_url = client, queue_url
        self.receivers = max(1, receivers)
        self.regions = tuple(regions)
        self.save_every, self.lookback, self.settle = save_every, lookback, settle
        self.wait_seconds = wait_seconds
        self.clock = clock
        self.freshness = Freshness()
        self.attributes: dict = {}
        self.warning = ""
        self._saved = dict(checkpoint or {})
        self._gap_filler = gap_filler
        self.gaps = None  # a collectors.gaps.Gaps once started
        self._started = False
        self._closed = threading.Event()
        self._deep = threading.Event()
        self._arrived = threading.Condition()
        self._inbox: deque = deque()  # (arrival, message) received, not handed out yet
        self._delivered: list[_Message] = []  # handed to the collector by the last poll
        self._delivered_alive: float | None = None
        self._unacked: dict[str, _Message] = {}  # in the buffer, waiting for a save
        self._lock = threading.Lock()
        self._generation = 0
        self._alive_until = self._saved.get("alive_until")  # every message received before this is saved
        self._last_receive_ok: float | None = None
        self.last_message_at: float | None = None  # when a receive last brought anything
        self.waiting_for_save = False  # receiving paused until a save lets the queue delete
        self._threads: list[threading.Thread] = []
        self._deleter: ThreadPoolExecutor | None = None
        self.counts = dict.fromkeys(
            ("received", "deleted", "delete_failures", "redelivered", "receive_errors", "filtered"), 0
        )
        self.last_error = ""
        self.last_error_at: float | None = None
        self.depth: dict = {}

    # -- the collector's side ---------------------------------------------------------------------
    def poll(self, now: float) -> list:
        if not self._started:
            self._start(now)
        # A poll whose events never reached the buffer (ingest failed) is left to the queue: its
        # messages reappear after the visibility timeout, and the redrive policy counts them.
        self._delivered = []
        with self._arrived:
            if not self._inbox:
                self._arrived.wait(POLL_WAIT)
            # Only a deep queue is worth the wait; on a shallow one it would only add to the lag.
            if self._inbox and len(self._inbox) < MAX_BATCH and self._deep.is_set():
                self._arrived.wait_for(lambda: len(self._inbox) >= MAX_BATCH, LINGER)
            taken = [self._inbox.popleft() for _ in range(min(MAX_BATCH, len(self._inbox)))]
            alive = self._last_receive_ok if not self._inbox else (taken[-1][0] if taken else None)
            self._arrived.notify_all()  # receivers paused on a full inbox may go on
        records, delivered = [], []
        for arrival, message in taken:
            record = parse_message(message.get("Body"))
            region, when = None, None
            if isinstance(record, dict):
                region = record.get("awsRegion") if isinstance(record.get("awsRegion"), str) else None
                try:
                    when = parse_event_time(record.get("eventTime")) / 1e9
                except (TypeError, ValueError):
                    when = None  # the normaliser rejects it with its reason
                if self.regions and region not in self.regions:
                    self.counts["filtered"] += 1
                    record = None
            if isinstance(record, Unreadable):
                where = f"{self.name}: message {message.get('MessageId', '?')}"
                record = Unreadable(record.reason, where, record.sample)
            if record is not None:
                records.append(record)
            delivered.append(_Message(message["ReceiptHandle"], arrival, region, when))
        self._delivered, self._delivered_alive = delivered, alive
        if self.gaps is not None:
            records.extend(self.gaps.take())
        return records

    def ingested(self) -> int:
        """The collector has put the last poll's events in the buffer: they wait for a save.
        Returns a mark for ``acknowledge``."""
        now = self.clock()
        with self._lock:
            self._generation += 1
            for message in self._delivered:
                message.generation = self._generation
                self._unacked[message.handle] = message
                if message.event_time is not None:
                    self.freshness.add(message.region or "unknown", now, now - message.event_time)
            self._delivered = []
            if self._delivered_alive is not None:
                self._alive_until = max(self._alive_until or 0.0, self._delivered_alive)
            if self.gaps is not None:
                self.gaps.ingested()
            return self._generation

    def acknowledge(self, mark: int) -> None:
        """Everything ingested up to ``mark`` is in a saved snapshot (or, with no state folder,
        in the buffer): delete those messages from the queue."""
        with self._lock:
            done = [m for m in self._unacked.values() if m.generation <= mark]
            for message in done:
                del self._unacked[message.handle]
        if not done:
            return
        if self._deleter is None:
            self._deleter = ThreadPoolExecutor(max_workers=self.receivers, thread_name_prefix="sqs-delete")
        for first in range(0, len(done), MESSAGES_PER_RECEIVE):
            handles = [m.handle for m in done[first : first + MESSAGES_PER_RECEIVE]]
            try:
                self._deleter.submit(self._delete, handles)
            except RuntimeError:  # the interpreter is shutting down (the save at exit): delete here
                self._delete(handles)

    def needs_save(self) -> bool:
        """Save early rather than let messages waiting for a save become visible again, or
        fill the queue's in-flight limit."""
        visibility = self.attributes.get("VisibilityTimeout")
        with self._lock:
            if len(self._unacked) >= MAX_UNACKED:
                return True
            # In the order they were received: the first is the oldest.
            oldest = next((m.received for m in self._unacked.values()), None)
        if oldest is None or not visibility:
            return False
        return self.clock() - oldest >= visibility - min(VISIBILITY_MARGIN, visibility / 2)

    def watermark(self, now: float) -> float | None:
        """Nothing while a gap is being filled; otherwise the settle time behind now, or behind
        the last receive that worked."""
        if self.gaps is not None and self.gaps.open():
            return None
        if self._last_receive_ok is None:
            return None
        return min(now, self._last_receive_ok + 2 * self.wait_seconds) - self.settle

    def checkpoints(self) -> dict:
        with self._lock:
            saved = {"alive_until": self._alive_until}
            if self.gaps is not None:
                saved["gaps"] = self.gaps.checkpoints()
            return saved

    def progress(self) -> float | None:
        """Share of the open gaps read, 0 to 1; None when there is none."""
        return None if self.gaps is None else self.gaps.progress()

    def details(self) -> dict:
        """The queue's figures as text, for the Status page."""
        with self._lock:
            unacked = len(self._unacked)
            figures = dict(self.counts)
        with self._arrived:
            waiting = len(self._inbox)
        redrive = self.attributes.get("RedrivePolicy") or {}
        shown = {
            "queue": self.queue_url,
            "visibility timeout (s)": self.attributes.get("VisibilityTimeout", "–"),
            "retention (s)": self.attributes.get("MessageRetentionPeriod", "–"),
            "dead-letter queue": redrive.get("deadLetterTargetArn", "none"),
            "receives before the dead-letter queue": redrive.get("maxReceiveCount", "–"),
            "messages in the queue (approx.)": self.depth.get("ApproximateNumberOfMessages", "–"),
            "messages in flight (approx.)": self.depth.get("ApproximateNumberOfMessagesNotVisible", "–"),
            **{name.replace("_", " "): n for name, n in figures.items()},
            "received, not yet in the buffer": waiting,
            "in the buffer, deleted at the next save": unacked,
            "receivers in use": 1 + (self.receivers - 1) * self._deep.is_set(),
            "receiving": "paused until the next save" if self.waiting_for_save else "yes",
            "last error": self.last_error or "none",
        }
        return {k: f"{v:,}" if isinstance(v, int) else str(v) for k, v in shown.items()}

    def stop_receiving(self, timeout: float | None = None) -> int:
        """No new receives; waits for those in flight, whose messages stay for ``poll``. Returns
        how many were still in flight after ``timeout`` (by default a long poll plus a minute,
        for a slow or retried request)."""
        self._closed.set()
        with self._arrived:
            self._arrived.notify_all()
        deadline = time.monotonic() + (self.wait_seconds + 60 if timeout is None else timeout)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in self._threads)

    def waiting(self) -> int:
        """Messages received and not handed to the collector yet."""
        with self._arrived:
            return len(self._inbox)

    def close(self) -> None:
        self._closed.set()
        with self._arrived:
            self._arrived.notify_all()
        if self.gaps is not None:
            self.gaps.close()
        if self._deleter is not None:
            self._deleter.shutdown(wait=True)

    # -- the queue ------------------------------------------------------------------------------
    def _start(self, now: float) -> None:
        self._read_attributes()  # raises: a failed poll, shown and retried with backoff
        retention = float(self.attributes.get("MessageRetentionPeriod") or 4 * 86400)
        from collectors.gaps import Gaps

        self.gaps = Gaps(self._gap_filler, self._saved.get("gaps", []), clock=self.clock)
        if self._alive_until is None:
            if self.lookback > 0:
                self.gaps.open_gap(now - self.lookback, now, "first start")
        elif now - self._alive_until > retention:
            self.gaps.open_gap(self._alive_until - self.settle, now, "outage longer than the queue's retention")
        self.gaps.start()
        if self._alive_until is None:
            self._alive_until = now  # what came before is the first gap's
        for index in range(self.receivers):
            thread = threading.Thread(target=self._receive_loop, args=(index,), name=f"sqs-receive-{index}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        self._started = True

    def _read_attributes(self) -> None:
        answer = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"])["Attributes"]
        attributes: dict = {k: v for k, v in answer.items()}
        for name in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if name in attributes:
                attributes[name] = int(attributes[name])
        if isinstance(attributes.get("RedrivePolicy"), str):
            try:
                attributes["RedrivePolicy"] = orjson.loads(attributes["RedrivePolicy"])
            except orjson.JSONDecodeError:
                attributes["RedrivePolicy"] = {}
        self.attributes = attributes
        self.depth = {k: v for k, v in answer.items() if k.startswith("ApproximateNumberOf")}
        visibility = attributes.get("VisibilityTimeout")
        needed = self.save_every + VISIBILITY_MARGIN
        self.warning = (
            f"The queue's visibility timeout ({visibility} s) is shorter than the save interval plus a margin "
            f"({needed:,.0f} s): messages are saved early to avoid being delivered twice. Raise it to at least "
            f"{needed:,.0f} s."
            if visibility is not None and visibility < needed
            else ""
        )

    def _receive_loop(self, index: int) -> None:
        failures = 0
        last_depth = time.monotonic()
        while not self._closed.is_set():
            if index > 0 and not self._deep.wait(1.0):
                continue
            with self._arrived:
                if len(self._inbox) >= MAX_IN_MEMORY:
                    self._arrived.wait(0.5)
                    continue
            if self.needs_save():
                # A save is due: what is received now would wait for the one after it, and could be
                # delivered again (and, after the redrive policy's receives, dead-lettered) meanwhile.
                self.waiting_for_save = True
                self._closed.wait(0.1)
                continue
            self.waiting_for_save = False
            try:
                answer = self.client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=MESSAGES_PER_RECEIVE,
                    WaitTimeSeconds=self.wait_seconds,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except Exception as error:  # a failing receive is shown and retried; nothing was taken
                failures += 1
                self._note_error("receive", error)
                self._deep.clear()
                self._closed.wait(min(RECEIVE_BACKOFF[1], RECEIVE_BACKOFF[0] * 2 ** min(failures, 6)))
                continue
            failures = 0
            arrival = self.clock()
            messages = answer.get("Messages", [])
            (self._deep.set if len(messages) == MESSAGES_PER_RECEIVE else self._deep.clear)()
            again = sum(1 for m in messages if int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)) > 1)
            with self._arrived:
                self._inbox.extend((arrival, m) for m in messages)
                self._last_receive_ok = arrival
                if messages:
                    self.last_message_at = arrival
                self.counts["received"] += len(messages)
                self.counts["redelivered"] += again
                self._arrived.notify_all()
            if index == 0 and time.monotonic() - last_depth > 60:
                last_depth = time.monotonic()
                self._read_depth()

    def _read_depth(self) -> None:
        try:
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            self.depth = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        except Exception as error:  # the depth is only shown
            self._note_error("depth", error)

    def _delete(self, handles: list[str]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        try:
            answer = self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as error:  # the messages come back after the visibility timeout, deduplicated
            self._count("delete_failures", len(handles))
            self._note_error("delete", error)
            return
        self._count("deleted", len(answer.get("Successful", [])))
        failed = answer.get("Failed", [])
        if failed:
            self._count("delete_failures", len(failed))
            self._note_error("delete", RuntimeError(f"{failed[0].get('Code')}: {failed[0].get('Message', '')}"))

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            self.counts[name] += n

    def _note_error(self, what: str, error: BaseException) -> None:
        from collectors.cloudtrail import describe

        if what == "receive":
            self._count("receive_errors", 1)
        self.last_error = f"{what}: {describe(error)}"
        self.last_error_at = self.clock()


def make_client(queue_url: str, session=None, receivers: int = RECEIVERS):
    """An SQS client for the queue's region (from its URL; else the default region, else
    us-east-1), with botocore's standard retries. ``AWS_ENDPOINT_URL_SQS`` is honoured."""
    import boto3
    from botocore.config import Config

    session = session or boto3.Session()
    region = region_of_queue(queue_url) or session.region_name or "us-east-1"
    config = Config(
        retries={"mode": "standard", "max_attempts": 6},
        connect_timeout=5,
        read_timeout=WAIT_SECONDS + 10,  # a long poll holds the connection 20 s
        max_pool_connections=2 * receivers + 10,
        user_agent_appid="account-activity-insights",
    )
    return session.client("sqs", region_name=region, config=config)


def from_settings(values: dict, checkpoint: dict) -> SqsSource:
    """The source as the app's settings describe it, resuming from its saved checkpoint."""
    from collectors.gaps import filler_for
    from settings import SettingsError

    url = values["sqs_queue_url"]
    if not url:
        raise SettingsError("INSIGHTS_SQS_QUEUE_URL must name the queue when the source is eventbridge")
    if values["eventbridge_backfill"] == "s3" and not values["s3_bucket"]:
        raise SettingsError("INSIGHTS_S3_BUCKET must name the trail's bucket when INSIGHTS_EVENTBRIDGE_BACKFILL is s3")
    receivers = values["sqs_receivers"]
    return SqsSource(
        make_client(url, receivers=receivers),
        url,
        receivers=receivers,
        regions=values["regions"],
        save_every=values["save_minutes"] * 60,
        lookback=values["lookback_hours"] * 3600,
        checkpoint=checkpoint,
        gap_filler=filler_for(values),
    )
