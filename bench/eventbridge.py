"""Benchmark of the EventBridge source: events per second drained and ingested from a deep
queue, and the freshness with a producer at a steady rate; every figure from this run.

    python -m bench.eventbridge [--events 20000] [--moto-events 300] [--depths 100,300,1000]
                                [--receivers 4] [--rate 50] [--seconds 30]

Every queue is reached through real botocore over HTTP, from a server in its own process.

- moto's SQS server (``moto_server``, as the tests run it): its ceiling, a bare boto3 loop
  (receive 10, delete them in one batch, 4 threads) for 5 s at several depths, then the same
  drain by our source beside the bare loop. moto 5.2.5 makes a deep queue slow by itself: for
  each message a receive returns it checks the retention period through
  ``get_queue_attributes``, which computes every attribute, three of them by scanning every
  message in the queue with two clock reads each (``Queue.attributes``); every deletion scans
  the queue twice more, and each send computes the attributes once. So a receive costs about
  ``10 x 6 x depth`` clock reads, and the ceiling falls as one over the depth, whatever the client.
- ``bench.sqs_endpoint``, a minimal SQS endpoint whose calls cost the same at any depth: the
  deep-queue drain of ``--events``, ours beside the bare loop. This is the consumer's rate.
- An instant in-memory queue in the same process: the ceiling of the source, normaliser and engine.
- Freshness on moto (whose queue stays shallow under a steady producer): arrival in the buffer
  minus eventTime, as Status shows it, and minus the exact time each event was sent. eventTime
  has whole seconds, so the first figure adds the sub-second part of the send time (0 to 1 s,
  0.5 s on average); the second is the delivery itself.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from collectors import eventbridge
from collectors.collector import Collector
from metrics.engine import Engine
from tests.conftest import make_record

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")
REFRESH_SECONDS = 10  # the line charts' default refresh period
CEILING_SECONDS = 5.0  # each depth of moto's ceiling is measured this long


def body(i: int, when: float, tag: str) -> str:
    record = make_record(
        f"{tag}-{i:07d}", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)), awsRegion=REGIONS[i % 3]
    )
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.sts",
            "account": "111122223333",
            "time": record["eventTime"],
            "region": record["awsRegion"],
            "resources": [],
            "detail": record,
        }
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list[str], port: int) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"{command[0]} did not start")


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    return start_server([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port)


def start_endpoint() -> tuple[subprocess.Popen, str]:
    port = free_port()
    return start_server([sys.executable, "-m", "bench.sqs_endpoint", "--port", str(port)], port)


def fill(client, url: str, count: int, tag: str) -> float:
    """Sends ``count`` events in batches of 10 from 8 threads; returns the seconds it took."""
    now = time.time()
    started = time.perf_counter()

    def send(first: int) -> None:
        entries = [{"Id": str(i), "MessageBody": body(first + i, now - 60, tag)} for i in range(min(10, count - first))]
        client.send_message_batch(QueueUrl=url, Entries=entries)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(0, count, 10)))
    return time.perf_counter() - started


def bare_drain(client, url: str, count: int, threads: int, seconds: float | None = None) -> tuple[float, int]:
    """The same drain with nothing but boto3: receive 10, delete them in one batch; events per
    second and events drained, until ``count`` are drained or ``seconds`` have passed."""
    done = [0]
    lock = threading.Lock()
    started = time.perf_counter()
    stop = started + seconds if seconds else float("inf")

    def work() -> None:
        while time.perf_counter() < stop:
            with lock:
                if done[0] >= count:
                    return
            # No long poll: the queue is full, and a thread must not wait once the last message is taken
            got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if got:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
                client.delete_message_batch(QueueUrl=url, Entries=entries)
                with lock:
                    done[0] += len(got)

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work) for _ in range(threads)]:
            future.result()
    return done[0] / (time.perf_counter() - started), done[0]


def our_drain(client, url: str, count: int, receivers: int) -> tuple[float, int]:
    """The source and the collector (no state folder: deleted once ingested); events per second
    from the first receive to the last delete, and the events held."""
    engine = Engine(retention_seconds=None)
    source = eventbridge.SqsSource(client, url, receivers=receivers, lookback=0, wait_seconds=1)
    collector = Collector(source, engine)
    started = time.perf_counter()
    while len(engine.buffer) < count and time.perf_counter() - started < 900:
        collector.poll_once()
    source.close()  # waits for the last deletes
    return count / (time.perf_counter() - started), len(engine.buffer)


class InstantQueue:
    """An in-memory stand-in for SQS that answers at once: the source's own ceiling."""

    def __init__(self, count: int):
        now = time.time()
        self._bodies = [body(i, now - 60, "instant") for i in range(count)]
        self._lock = threading.Lock()

    def get_queue_attributes(self, **_):
        return {"Attributes": {"VisibilityTimeout": "900", "MessageRetentionPeriod": "1209600"}}

    def receive_message(self, **_):
        with self._lock:
            taken, self._bodies = self._bodies[:10], self._bodies[10:]
        if not taken:
            time.sleep(0.05)
        messages = [{"MessageId": str(i), "ReceiptHandle": str(uuid.uuid4()), "Body": b} for i, b in enumerate(taken)]
        return {"Messages": messages}

    def delete_message_batch(self, Entries, **_):  # boto3's argument name
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")  # noqa: E731
    return pick(0.5), pick(0.95)


