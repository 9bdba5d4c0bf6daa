"""Rule detections over CloudTrail records read from files.

    python -m metrics.detections PATH [PATH ...] [--format csv|json] [--sigma DIR]

One row per (hit, linked event): rule, severity, event_id, event_time, event_name, user,
source_ip, failed (that event's), summary (the hit's), sorted by event_time then rule.
First-seen rules learn from the files as a history. Records that cannot be read are counted
on stderr with their reasons. ``--sigma DIR`` adds the Sigma rules of a folder (their rule
column is ``sigma:<id>``); the files refused are listed on stderr with their reasons. A file that cannot be
opened is named there, and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime

import orjson

from metrics.detections.engine import Detector
from metrics.detections.model import Hit
from metrics.detections.record import is_failed, user_of
from metrics.detections.rules import RULES
from metrics.detections.sigma import load_folder
from metrics.normalise import RejectedRecord, Rejects, Unreadable, normalise
from metrics.records import add_paths_argument, iter_paths

UNREADABLE_FILE = "unreadable file: "  # the reason metrics.records gives a file it cannot open
COLUMNS = ("rule", "severity", "event_id", "event_time", "event_name", "user", "source_ip", "failed", "summary")


def read(paths, rejects: Rejects, unreadable: list[str] | None = None) -> tuple[list[dict], int]:
    """The records of every path that the normaliser accepts, and how many files were read.
    A file that cannot be opened (a missing path) is no rejected record: it goes to
    ``unreadable`` as 'path (why)'."""
    records, origins = [], set()
    for origin, record in iter_paths(paths):
        if isinstance(record, Unreadable) and record.reason.startswith(UNREADABLE_FILE):
            if unreadable is not None:
                unreadable.append(f"{record.origin or origin} ({record.reason.removeprefix(UNREADABLE_FILE)})")
            continue
        origins.add(origin)
        if isinstance(record, Unreadable):
            rejects.add(record.reason, record.origin or origin, record.sample)
            continue
        try:
            normalise(record)
        except RejectedRecord as rejected:
            rejects.add(rejected.reason, origin, record)
            continue
        records.append(record)
    return records, len(origins)


def rows(hits: list[Hit], records: list[dict]) -> list[dict]:
    by_id = {r["eventID"]: r for r in records}
    out = []
    for hit in hits:
        for event_id in hit.event_ids:
            record = by_id[event_id]
            out.append(
                {
                    "rule": hit.rule_id,
                    "severity": hit.severity,
                    "event_id": event_id,
                    "event_time": _time(record["eventTime"]),
                    "event_name": record.get("eventName") or "",
                    "user": user_of(record),
                    "source_ip": record.get("sourceIPAddress") or "",
                    "failed": is_failed(record),
                    "summary": hit.summary,
                }
            )
    out.sort(key=lambda row: (row["event_time"], row["rule"], row["event_id"]))
    return out


def _time(value: str) -> str:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics.detections", description=__doc__.split("\n\n")[0])
    add_paths_argument(parser)
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.add_argument("--sigma", metavar="DIR", default="", help="also run the Sigma rules (.yml) of this folder")
    args = parser.parse_args(argv)

    sigma = load_folder(args.sigma)
    if args.sigma:
        print(f"loaded {len(sigma.rules)} Sigma rule(s) from {args.sigma}", file=sys.stderr)
    for path, reason in sigma.refused:
        print(f"  refused {path}: {reason}", file=sys.stderr)
    rejects = Rejects()
    unreadable = []
    records, files = read(args.paths, rejects, unreadable)
    detector = Detector((*RULES, *sigma.rules), max_hits=10**9)
    detector.observe(records)
    hits = detector.hits()

    print(f"read {len(records)} records from {files} file(s); {len(hits)} hit(s)", file=sys.stderr)
    if unreadable:
        print(f"could not read {len(unreadable)} file(s): {'; '.join(unreadable)}", file=sys.stderr)
    if rejects.total:
        print(f"rejected {rejects.total} record(s):", file=sys.stderr)
        for reason, count in rejects.summary():
            print(f"  {count:>8}  {reason}", file=sys.stderr)

    output = rows(hits, records)
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(output) + b"\n")
    else:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "failed": "true" if row["failed"] else "false"} for row in output)
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
