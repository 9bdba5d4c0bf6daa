import json
import os
import stat
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws

from collectors.alerts import (
    Alert,
    Alerter,
    SnsSink,
    WebhookSink,
    alert_for_hit,
    alert_for_score,
    slack_payload,
    sns_subject,
)

T0 = 1_722_587_400
HOSTILE = "<!channel> <script>"


@dataclass(frozen=True)
class FakeHit:
    """The shape of metrics.detections.Hit, which this module does not import."""

    id: str = "hit-1"
    rule_id: str = "iam-user-created"
    title: str = "IAM user created"
    severity: str = "high"
    technique: str = "T1136.003"
    time: float = T0
    event_ids: tuple = ("e1", "e2")
    principal: str = "arn:aws:iam::111122223333:user/alice"
    source_ip: str = "198.51.100.7"
    account: str = "111122223333"
    region: str = "us-east-1"
    failed: bool = False
    summary: str = "alice created the IAM user mallory"
    iac: str = ""
    tags: tuple = ()


class ListSink:
    name = "list"

    def __init__(self):
        self.alerts = []

    def send(self, alert):
        self.alerts.append(alert)


class Receiver:
    """A local Slack-like webhook: records JSON bodies; can fail or stall the first requests."""

    def __init__(self):
        self.bodies: list[dict] = []  # answered 200
        self.requests = 0
        self.arrivals: list[float] = []
        self.fail_first = 0
        self.delay = 0.0
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.requests += 1
                    receiver.arrivals.append(time.monotonic())
                    failing = receiver.requests <= receiver.fail_first
                if receiver.delay:
                    receiver.release.wait(receiver.delay)
                if failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.requests < count and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.requests >= count