def freshness(client, url: str, rate: float, seconds: float, receivers: int) -> tuple[dict, tuple, int]:
    """A producer puts ``rate`` events a second for ``seconds``, each stamped with the time it
    is sent; the collector runs in its thread. Returns the source's freshness over every region
    (against eventTime), the median and p95 against the exact send times, and the events sent."""
    engine = Engine(retention_seconds=None)
    sent_at: dict[str, float] = {}
    exact: list[float] = []
    ingest = engine.ingest

    def timed_ingest(batch, **options):  # the collector's normalised batch, as the source sees it ingested
        result = ingest(batch, **options)
        now = time.time()
        exact.extend(now - sent_at[event] for event in batch.column("eventID") if event in sent_at)
        return result

    engine.ingest = timed_ingest
    source = eventbridge.SqsSource(client, url, receivers=receivers, lookback=0)
    collector = Collector(source, engine).start()
    collector.wait_ready(60)  # the producer starts once the source listens, as a running app's would
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            batch = min(10, due - sent)
            now = time.time()
            entries = [{"Id": str(i), "MessageBody": body(sent + i, now, "steady")} for i in range(batch)]
            sent_at.update((f"steady-{sent + i:07d}", now) for i in range(batch))
            client.send_message_batch(QueueUrl=url, Entries=entries)
            sent += batch
        time.sleep(0.02)
    deadline = time.monotonic() + 30
    while len(engine.buffer) < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    collector.stop()
    source.close()
    overall = source.freshness.summary(time.time())[-1]
    return overall, percentiles(exact), sent


def step(what: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {what}\n")


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def queue(client, name: str) -> str:
    return client.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "900"})["QueueUrl"]


