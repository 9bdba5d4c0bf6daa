"""Optional outgoing alerts: detection hits and anomaly scores sent to a Slack-compatible
webhook or an SNS topic by a thread of their own, so that the collector never waits on them.

``Alerter.submit_hit`` and ``Alerter.submit_score`` only put an ``Alert`` in a bounded queue,
under a lock that is never held during a send or a file write. A daemon worker sends each
alert to each sink on its own: a failed send is retried with exponential backoff up to
``max_attempts`` and then counted as failed; sends are rate-limited in total (the excess
waits); when the queue is full the lowest severity is dropped and counted.

An alert is deduplicated by its key (a hit's id, or ``anomaly:<metric>:<window start>``):
queued, sent or failed once per process, and, with ``state_path``, the keys each sink has
received survive a restart, so a restart never sends an alert again.

A hit is any object with the attributes of ``metrics.detections.Hit`` (``id``, ``rule_id``,
``title``, ``severity``, ``technique``, ``time``, ``event_ids``, ``principal``,
``source_ip``, ``account``, ``region``, ``failed``, ``summary``); it is not imported.

>>> alert = alert_for_score("TotalCalls", 1_722_587_400, score=4.2, threshold=3.0)
>>> alert.key, alert.severity
('anomaly:TotalCalls:1722587400', 'high')
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import unicodedata
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from metrics.visible import visible
from storage import write_private

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
ANOMALY_SEVERITY = "high"
KEEP_SECONDS = 7 * 86400  # sent keys older than this are forgotten
MAX_BACKOFF = 300.0
MAX_WAIT = 1.0  # the worker looks at the clock at least this often (a fake clock may jump)
STATE_VERSION = 1
APP_NAME = "Account Activity Insights"

SLACK_TEXT_LIMIT = 3000  # a section's text
SNS_SUBJECT_LIMIT = 99  # "must be less than 100 characters"
SNS_MESSAGE_LIMIT = 256 * 1024  # bytes
EVENT_IDS_SHOWN = 5
_SLACK_ICON = {"info": ":information_source:", "low": ":large_blue_circle:", "medium": ":warning:"}
_SLACK_ICON |= {"high": ":rotating_light:", "critical": ":rotating_light:"}


def severity_rank(severity: str) -> int:
    try:
        return SEVERITY_RANK[severity]
    except KeyError:
        raise ValueError(f"unknown severity {severity!r}, expected one of {', '.join(SEVERITIES)}") from None


@dataclass(frozen=True)
class Alert:
    key: str  # the dedupe key
    title: str
    severity: str
    text: str  # plain-text body, without the link
    time: float  # epoch seconds of what is alerted on
    link: str | None = None  # a URL of the app
    fields: dict[str, str] = field(default_factory=dict, hash=False)  # label -> value, in display order

    def __post_init__(self):
        severity_rank(self.severity)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(float(seconds), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: float) -> str:
    """A window start as a stable key part: ``1722587400``, not ``1722587400.0``."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _check_url(url: str, what: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL")
    return url


def _link(base_url: str, page: str) -> str | None:
    if not base_url:
        return None
    return f"{_check_url(base_url, 'base_url').rstrip('/')}/{page}"


def _event_list(event_ids: tuple) -> str:
    shown = ", ".join(str(e) for e in event_ids[:EVENT_IDS_SHOWN])
    more = len(event_ids) - EVENT_IDS_SHOWN
    return f"{len(event_ids)}: {shown}" + (f" and {more} more" if more > 0 else "")


def _body(first: str, fields: dict[str, str]) -> str:
    return "\n".join([first, "", *(f"{label}: {value}" for label, value in fields.items())])