@pytest.fixture
def receiver(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.release.set()
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def alerters():
    """Builds alerters and stops them all at the end."""
    made = []

    def make(sinks, **options) -> Alerter:
        options.setdefault("backoff", 0.01)
        alerter = Alerter(sinks, **options)
        made.append(alerter)
        return alerter

    yield make
    for alerter in made:
        alerter.stop(timeout=2)


def strings(value):
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_an_alert_is_sent_once_per_hit_even_when_submitted_many_times(receiver, alerters):
    alerter = alerters([WebhookSink(receiver.url)]).start()
    submitted = [alerter.submit_hit(FakeHit()) for _ in range(10)]
    assert alerter.flush(5)
    assert submitted == [True] + [False] * 9
    assert not alerter.submit_hit(FakeHit())  # nor again once sent
    assert alerter.flush(5)
    assert len(receiver.bodies) == 1
    health = alerter.health
    assert (health["sent"], health["duplicates"], health["queued"], health["failed"]) == (1, 10, 0, 0)
    assert health["sinks"]["webhook"]["sent"] == 1
    assert "IAM user created" in receiver.bodies[0]["text"]


def test_a_hit_below_min_severity_is_not_sent(receiver, alerters):
    alerter = alerters([WebhookSink(receiver.url)], min_severity="high").start()
    assert not alerter.submit_hit(FakeHit(id="a", severity="medium"))
    assert not alerter.submit_hit(FakeHit(id="b", severity="info"))
    assert alerter.submit_hit(FakeHit(id="c", severity="critical"))
    assert alerter.flush(5)
    assert [b["text"].split("]")[0] for b in receiver.bodies] == ["[CRITICAL"]
    assert alerter.health["skipped"] == 2


def test_a_failed_send_is_retried_with_backoff_until_it_succeeds(receiver, alerters):
    receiver.fail_first = 2
    alerter = alerters([WebhookSink(receiver.url)], max_attempts=5, backoff=0.05).start()
    started = time.monotonic()
    assert alerter.submit_hit(FakeHit())
    assert alerter.flush(5)
    assert time.monotonic() - started >= 0.05 + 0.1  # backoff, then twice the backoff
    assert receiver.requests == 3
    assert len(receiver.bodies) == 1
    health = alerter.health
    assert (health["sent"], health["retries"], health["failed"]) == (1, 2, 0)
    assert health["last_error"] == "webhook: HTTPError: HTTP Error 500: Internal Server Error"
    assert "secret" not in health["last_error"]


def test_after_max_attempts_a_send_is_failed_and_submit_never_blocked(receiver, alerters):
    receiver.fail_first = 100
    receiver.delay = 2.0  # each request stalls for longer than the sink's timeout
    sink = WebhookSink(receiver.url, timeout=0.3)
    alerter = alerters([sink], max_attempts=2, min_severity="info", score_threshold=1.0, per_minute=1000).start()
    assert alerter.submit_hit(FakeHit(id="first"))
    receiver.wait_for_requests(1)  # the worker is now stuck in a send
    durations = []
    for n in range(20):
        started = time.perf_counter()
        assert alerter.submit_hit(FakeHit(id=f"other-{n}", severity="low"))
        assert alerter.submit_score("TotalCalls", T0 + 10 * n, 99.0)
        durations.append(time.perf_counter() - started)
    assert max(durations) < 0.5  # a blocked submit would wait out the 2 s stall; a loaded machine adds a little
    receiver.release.set()  # later requests fail at once
    assert alerter.flush(10)
    health = alerter.health
    assert (health["failed"], health["retries"], health["sent"], health["queued"]) == (41, 41, 0, 0)
    assert receiver.requests == 82
    assert health["last_error"].startswith("webhook: ")
    assert receiver.bodies == []


def test_sends_are_rate_limited_and_the_excess_waits(receiver, alerters):
    alerter = alerters([WebhookSink(receiver.url)], per_minute=2, rate_window=0.4).start()
    started = time.monotonic()
    for n in range(5):
        assert alerter.submit_hit(FakeHit(id=f"hit-{n}"))
    assert alerter.flush(5)
    assert time.monotonic() - started >= 0.8 - 0.02  # 2 now, 2 after a window, 1 after two
    assert len(receiver.bodies) == 5  # nothing dropped
    arrivals = receiver.arrivals
    assert all(later - earlier >= 0.4 - 0.05 for earlier, later in zip(arrivals, arrivals[2:]))
    assert alerter.health["dropped"] == 0


def test_a_full_queue_drops_the_lowest_severity_and_counts_it(receiver, alerters):
    alerter = alerters([WebhookSink(receiver.url)], min_severity="info", max_queue=3)  # not started: it fills
    assert all(alerter.submit_hit(FakeHit(id=f"low-{n}", severity="low")) for n in range(3))
    assert alerter.submit_hit(FakeHit(id="critical", severity="critical"))  # a low one makes room
    assert not alerter.submit_hit(FakeHit(id="info", severity="info"))  # the lowest: dropped itself
    assert alerter.health["dropped"] == 2
    alerter.start()
    assert alerter.flush(5)
    titles = [body["text"] for body in receiver.bodies]
    assert titles[0].startswith("[CRITICAL]")  # the highest severity goes first
    assert len(titles) == 3
    assert alerter.submit_hit(FakeHit(id="low-2", severity="low"))  # the dropped one may come back


def test_each_sink_is_sent_to_independently(receiver, alerters):
    class Broken:
        name = "broken"

        def send(self, alert):
            raise ConnectionError("no route")

    alerter = alerters([Broken(), WebhookSink(receiver.url)], max_attempts=2).start()
    assert alerter.submit_hit(FakeHit())
    assert alerter.flush(5)
    assert len(receiver.bodies) == 1
    sinks = alerter.health["sinks"]
    assert sinks["broken"] == {
        "sent": 0,
        "failed": 1,
        "retries": 1,
        "last_error": "ConnectionError: no route",
        "last_sent_at": None,
    }
    assert (sinks["webhook"]["sent"], sinks["webhook"]["failed"]) == (1, 0)


def test_dedupe_survives_a_restart_through_the_state_file(receiver, alerters, tmp_path):
    state = tmp_path / "state" / "alerts.json"
    first = alerters([WebhookSink(receiver.url)], state_path=state).start()
    assert first.submit_hit(FakeHit())
    assert first.flush(5)
    first.stop()
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    saved = json.loads(state.read_text())
    assert list(saved["sent"]) == ["hit-1"]
    assert saved["sent"]["hit-1"]["sinks"] == ["webhook"]
    assert not [p for p in state.parent.iterdir() if p.name != "alerts.json"]  # no temporary left

    second = alerters([WebhookSink(receiver.url)], state_path=state).start()
    assert not second.submit_hit(FakeHit())
    assert second.submit_hit(FakeHit(id="hit-2"))
    assert second.flush(5)
    assert len(receiver.bodies) == 2

    week_later = alerters([WebhookSink(receiver.url)], state_path=state, clock=lambda: time.time() + 8 * 86400)
    assert week_later.submit_hit(FakeHit())  # keys older than 7 days are forgotten


def test_a_restart_sends_only_to_the_sinks_that_missed_an_alert(receiver, alerters, tmp_path):
    state = tmp_path / "alerts.json"
    state.write_text(json.dumps({"version": 1, "sent": {"hit-1": {"time": time.time(), "sinks": ["other"]}}}))
    alerter = alerters([WebhookSink(receiver.url, name="other"), WebhookSink(receiver.url)], state_path=state)
    assert alerter.submit_hit(FakeHit())
    assert alerter.start().flush(5)
    assert len(receiver.bodies) == 1
    assert json.loads(state.read_text())["sent"]["hit-1"]["sinks"] == ["other", "webhook"]


def test_an_unreadable_state_file_is_reported_and_ignored(tmp_path):
    state = tmp_path / "alerts.json"
    state.write_text("{not json")
    alerter = Alerter([], state_path=state)
    assert alerter.health["last_error"].startswith("alert state unreadable")


def test_slack_control_characters_from_records_are_escaped(receiver, alerters):
    hit = FakeHit(principal=HOSTILE, summary=f"{HOSTILE} & friends deleted the trail", title=f"Trail off {HOSTILE}")
    alerter = alerters([WebhookSink(receiver.url)], base_url="https://insights.example.com/").start()
    assert alerter.submit_hit(hit)
    assert alerter.flush(5)
    body = receiver.bodies[0]
    texts = list(strings(body))
    assert "&lt;!channel&gt; &lt;script&gt;" in body["text"]
    assert "&lt;!channel&gt; &lt;script&gt; &amp; friends" in body["blocks"][1]["text"]["text"]
    assert not any("<!" in text or "<script" in text for text in texts)
    assert all(text.count("<") == text.count(">") == 0 for text in texts if "Open in" not in text)
    assert body["blocks"][-1]["elements"][0]["text"] == (
        "<https://insights.example.com/detections|Open in Account Activity Insights>"
    )
    assert all(block["text"]["verbatim"] for block in body["blocks"] if "text" in block)


def test_a_long_slack_text_is_cut_without_splitting_an_entity():
    alert = Alert(key="k", title="t", severity="low", text="&" * 5000, time=T0)
    text = slack_payload(alert)["blocks"][1]["text"]["text"]
    assert len(text) <= 3000
    assert text.endswith("&amp;…")


def test_the_webhook_accepts_only_http_urls():
    for url in ("file:///etc/passwd", "ftp://example.com/hook", "hooks.slack.com/services/x", "http:///path"):
        with pytest.raises(ValueError, match="http"):
            WebhookSink(url)
    with pytest.raises(ValueError, match="base_url"):
        Alerter([], base_url="javascript:alert(1)")


@mock_aws
def test_sns_gets_an_ascii_subject_the_text_and_the_severity():
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    hit = FakeHit(title="Console login from Zürich\nwithout MFA " + "x" * 200, severity="critical")
    alerter = Alerter([SnsSink(sns, topic)], backoff=0.01).start()
    try:
        assert alerter.submit_hit(hit)
        assert alerter.flush(5)
    finally:
        alerter.stop()
    assert alerter.health["sinks"]["sns:alerts"]["sent"] == 1
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    envelope = json.loads(messages[0]["Body"])
    subject = envelope["Subject"]
    assert subject.startswith("[CRITICAL] Console login from Zurich without MFA xxx")
    assert len(subject) < 100 and subject.isascii() and subject.isprintable()
    assert envelope["Message"] == alert_for_hit(hit).text
    assert "Principal: arn:aws:iam::111122223333:user/alice" in envelope["Message"]
    assert envelope["MessageAttributes"]["severity"] == {"Type": "String", "Value": "critical"}


def test_an_sns_subject_is_never_empty():
    assert sns_subject(Alert(key="k", title="\u4e2d\u6587", severity="low", text="", time=T0)) == "[LOW]"
    assert sns_subject(replace(alert_for_hit(FakeHit()), title="")) == "[HIGH]"


def test_an_anomaly_score_above_threshold_alerts_once_per_window(receiver, alerters):
    alerter = alerters([WebhookSink(receiver.url)], score_threshold=3.0).start()
    assert not alerter.submit_score("TotalCalls", T0, 2.0)
    assert not alerter.submit_score("TotalCalls", T0, float("nan"))
    assert alerter.submit_score("TotalCalls", T0, 5.0)
    assert not alerter.submit_score("TotalCalls", T0, 9.0)  # a provisional score rising again
    assert alerter.submit_score("TotalCalls", T0 + 10, 3.0)
    assert alerter.flush(5)
    assert len(receiver.bodies) == 2
    assert receiver.bodies[0]["text"] == "[HIGH] Anomaly in TotalCalls: The anomaly score of TotalCalls is 5 " + (
        "(threshold 3) in the window starting at 2024-08-02 08:30:00 UTC."
    )


def test_scores_never_alert_without_a_threshold(alerters):
    alerter = alerters([ListSink()])
    assert not alerter.submit_score("TotalCalls", T0, 1e9)


def test_the_alerts_of_hits_and_scores():
    alert = alert_for_hit(FakeHit(event_ids=tuple(f"e{n}" for n in range(7)), failed=True), "https://x.example")
    assert (alert.key, alert.severity, alert.time, alert.link) == ("hit-1", "high", T0, "https://x.example/detections")
    assert alert.fields["Events"] == "7: e0, e1, e2, e3, e4 and 2 more"
    assert alert.fields["Outcome"] == "failed"
    assert alert.text.startswith("alice created the IAM user mallory\n\nRule: iam-user-created\n")
    assert "Infrastructure as code" not in alert.fields and "Tags" not in alert.fields
    labelled = alert_for_hit(replace(FakeHit(), iac="Terraform", tags=("attack.persistence", "attack.t1136.003")))
    assert labelled.fields["Infrastructure as code"] == "Terraform"
    assert labelled.fields["Tags"] == "attack.persistence, attack.t1136.003"
    score = alert_for_score("TotalCalls", T0 + 0.5, 4.0, 3.0)
    assert score.key == f"anomaly:TotalCalls:{T0 + 0.5!r}"
    assert alert_for_score("TotalCalls", float(T0), 4.0, 3.0).key == f"anomaly:TotalCalls:{T0}"
    with pytest.raises(ValueError, match="severity"):
        Alert(key="k", title="t", severity="urgent", text="", time=T0)


def test_a_malformed_hit_is_counted_not_raised(alerters):
    alerter = alerters([ListSink()], min_severity="info")
    assert not alerter.submit_hit(object())
    assert not alerter.submit_hit(FakeHit(severity="urgent"))
    assert alerter.health["rejected"] == 2
    assert "AttributeError" in alerter.health["last_error"] or "ValueError" in alerter.health["last_error"]