def moto_part(args) -> list[str]:
    """moto's ceiling at each depth, then ours beside the bare loop on ``--moto-events``."""
    server, endpoint = start_moto()
    lines = ["moto_server (moto 5.2.5), real botocore over HTTP:"]
    try:
        os.environ["AWS_ENDPOINT_URL_SQS"] = endpoint
        client = eventbridge.make_client(f"{endpoint}/123456789012/q", receivers=args.receivers)
        for depth in args.depths:
            url = queue(client, f"depth-{depth}")
            step(f"moto: filling {depth:,}")
            filled = fill(client, url, depth, "depth")
            step(f"moto: bare ceiling at depth {depth:,}")
            rate, done = bare_drain(client, url, depth, args.receivers, CEILING_SECONDS)
            lines.append(
                f"  ceiling, bare boto3 receive+delete, {args.receivers} threads, depth {depth:,} to {depth - done:,}: "
                f"{rate:,.1f} events/s (filled at {depth / filled:,.0f} events/s; load {load()})"
            )
        count = args.moto_events
        bare_url, ours_url = queue(client, "bare"), queue(client, "ours")
        step(f"moto: filling two queues of {count:,}")
        fill(client, bare_url, count, "bare")
        fill(client, ours_url, count, "ours")
        step("moto: bare drain")
        bare, _ = bare_drain(client, bare_url, count, args.receivers)
        step("moto: our drain")
        ours, held = our_drain(client, ours_url, count, args.receivers)
        lines += [
            f"  deep queue of {count:,} events drained to empty (load {load()}):",
            f"    bare boto3 receive+delete, {args.receivers} threads: {bare:,.1f} events/s",
            f"    ours (receive, parse, ingest, delete), {args.receivers} receivers: {ours:,.1f} events/s, "
            f"{held:,} held",
            f"    ours/bare: {ours / bare:.2f}x",
        ]
        step("moto: freshness")
        steady, exact, sent = freshness(client, queue(client, "steady"), args.rate, args.seconds, args.receivers)
        lines += [
            f"  freshness, producer at {args.rate:g} events/s for {args.seconds:g} s ({sent:,} sent, "
            f"{steady['events']:,} measured; load {load()}):",
            f"    arrival - eventTime (as Status shows it): median {steady['p50']:.2f} s, p95 {steady['p95']:.2f} s "
            f"(target 2 s: {steady['p95'] / 2:.2f}x; "
            f"with the {REFRESH_SECONDS} s chart refresh {2 + REFRESH_SECONDS} s)",
            f"    arrival - exact send time: median {exact[0]:.2f} s, p95 {exact[1]:.2f} s "
            "(eventTime has whole seconds: the line above adds the send time's fraction, 0 to 1 s)",
        ]
    finally:
        server.terminate()
        server.wait(10)
    return lines


def endpoint_part(args) -> list[str]:
    """The deep-queue drain on an endpoint whose calls cost the same at any depth."""
    server, endpoint = start_endpoint()
    try:
        os.environ["AWS_ENDPOINT_URL_SQS"] = endpoint
        client = eventbridge.make_client(f"{endpoint}/123456789012/q", receivers=args.receivers)
        bare_url, ours_url = queue(client, "bare"), queue(client, "ours")
        step(f"endpoint: filling two queues of {args.events:,}")
        filled = fill(client, bare_url, args.events, "bare")
        fill(client, ours_url, args.events, "ours")
        step("endpoint: bare drain")
        bare, _ = bare_drain(client, bare_url, args.events, args.receivers)
        step("endpoint: our drain")
        ours, held = our_drain(client, ours_url, args.events, args.receivers)
    finally:
        server.terminate()
        server.wait(10)
    return [
        f"bench.sqs_endpoint (constant cost a call), real botocore over HTTP, deep queue of {args.events:,} events "
        f"(filled at {args.events / filled:,.0f} events/s; load {load()}):",
        f"  bare boto3 receive+delete, {args.receivers} threads: {bare:,.0f} events/s",
        f"  ours (receive, parse, ingest, delete), {args.receivers} receivers: {ours:,.0f} events/s, {held:,} held "
        f"(target >= 1,000: {ours / 1000:.2f}x)",
        f"  ours/bare: {ours / bare:.2f}x",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events in the deep queue of bench.sqs_endpoint")
    parser.add_argument("--moto-events", type=int, default=300, help="events in moto's deep queue, ours and bare")
    parser.add_argument(
        "--depths",
        type=lambda text: [int(d) for d in text.split(",")],
        default=[100, 300, 1000],
        help="depths at which moto's ceiling is measured, comma-separated",
    )
    parser.add_argument("--receivers", type=int, default=eventbridge.RECEIVERS)
    parser.add_argument("--rate", type=float, default=50.0, help="producer events per second, freshness run")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the freshness run")
    parser.add_argument("--parts", default="endpoint,instant,moto", help="which parts to run, comma-separated")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCH")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "x")
    lines = [f"load average at the start {load()} (2 cores)"]
    if "endpoint" in parts:
        lines += endpoint_part(args)
    if "instant" in parts:
        step("our drain of an instant queue")
        ceiling, ceiling_held = our_drain(InstantQueue(args.events), "instant", args.events, args.receivers)
        lines.append(
            f"source ceiling, instant in-memory queue, {args.events:,} events: {ceiling:,.0f} events/s "
            f"({ceiling_held:,} held; target >= 1,000: {ceiling / 1000:.1f}x; load {load()})"
        )
    if "moto" in parts:
        lines += moto_part(args)
    lines.append(f"load average at the end {load()} (2 cores)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
