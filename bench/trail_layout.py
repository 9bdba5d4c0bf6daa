"""Trail log files as CloudTrail writes an organisation trail to S3, from the demo's records:
``AWSLogs/<org>/<account>/CloudTrail/<region>/yyyy/mm/dd/<account>_CloudTrail_<region>_<time>_<id>.json.gz``,
each a gzipped ``{"Records": [...]}`` of one account-region and five minutes."""

from __future__ import annotations

import gzip
import hashlib
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import orjson

from collectors.demo import DemoSource

ORG = "o-exampleorg1"
FILE_SECONDS = 300


def trail_key(org: str, account: str, region: str, start: int, salt: str = "") -> str:
    moment = datetime.fromtimestamp(start, UTC)
    digest = hashlib.sha1(f"{account}{region}{start}{salt}".encode()).hexdigest()[:16]
    return (
        f"AWSLogs/{org}/{account}/CloudTrail/{region}/{moment:%Y/%m/%d}/"
        f"{account}_CloudTrail_{region}_{moment:%Y%m%dT%H%MZ}_{digest}.json.gz"
    )


def group_records(records, org: str = ORG) -> dict[str, list[dict]]:
    """Records by the key of the file CloudTrail would deliver them in."""
    files = defaultdict(list)
    for record in records:
        seconds = int(datetime.fromisoformat(record["eventTime"]).timestamp())
        account = record.get("recipientAccountId") or "111122223333"
        files[trail_key(org, account, record.get("awsRegion") or "us-east-1", seconds - seconds % FILE_SECONDS)].append(
            record
        )
    return files


def write_trail(root: Path, records, org: str = ORG) -> list[Path]:
    """Write ``records`` under ``root`` in the trail layout; returns the files written."""
    written = []
    for key, batch in sorted(group_records(records, org).items()):
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(orjson.dumps({"Records": batch}), compresslevel=1))
        written.append(path)
    return written


def demo_trail(root: Path, start: int, seconds: int, rate: float = 4.0, seed: int = 7) -> list[Path]:
    """``seconds`` of demo activity from ``start`` (incidents on) written as trail files."""
    return write_trail(root, DemoSource(seed=seed, rate=rate, prefill=0).records(start, start + seconds))
