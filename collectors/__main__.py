"""``python -m collectors cloudtrail|eventbridge``: collect CloudTrail records into JSON Lines.

``eventbridge`` drains an EventBridge SQS queue: each eventID written once, and a message is
deleted only after what it carried is written and flushed to disk; with ``--idle-exit`` it
ends once the queue has stayed empty that long. Its endpoint follows ``AWS_ENDPOINT_URL_SQS``.

The same pollers as the app (rate limit, retries, overlap), without checkpoints. Without
``--follow`` it reads [start, end) in full; with it, it reads from start and then polls live
for that many seconds. Each eventID is written once. Endpoints follow botocore's standard
``AWS_ENDPOINT_URL_CLOUDTRAIL`` / ``AWS_ENDPOINT_URL_EC2`` / ``AWS_ENDPOINT_URL_STS``.
Progress goes to stderr. Exit status 2 when it cannot start (no credentials, an unreachable
endpoint, a malformed role ARN), with a one-line reason; 1 if a region kept failing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from collectors import athena, cloudtrail
from metrics.normalise import Unreadable, parse_event_time

GIVE_UP_AFTER = 5  # consecutive failures of one account-region before the command reports it missing


def _instant(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _regions(text: str) -> tuple[str, ...]:
    return tuple(r.strip() for r in text.split(",") if r.strip())


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m collectors", description="Collect CloudTrail records into JSON Lines and exit."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    trail = commands.add_parser("cloudtrail", help="read LookupEvents into JSON Lines")
    trail.add_argument("--regions", type=_regions, default=(), help="comma-separated; default: every enabled region")
    trail.add_argument("--start", type=_instant, help="ISO 8601, UTC unless it says otherwise; default: 1 hour ago")
    trail.add_argument("--end", type=_instant, help="ISO 8601 (exclusive); default: now")
    trail.add_argument("--follow", type=float, metavar="SECONDS", help="then poll live for this long")
    trail.add_argument("--overlap", type=float, default=cloudtrail.OVERLAP_SECONDS, metavar="SECONDS")
    trail.add_argument("--poll", type=float, default=10.0, metavar="SECONDS", help="between live polls (default 10)")
    trail.add_argument("--role-arn", action="append", default=[], help="a role to assume (arn or arn|external-id)")
    trail.add_argument("--out", required=True, help="the JSON Lines file to write")
    bridge = commands.add_parser("eventbridge", help="drain an EventBridge SQS queue into JSON Lines")
    bridge.add_argument("--queue-url", required=True, help="the SQS queue the EventBridge rules deliver to")
    bridge.add_argument("--out", required=True, help="the JSON Lines file to write")
    bridge.add_argument("--idle-exit", type=float, metavar="SECONDS", help="end once the queue stayed empty this long")
    bridge.add_argument("--receivers", type=int, default=4, help="receives in flight while the queue is deep")
    ddl = commands.add_parser("athena-ddl", help="print the Athena table over a trail (partition projection)")
    ddl.add_argument("--bucket", required=True, help="the trail's bucket")
    ddl.add_argument("--prefix", default="", help="the key prefix before AWSLogs/, if any")
    ddl.add_argument("--org", default="", help="the organisation id (o-...) of an organisation trail")
    ddl.add_argument("--accounts", type=_regions, default=(), help="comma-separated account ids")
    ddl.add_argument("--regions", type=_regions, default=(), help="comma-separated; default: injected in queries")
    ddl.add_argument("--database", default="default")
    ddl.add_argument("--table", default="cloudtrail_records")
    return parser


def athena_ddl(args: argparse.Namespace, out=None) -> int:
    try:
        text = athena.table_ddl(
            args.bucket,
            database=args.database,
            table=args.table,
            org=args.org,
            accounts=args.accounts,
            regions=args.regions,
            prefix=args.prefix,
        )
    except ValueError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    (out or sys.stdout).write(text + ";\n")
    return 0


def drain(args: argparse.Namespace, err=sys.stderr) -> int:
    from collectors import eventbridge

    wait = eventbridge.WAIT_SECONDS if args.idle_exit is None else int(max(1, min(20, args.idle_exit)))
    client = eventbridge.make_client(args.queue_url, receivers=args.receivers)
    source = eventbridge.SqsSource(client, args.queue_url, receivers=args.receivers, lookback=0, wait_seconds=wait)
    seen: set[str] = set()
    counts = {"written": 0, "bad": 0}
    started = reported = time.time()

    def write(out) -> int:
        records = source.poll(time.time())
        for record in records:
            event_id = record.get("eventID") if isinstance(record, dict) else None
            if not isinstance(event_id, str):
                counts["bad"] += 1
            elif event_id not in seen:
                seen.add(event_id)
                out.write(orjson.dumps(record) + b"\n")
                counts["written"] += 1
        out.flush()
        os.fsync(out.fileno())
        source.acknowledge(source.ingested())  # on disk: only now may the queue forget them
        return len(records)

    try:
        with open(args.out, "wb") as out:
            while True:
                write(out)
                moment = time.time()
                quiet = moment - max(started, source.last_message_at or started)
                if args.idle_exit is not None and quiet >= args.idle_exit and not source.waiting():
                    if source.stop_receiving():  # what the receives in flight bring is still written
                        err.write("a receive was still in flight: its messages reappear after the visibility timeout\n")
                    while write(out) or source.waiting():
                        pass
                    break
                if moment - reported >= 5:
                    reported = moment
                    err.write(f"{counts['written']:,} events · {source.counts['received']:,} messages received\n")
    except KeyboardInterrupt:
        pass
    except Exception as error:
        err.write(f"the queue could not be read: {cloudtrail.describe(error)}\n")
        return 1
    finally:
        source.close()
    bad = counts["bad"]
    err.write(
        f"wrote {counts['written']:,} events to {args.out}; {source.counts['deleted']:,} messages deleted"
        + (f"; {bad} messages that were not CloudTrail events skipped and deleted" if bad else "")
        + "\n"
    )
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def collect(args: argparse.Namespace, clock=time.time, err=sys.stderr) -> int:
    now = clock()
    end = args.end if args.end is not None else now
    start = args.start if args.start is not None else end - 3600
    if args.follow is not None and args.end is not None:
        err.write("--follow reads up to now and beyond: leave out --end\n")
        return 2
    if start >= end or now - start > cloudtrail.MAX_LOOKBACK_SECONDS:
        err.write("--start must be before --end and within the last 90 days\n")
        return 2
    try:
        sessions = cloudtrail.sessions_for(",".join(args.role_arn))
        pollers = cloudtrail.build_pollers(sessions, regions=args.regions, overlap=args.overlap, clock=clock)
    except (BotoCoreError, ClientError, ValueError) as error:
        # No credentials, an unreachable endpoint, a malformed or refused role: nothing to poll.
        err.write(f"python -m collectors cloudtrail: cannot start: {_one_line(error)}\n")
        return 2
    for poller in pollers:
        poller.checkpoint = cloudtrail.Checkpoint(backfill_start=start, backfill_end=end, live_until=end)
    source = cloudtrail.CloudTrailSource(pollers, clock=clock)
    seen: set[str] = set()
    given_up: list = []
    written = bad = 0
    stop_at = None if args.follow is None else now + args.follow
    with open(args.out, "wb") as out:
        while True:
            moment = clock()
            records = source.poll(min(moment, end) if args.follow is None else moment)
            for record in records:
                if isinstance(record, Unreadable) or not isinstance(record, dict):
                    bad += 1
                    continue
                event_id = record.get("eventID")
                try:
                    when = parse_event_time(record.get("eventTime")) / 1e9
                except (TypeError, ValueError):
                    bad += 1
                    continue
                if not isinstance(event_id, str) or event_id in seen or when < start:
                    continue
                if args.follow is None and when >= end:
                    continue
                seen.add(event_id)
                out.write(orjson.dumps(record) + b"\n")
                written += 1
            out.flush()
            health = source.region_health()
            calls = sum(h["api_calls"] for h in health)
            degraded = [f"{h['account']}/{h['region']}: {h['reason']}" for h in health if h["state"] == "degraded"]
            err.write(
                f"backfill {source.progress():.0%} · {written:,} events · {calls:,} API calls"
                + (f" · degraded {'; '.join(degraded)}" if degraded else "")
                + "\n"
            )
            for poller in pollers:
                if poller.failures >= GIVE_UP_AFTER and poller not in given_up:
                    given_up.append(poller)
                    poller.retry_at = float("inf")
            active = [p for p in pollers if p not in given_up]
            backfilled = all(p.checkpoint.backfill_complete for p in active)
            healthy = all(p.health.state != "degraded" for p in active)
            if not active or (args.follow is None and backfilled and healthy):
                break
            if stop_at is not None and clock() >= stop_at and backfilled:
                break
            time.sleep(args.poll if backfilled and healthy else 1.0)
    source.close()
    err.write(f"wrote {written:,} events to {args.out}" + (f"; {bad} unreadable records skipped" if bad else "") + "\n")
    if given_up:
        missing = ", ".join(f"{p.key} ({p.health.reason})" for p in given_up)
        err.write(f"incomplete: gave up on {missing}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "athena-ddl":
        return athena_ddl(args)
    return drain(args) if args.command == "eventbridge" else collect(args)


if __name__ == "__main__":
    sys.exit(main())
