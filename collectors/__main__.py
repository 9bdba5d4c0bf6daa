"""``python -m collectors cloudtrail``: collect CloudTrail records into JSON Lines and exit.

The same pollers as the app (rate limit, retries, overlap), without checkpoints. Without
``--follow`` it reads [start, end) in full; with it, it reads from start and then polls live
for that many seconds. Each eventID is written once. Endpoints follow botocore's standard
``AWS_ENDPOINT_URL_CLOUDTRAIL`` / ``AWS_ENDPOINT_URL_EC2`` / ``AWS_ENDPOINT_URL_STS``.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

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
    parser = argparse.ArgumentParser(prog="python -m collectors", description=__doc__.splitlines()[0])
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
    sessions = cloudtrail.sessions_for(",".join(args.role_arn))
    pollers = cloudtrail.build_pollers(sessions, regions=args.regions, overlap=args.overlap, clock=clock)
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
    return collect(args)


if __name__ == "__main__":
    sys.exit(main())
