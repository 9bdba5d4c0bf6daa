"""Benchmark of the EventBridge source: events per second drained and ingested from a deep
queue, and the freshness with a producer at a steady rate; every figure from this run.

    python -m bench.eventbridge [--events 3000] [--receivers 4] [--rate 50] [--seconds 30]

moto's SQS server runs as a separate process on 127.0.0.1 (``moto_server``), reached through
real botocore. moto's queue scans every message on each receive and delete, so a deep queue
is slow in moto itself: the same drain by a bare boto3 loop (receive 10, delete them, with as
many threads) is measured beside ours, and so is our source fed by an instant in-memory queue,
which is the ceiling of the source, normaliser and engine on this machine.
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


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server, url
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("moto_server did not start")


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


def bare_drain(client, url: str, count: int, threads: int) -> float:
    """The same drain with nothing but boto3: receive 10, delete them; events per second."""
    done = [0]
    lock = threading.Lock()
    started = time.perf_counter()

    def work() -> None:
        while True:
            with lock:
                if done[0] >= count:
                    return
            got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if got:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
                client.delete_message_batch(QueueUrl=url, Entries=entries)
                with lock:
                    done[0] += len(got)

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work) for _ in range(threads)]:
            future.result()
    return count / (time.perf_counter() - started)


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


def freshness(client, url: str, rate: float, seconds: float, receivers: int) -> tuple[dict, int]:
    """A producer puts ``rate`` events a second for ``seconds``, each stamped with the time it
    is sent; the collector runs in its thread. Returns the freshness of every region together."""
    engine = Engine(retention_seconds=None)
    source = eventbridge.SqsSource(client, url, receivers=receivers, lookback=0)
    collector = Collector(source, engine).start()
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            batch = min(10, due - sent)
            now = time.time()
            entries = [{"Id": str(i), "MessageBody": body(sent + i, now, "steady")} for i in range(batch)]
            client.send_message_batch(QueueUrl=url, Entries=entries)
            sent += batch
        time.sleep(0.02)
    deadline = time.monotonic() + 30
    while len(engine.buffer) < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    collector.stop()
    source.close()
    overall = source.freshness.summary(time.time())[-1]
    return overall, sent


def step(what: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {what}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events in the deep queue")
    parser.add_argument("--receivers", type=int, default=eventbridge.RECEIVERS)
    parser.add_argument("--rate", type=float, default=50.0, help="producer events per second, freshness run")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the freshness run")
    args = parser.parse_args()
    load_before = os.getloadavg()
    server, endpoint = start_moto()
    try:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCH")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "x")
        os.environ["AWS_ENDPOINT_URL_SQS"] = endpoint
        client = eventbridge.make_client(f"{endpoint}/123456789012/q", receivers=args.receivers)
        bare_url = client.create_queue(QueueName="bare", Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
        ours_url = client.create_queue(QueueName="ours", Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
        steady_url = client.create_queue(QueueName="steady", Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
        step("filling two queues")
        fill_bare = fill(client, bare_url, args.events, "bare")
        fill_ours = fill(client, ours_url, args.events, "ours")
        step("bare drain")
        bare = bare_drain(client, bare_url, args.events, args.receivers)
        step("our drain")
        ours, held = our_drain(client, ours_url, args.events, args.receivers)
        step("our drain of an instant queue")
        ceiling, ceiling_held = our_drain(InstantQueue(args.events * 10), "instant", args.events * 10, args.receivers)
        step("freshness")
        overall, sent = freshness(client, steady_url, args.rate, args.seconds, args.receivers)
    finally:
        server.terminate()
        server.wait(10)
    print(f"deep queue of {args.events:,} events in moto (filled in {fill_bare:.1f} s and {fill_ours:.1f} s)")
    print(f"  bare boto3 receive+delete, {args.receivers} threads: {bare:,.0f} events/s")
    print(f"  ours (receive, parse, ingest, delete), {args.receivers} receivers: {ours:,.0f} events/s, {held:,} held")
    print(f"  ours/bare: {ours / bare:.2f}x")
    print(
        f"source ceiling, instant in-memory queue, {args.events * 10:,} events: {ceiling:,.0f} events/s "
        f"({ceiling_held:,} held; target >= 1,000: {ceiling / 1000:.1f}x)"
    )
    target = 2 + REFRESH_SECONDS
    print(
        f"freshness, producer at {args.rate:g} events/s for {args.seconds:g} s ({sent:,} sent, {overall['events']:,} "
        f"measured): median {overall['p50']:.2f} s, p95 {overall['p95']:.2f} s (target 2 s: {overall['p95'] / 2:.2f}x; "
        f"with the {REFRESH_SECONDS} s chart refresh {target} s); eventTime has whole seconds, up to 1 s of it"
    )
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (2 cores)")


if __name__ == "__main__":
    main()