def alert_for_hit(hit, base_url: str = "") -> Alert:
    """The alert of a detection hit (any object with ``metrics.detections.Hit``'s attributes)."""
    event_ids = tuple(hit.event_ids or ())
    raw = {
        "Rule": hit.rule_id,
        "Technique": hit.technique,
        "Principal": hit.principal,
        "Source IP": hit.source_ip,
        "Account": hit.account,
        "Region": hit.region,
        "Outcome": "failed" if hit.failed else "succeeded",
        "Time": _iso(hit.time),
        "Events": _event_list(event_ids) if event_ids else None,
        "Infrastructure as code": getattr(hit, "iac", "") or None,
        "Tags": ", ".join(getattr(hit, "tags", ()) or ()) or None,
    }
    # Record text as a reader may see it: bidi controls as escapes (metrics.visible).
    fields = {label: visible(str(value)) for label, value in raw.items() if value not in (None, "")}
    title = visible(str(hit.title))
    return Alert(
        key=str(hit.id),
        title=title,
        severity=str(hit.severity).lower(),
        text=_body(visible(str(hit.summary or title)), fields),
        time=float(hit.time),
        link=_link(base_url, "detections"),
        fields=fields,
    )


def anomaly_key(metric: str, window_start: float) -> str:
    return f"anomaly:{metric}:{_number(window_start)}"


def alert_for_score(metric: str, window_start: float, score: float, threshold: float, base_url: str = "") -> Alert:
    """The alert of an anomaly score at or above its threshold; one key per metric and window."""
    fields = {
        "Metric": metric,
        "Window start": _iso(window_start),
        "Score": f"{score:.3g}",
        "Threshold": f"{threshold:.3g}",
    }
    first = f"The anomaly score of {metric} is {score:.3g} (threshold {threshold:.3g}) in the window starting at "
    return Alert(
        key=anomaly_key(metric, window_start),
        title=f"Anomaly in {metric}",
        severity=ANOMALY_SEVERITY,
        text=_body(first + _iso(window_start) + ".", fields),
        time=float(window_start),
        link=_link(base_url, ""),
        fields=fields,
    )


# Slack ------------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Escapes Slack's control characters, so record text cannot mention (``<!channel>``) or link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut_escaped(text: str, limit: int) -> str:
    """Shortens escaped text without splitting an ``&amp;``-style entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp > cut.rfind(";"):
        cut = cut[:amp]
    return cut + "…"


def _mrkdwn(text: str) -> dict:
    # verbatim: no automatic linking of URLs, channel names or mentions in what we send.
    return {"type": "mrkdwn", "text": _cut_escaped(text, SLACK_TEXT_LIMIT), "verbatim": True}


def slack_payload(alert: Alert) -> dict:
    """A Slack-compatible incoming-webhook body: a plain ``text`` fallback and simple blocks."""
    label = f"[{alert.severity.upper()}] {slack_escape(alert.title)}"
    first_line = alert.text.split("\n", 1)[0]
    fallback = label if first_line == alert.title else f"{label}: {slack_escape(first_line)}"
    blocks = [
        {"type": "section", "text": _mrkdwn(f"{_SLACK_ICON[alert.severity]} *{label}*")},
        {"type": "section", "text": _mrkdwn(slack_escape(alert.text))},
    ]
    if alert.link:
        url = urllib.parse.quote(alert.link, safe=":/?#[]@!$&'()*+,;=%~")  # no < > | or spaces
        blocks.append({"type": "context", "elements": [_mrkdwn(f"<{slack_escape(url)}|Open in {APP_NAME}>")]})
    return {"text": _cut_escaped(fallback, SLACK_TEXT_LIMIT), "blocks": blocks}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is an error, not a reason to post elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class WebhookSink:
    """POSTs a Slack-compatible JSON body to an http(s) URL; ``send`` raises on any failure.

    The URL is a secret for Slack (its path is the credential): it is never put in errors,
    names or the state file.
    """

    def __init__(self, url: str, timeout: float = 5, *, name: str = "webhook"):
        self.url = _check_url(url, "the webhook URL")
        self.timeout = timeout
        self.name = name
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, alert: Alert) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(slack_payload(alert)).encode(),
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "account-activity-insights"},
        )
        with self._opener.open(request, timeout=self.timeout) as response:  # raises HTTPError on >= 300
            response.read(64 * 1024)


# SNS --------------------------------------------------------------------------------------


def sns_subject(alert: Alert) -> str:
    """``[HIGH] title`` as SNS accepts it: printable ASCII, one line, under 100 characters."""
    text = unicodedata.normalize("NFKD", f"[{alert.severity.upper()}] {alert.title}")
    text = "".join(c if " " <= c <= "~" else " " for c in text.encode("ascii", "ignore").decode())
    text = " ".join(text.split())
    if len(text) > SNS_SUBJECT_LIMIT:
        text = text[: SNS_SUBJECT_LIMIT - 3].rstrip() + "..."
    return text or "Alert"


def sns_message(alert: Alert) -> str:
    text = alert.text or alert.title or alert.key
    if alert.link:
        text += f"\n\nOpen in {APP_NAME}: {alert.link}"
    data = text.encode()
    if len(data) > SNS_MESSAGE_LIMIT:
        text = data[: SNS_MESSAGE_LIMIT - 16].decode(errors="ignore") + "\n[truncated]"
    return text


class SnsSink:
    """Publishes to an SNS topic with a client it is given (``boto3.client("sns")``)."""

    def __init__(self, client, topic_arn: str, *, name: str | None = None):
        self.client = client
        self.topic_arn = topic_arn
        self.name = name or f"sns:{topic_arn.rsplit(':', 1)[-1]}"

    def send(self, alert: Alert) -> None:
        self.client.publish(
            TopicArn=self.topic_arn,
            Subject=sns_subject(alert),
            Message=sns_message(alert),
            MessageAttributes={
                "severity": {"DataType": "String", "StringValue": alert.severity},
                "alert_key": {"DataType": "String", "StringValue": alert.key},
            },
        )


# The queue and its worker -----------------------------------------------------------------


@dataclass
class _Delivery:
    sink: int  # index into Alerter.sinks
    attempts: int = 0
    due: float = 0.0


@dataclass
class _Entry:
    alert: Alert
    rank: int
    seq: int
    deliveries: list[_Delivery]
    busy: bool = False  # being sent: never evicted


@dataclass
class _SinkStats:
    sent: int = 0
    failed: int = 0
    retries: int = 0
    last_error: str | None = None
    last_sent_at: float | None = None


def _write_json_atomically(path: Path, data) -> None:
    write_private(path, json.dumps(data, indent=1, sort_keys=True))


class Alerter:
    """Queues alerts from the collector and sends them from a daemon thread.

    ``submit_hit`` / ``submit_score`` never block and never raise: a malformed hit is
    counted (``rejected``) and shown as ``last_error``. ``per_minute`` sends (attempts, over
    all sinks) are allowed per ``rate_window`` seconds. Anomaly alerts are gated by
    ``score_threshold`` only (``None``: no anomaly alerts), not by ``min_severity``.
    """

    def __init__(
        self,
        sinks,
        *,
        min_severity: str = "high",
        score_threshold: float | None = None,
        per_minute: int = 20,
        max_attempts: int = 5,
        backoff: float = 2.0,
        state_path: str | os.PathLike | None = None,
        clock=time.time,
        base_url: str = "",
        rate_window: float = 60.0,
        max_queue: int = 1000,
        keep_seconds: float = KEEP_SECONDS,
    ):
        if per_minute < 1 or max_attempts < 1 or max_queue < 1:
            raise ValueError("per_minute, max_attempts and max_queue must be at least 1")
        self.sinks = list(sinks)
        self.sink_names: list[str] = []
        for sink in self.sinks:
            base = getattr(sink, "name", None) or type(sink).__name__
            name, n = base, 2
            while name in self.sink_names:
                name, n = f"{base}#{n}", n + 1
            self.sink_names.append(name)
        self.min_severity = min_severity
        self._min_rank = severity_rank(min_severity)
        self.score_threshold = score_threshold
        self.per_minute = per_minute
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.state_path = Path(state_path) if state_path is not None else None
        self.clock = clock
        self.base_url = _check_url(base_url, "base_url") if base_url else ""
        self.rate_window = rate_window
        self.max_queue = max_queue
        self.keep_seconds = keep_seconds

        self._cond = threading.Condition(threading.Lock())
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: dict[str, _Entry] = {}
        self._seen: dict[str, float] = {}  # keys queued, sent or failed in this process -> when
        self._sent: dict[str, tuple[float, tuple[str, ...]]] = {}  # key -> (when first sent, sinks delivered)
        self._sends: deque[float] = deque()  # start times of recent send attempts, for the rate limit
        self._seq = 0
        self._last_prune = clock()
        self._stats = {name: _SinkStats() for name in self.sink_names}
        self._counts = dict.fromkeys(("sent", "failed", "dropped", "retries", "duplicates", "skipped", "rejected"), 0)
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_sent_at: float | None = None
        self._load()

    # The collector's side: quick, under the lock only ----------------------------------------

    def submit_hit(self, hit) -> bool:
        """Queues the alert of ``hit`` if its severity is at least ``min_severity`` and its id is
        neither queued nor already sent; returns whether it was queued."""
        try:
            if severity_rank(str(hit.severity).lower()) < self._min_rank:
                return self._count("skipped")
            if str(hit.id) in self._seen:
                return self._count("duplicates")
            alert = alert_for_hit(hit, self.base_url)
        except Exception as error:  # a malformed hit must not stop the collector
            return self._reject("hit", error)
        return self._enqueue(alert)

    def submit_score(self, metric: str, window_start: float, score: float) -> bool:
        """Queues one alert per (metric, window) the first time its score reaches ``score_threshold``."""
        threshold = self.score_threshold
        try:
            if threshold is None or not score >= threshold:  # NaN never alerts
                return self._count("skipped")
            if anomaly_key(metric, window_start) in self._seen:
                return self._count("duplicates")
            alert = alert_for_score(metric, window_start, score, threshold, self.base_url)
        except Exception as error:
            return self._reject("score", error)
        return self._enqueue(alert)

    def _count(self, name: str) -> bool:
        with self._cond:
            self._counts[name] += 1
        return False

    def _reject(self, what: str, error: Exception) -> bool:
        with self._cond:
            self._counts["rejected"] += 1
            self._note_error(f"rejected {what}: {type(error).__name__}: {error}")
        return False

    def _enqueue(self, alert: Alert) -> bool:
        rank = severity_rank(alert.severity)
        with self._cond:
            if alert.key in self._seen:
                self._counts["duplicates"] += 1
                return False
            delivered = set(self._sent.get(alert.key, (0.0, ()))[1])
            todo = [i for i, name in enumerate(self.sink_names) if name not in delivered]
            if not todo:  # sent before a restart, or no sinks at all
                self._seen[alert.key] = self.clock()
                self._counts["duplicates" if delivered else "skipped"] += 1
                return False
            if len(self._queue) >= self.max_queue:
                waiting = (e for e in self._queue.values() if not e.busy)
                victim = min(waiting, key=lambda e: (e.rank, -e.seq), default=None)  # lowest, then newest
                self._counts["dropped"] += 1
                if victim is None or victim.rank >= rank:
                    return False  # the new alert is the lowest: it is the one dropped
                del self._queue[victim.alert.key]
                self._seen.pop(victim.alert.key, None)  # may be submitted again later
            self._seq += 1
            self._queue[alert.key] = _Entry(alert, rank, self._seq, [_Delivery(i) for i in todo])
            self._seen[alert.key] = self.clock()
            self._cond.notify_all()
            return True

    # The worker ---------------------------------------------------------------------------

    def _next(self, now: float) -> tuple[tuple[_Entry, _Delivery] | None, float]:
        """The delivery to attempt now (highest severity, then oldest), or how long to wait."""
        best, best_order, soonest = None, None, math.inf
        for entry in self._queue.values():
            for delivery in entry.deliveries:
                if delivery.due <= now:
                    if best_order is None or (-entry.rank, entry.seq) < best_order:
                        best, best_order = (entry, delivery), (-entry.rank, entry.seq)
                else:
                    soonest = min(soonest, delivery.due)
        if best is None:
            return None, soonest - now
        while self._sends and self._sends[0] <= now - self.rate_window:
            self._sends.popleft()
        if len(self._sends) >= self.per_minute:
            return None, self._sends[0] + self.rate_window - now
        return best, 0.0

    def run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                now = self.clock()
                job, wait = self._next(now)
                if job is None:
                    self._cond.wait(min(max(wait, 0.001), MAX_WAIT))
                    continue
                entry, delivery = job
                entry.busy = True
                delivery.attempts += 1
                self._sends.append(now)
            self._deliver(entry, delivery)
            if self.clock() - self._last_prune >= 3600:
                self._prune_and_save()

    def _deliver(self, entry: _Entry, delivery: _Delivery) -> None:
        name = self.sink_names[delivery.sink]
        try:
            self.sinks[delivery.sink].send(entry.alert)
            error = None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        now = self.clock()
        key = entry.alert.key
        with self._cond:
            stats = self._stats[name]
            if error is None:
                entry.deliveries.remove(delivery)
                stats.sent += 1
                self._counts["sent"] += 1
                stats.last_sent_at = self.last_sent_at = now
                when, sinks = self._sent.get(key, (now, ()))
                self._sent[key] = (when, (*sinks, name))
            else:
                stats.last_error = error
                self._note_error(f"{name}: {error}", now)
                if delivery.attempts >= self.max_attempts:
                    entry.deliveries.remove(delivery)
                    stats.failed += 1
                    self._counts["failed"] += 1
                else:
                    stats.retries += 1
                    self._counts["retries"] += 1
                    delivery.due = now + min(MAX_BACKOFF, self.backoff * 2 ** (delivery.attempts - 1))
            done = not entry.deliveries
            if not done:
                entry.busy = False
                self._cond.notify_all()
        if error is None:
            self._save()
        if done:  # only now, so that an empty queue (``flush``) means the state is on disk
            with self._cond:
                entry.busy = False
                if self._queue.get(key) is entry:
                    del self._queue[key]
                self._cond.notify_all()

    def _note_error(self, message: str, now: float | None = None) -> None:
        self.last_error = message
        self.last_error_at = self.clock() if now is None else now

    # What survives a restart ---------------------------------------------------------------

    def _load(self) -> None:
        if self.state_path is None:
            return
        try:
            saved = json.loads(self.state_path.read_text())
            sent = saved["sent"] if isinstance(saved, dict) and saved.get("version") == STATE_VERSION else {}
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as error:
            self._note_error(f"alert state unreadable, starting over: {error}")
            return
        oldest = self.clock() - self.keep_seconds
        for key, item in sent.items() if isinstance(sent, dict) else ():
            try:
                when, sinks = float(item["time"]), tuple(str(s) for s in item["sinks"])
            except (KeyError, TypeError, ValueError):
                continue
            if when >= oldest:
                self._sent[str(key)] = (when, sinks)

    def _prune(self, now: float) -> None:
        oldest = now - self.keep_seconds
        self._sent = {k: v for k, v in self._sent.items() if v[0] >= oldest}
        self._seen = {k: t for k, t in self._seen.items() if t >= oldest or k in self._queue}
        self._last_prune = now

    def _prune_and_save(self) -> None:
        with self._cond:
            self._prune(self.clock())
        self._save()

    def _save(self) -> None:
        """Writes the sent keys atomically (0600); a failure is shown, never raised."""
        if self.state_path is None:
            return
        with self._save_lock:
            with self._cond:  # values are immutable tuples: a shallow copy is a snapshot
                oldest = self.clock() - self.keep_seconds
                sent = dict(self._sent)
            sent = {k: {"time": when, "sinks": list(sinks)} for k, (when, sinks) in sent.items() if when >= oldest}
            try:
                _write_json_atomically(self.state_path, {"version": STATE_VERSION, "sent": sent})
            except Exception as error:  # a full disk must not stop the alerts
                with self._cond:
                    self._note_error(f"alert state not saved: {type(error).__name__}: {error}")

    # Control and health --------------------------------------------------------------------

    def start(self) -> Alerter:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="alerts", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the worker; alerts still queued are not sent (``flush`` first to send them)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every queued alert is sent or failed; returns False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def health(self) -> dict:
        """Counts for the Status page; ``sent``/``failed``/``retries`` count deliveries (alert x sink)."""
        with self._cond:
            return {
                "alive": self.alive,
                "queued": len(self._queue),
                **self._counts,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "last_sent_at": self.last_sent_at,
                "sinks": {name: dict(stats.__dict__) for name, stats in self._stats.items()},
            }
