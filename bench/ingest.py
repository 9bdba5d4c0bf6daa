"""Benchmark of batch ingest end to end against DuckDB; every ratio is measured in this run.

    python -m bench.ingest [--sizes 150000,1000000] [--parts cli,sources,memory] [--layouts lines,trail]
                           [--folder DIR] [--huge]

Generates demo records over one day (kept in ``--folder`` and reused by later runs) as JSON
Lines and as a folder of gzipped trail files in the S3 layout
(``AWSLogs/<account>/CloudTrail/<region>/yyyy/mm/dd/``, one file per account, region and five
minutes). For each size and layout it times ``python -m metrics`` against a DuckDB peer (its
``read_json``, the SQL of ``metrics/sql.py``, krcf scoring the same TotalCalls series on a
thread meanwhile, writing the same CSV), each in a fresh process whose peak RSS is printed,
and checks that both wrote the same bytes. Then records per second into an engine for the
files source and the S3 source (a moto server in its own process), and the buffer's resident
bytes per event (``bench.core``). ``--huge`` adds 5,000,000 events in the S3 layout (the CLI
only: peak RSS, target 2 GB).
"""

from __future__ import annotations

import argparse
import gzip
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import orjson

DAY = 86_400
START = 1_789_948_800  # a Monday, 00:00 UTC
FILE_SECONDS = 300  # CloudTrail delivers a file about every five minutes per account and region
MEAN_RHYTHM = 0.566  # the demo's daily rhythm averages this share of its peak rate


def generate(folder: Path, events: int) -> tuple[Path, Path]:
    """(JSON Lines file, trail folder) of about ``events`` demo records, made once."""
    from collectors.demo import DemoSource
    from collectors.s3 import trail_key

    lines_path, trail_dir = folder / f"records-{events}.jsonl", folder / f"trail-{events}"
    done = folder / f".done-{events}"
    if done.exists():
        return lines_path, trail_dir
    source = DemoSource(seed=11, rate=events / DAY / MEAN_RHYTHM * 1.02)
    written, hour = 0, 0
    with open(lines_path, "wb") as out:
        while written < events:
            records = source.records(START + hour * 3600, START + (hour + 1) * 3600)[: events - written]
            hour += 1
            files = defaultdict(list)
            for record in records:
                second = int(datetime.fromisoformat(record["eventTime"]).timestamp())
                files[(record["recipientAccountId"], record["awsRegion"], second // FILE_SECONDS)].append(record)
            out.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
            for (account, region, slot), group in files.items():
                path = trail_dir / trail_key(account, region, (slot + 1) * FILE_SECONDS, suffix=f"{slot:x}")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(gzip.compress(orjson.dumps({"Records": group}), compresslevel=6))
            written += len(records)
    done.touch()
    return lines_path, trail_dir


def run_measured(command: list[str], out: Path) -> tuple[float, int, str]:
    """(seconds, peak resident bytes, stderr) of a command in a fresh process."""
    with open(out, "wb") as stdout, tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        message = stderr.read().decode(errors="replace")
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{message}")
    return seconds, usage.ru_maxrss * 1024, message


# --- the DuckDB peer ---------------------------------------------------------------------------

_S = "VARCHAR"
_IDENTITY = (
    "STRUCT(type VARCHAR, userName VARCHAR, invokedBy VARCHAR, principalId VARCHAR, arn VARCHAR, "
    "accountId VARCHAR, sessionContext STRUCT(sessionIssuer STRUCT(userName VARCHAR)))"
)
_FIELDS = {
    "eventID": _S,
    "eventTime": _S,
    "eventSource": _S,
    "eventName": _S,
    "awsRegion": _S,
    "sourceIPAddress": _S,
    "userAgent": _S,
    "errorCode": _S,
    "errorMessage": _S,
    "readOnly": "BOOLEAN",
    "eventType": _S,
    "recipientAccountId": _S,
    "userIdentity": _IDENTITY,
}


def _normalised(source: str) -> str:
    """The normaliser's columns in SQL, over a relation ``r`` with the fields above."""
    issuer = "r.userIdentity.sessionContext.sessionIssuer.userName"
    kind = "r.userIdentity.type"
    assumed = f"{kind} IN ('AssumedRole', 'FederatedUser') AND coalesce({issuer}, '') <> ''"
    texts = ", ".join(
        f"nullif(r.{name}, '') AS {name}"
        for name in ("eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent", "errorCode")
    )
    return (
        f"SELECT r.eventID AS eventID, CAST(r.eventTime AS TIMESTAMPTZ) AS eventTime, {texts}, "
        f"CASE WHEN {kind} = 'Root' THEN 'root' WHEN {assumed} THEN {issuer} "
        "ELSE coalesce(nullif(r.userIdentity.userName, ''), nullif(r.userIdentity.invokedBy, ''), "
        "nullif(r.userIdentity.principalId, ''), 'unknown') END AS \"user\", "
        f"CASE WHEN {kind} <> 'Root' AND {assumed} AND contains(r.userIdentity.arn, '/') "
        "THEN nullif(regexp_extract(r.userIdentity.arn, '/([^/]*)$', 1), '') END AS session "
        f"FROM ({source}) WHERE coalesce(r.eventID, '') <> '' AND r.eventTime IS NOT NULL"
    )


def peer(path: str, out: str) -> None:
    """DuckDB's reading and SQL plus krcf on the same series, writing the same CSV."""
    import duckdb
    import pandas as pd

    from metrics.anomaly import AnomalyScorer, make_detector
    from metrics.pumps import PUMPS
    from metrics.sql import pump_sql

    connection = duckdb.connect()
    connection.execute("SET threads TO 2; SET TimeZone = 'UTC'")
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in _FIELDS.items()) + "}"
    if Path(path).is_dir():
        records = "{'Records': '" + "STRUCT(" + ", ".join(f'"{k}" {v}' for k, v in _FIELDS.items()) + ")[]'}"
        source = f"SELECT unnest(Records) AS r FROM read_json('{path}/**/*.json.gz', columns={records})"
    else:
        source = f"SELECT j AS r FROM read_json('{path}', format='newline_delimited', columns={columns}) AS j"
    connection.execute(f"CREATE TABLE events AS {_normalised(source)}")

    totals = dict(connection.execute(f"SELECT window_start, value FROM ({pump_sql(PUMPS[0])})").fetchall())
    step = PUMPS[0].step
    first, last = min(totals), max(totals)
    scores: dict[int, float] = {}

    def score():
        scorer = AnomalyScorer(make_detector("krcf", 0), step=step)
        scorer.advance(lambda w: totals.get(w, 0), first, last + step)
        scores.update(scorer.scores)

    scoring = threading.Thread(target=score)
    scoring.start()
    connection.execute("CREATE TABLE counts AS " + " UNION ALL ".join(f"SELECT * FROM ({pump_sql(p)})" for p in PUMPS))
    scoring.join()
    windows = list(range(first, last + 1, step))
    frame = pd.DataFrame({"window_start": windows, "value": [repr(round(scores[w], 6)) for w in windows]})
    connection.register("scores", frame)
    connection.execute(
        "COPY (SELECT metric, strftime(to_timestamp(window_start), '%Y-%m-%dT%H:%M:%SZ') AS window_start, "
        "nullif(category, '') AS category, nullif(subcategory, '') AS subcategory, value FROM ("
        "SELECT metric, window_start, category, subcategory, CAST(value AS VARCHAR) AS value FROM counts "
        "UNION ALL SELECT 'AnomalyScore', window_start, '', '', value FROM scores) "
        f"ORDER BY 1, 2, coalesce(category, ''), coalesce(subcategory, '')) TO '{out}' (HEADER, DELIMITER ',')"
    )


# --- sources -------------------------------------------------------------------------------------


def files_rate(trail_dir: Path) -> tuple[float, int, dict]:
    """Records per second from the files source into an engine, and the rejects by reason."""
    from collectors.files import FileSource
    from metrics.engine import Engine

    source, engine = FileSource(trail_dir, settle_seconds=0), Engine(retention_seconds=None)
    return _drain(source, engine, time.time())


def s3_rate(trail_dir: Path) -> tuple[float, int, dict]:
    """The same for the S3 source reading the trail from a moto server in its own process."""
    from collectors.s3 import S3TrailSource
    from metrics.engine import Engine

    client, server = moto_client(trail_dir)
    try:
        source = S3TrailSource(client, "trail", start=START, end=START + DAY, max_objects_per_poll=500)
        return _drain(source, Engine(retention_seconds=None), START + DAY + 3600)
    finally:
        server.terminate()
        server.wait()


def moto_client(trail_dir: Path):
    """(an S3 client of a moto server holding the trail in bucket "trail", the server process)."""
    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for _ in range(100):
            try:
                client.create_bucket(Bucket="trail")
                break
            except Exception:  # the server is still starting
                time.sleep(0.2)
        for file in sorted(trail_dir.rglob("*.json.gz")):
            client.put_object(Bucket="trail", Key=str(file.relative_to(trail_dir)), Body=file.read_bytes())
    except BaseException:
        server.terminate()
        raise
    return client, server


def _drain(source, engine, now: float) -> tuple[float, int, dict]:
    from metrics.normalise import Rejects
    from metrics.windows import NS_PER_SECOND

    rejects = Rejects()
    start = time.perf_counter()
    for _ in range(100_000):
        records = source.poll(now)
        engine.ingest(_normalise(records, rejects, source.name), now_ns=int(now * NS_PER_SECOND))
        if not records and source.watermark(now) is not None:
            break
    seconds = time.perf_counter() - start
    return len(engine.buffer) / seconds, len(engine.buffer), dict(rejects.summary())


def _normalise(records, rejects, origin):
    from metrics.normalise import normalise_all

    return normalise_all(records, rejects, origin=origin)


# --- the run ---------------------------------------------------------------------------------------


def compare(label: str, path: Path, folder: Path) -> None:
    ours_out, peer_out = folder / "ours.csv", folder / "peer.csv"
    ours, ours_rss, log = run_measured([sys.executable, "-m", "metrics", str(path)], ours_out)
    theirs, peer_rss, _ = run_measured(
        [sys.executable, "-m", "bench.ingest", "--peer", str(path), "--out", str(peer_out)], folder / "peer.log"
    )
    same = ours_out.read_bytes() == peer_out.read_bytes()
    events = log.split(" events")[0].split()[-1]
    print(
        f"{label:<26}{ours:>8.1f} s {ours_rss / 2**20:>7,.0f} MiB | DuckDB+krcf {theirs:>6.1f} s "
        f"{peer_rss / 2**20:>6,.0f} MiB | ours/DuckDB = {ours / theirs:.2f}x (target <= 1.0x) | "
        f"{int(events):,} events, same CSV: {'yes' if same else 'NO'}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="150000,1000000", help="comma-separated record counts")
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "bench-ingest"))
    parser.add_argument("--huge", action="store_true", help="also 5,000,000 events in the S3 layout (slow)")
    parser.add_argument("--parts", default="cli,sources,memory", help="which of cli,sources,memory to run")
    parser.add_argument("--layouts", default="lines,trail", help="the CLI's inputs: lines (JSON Lines), trail (gz)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer(args.peer, args.out)
        return

    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores", flush=True)
    generated = {}
    for size in sizes:
        generated[size] = generate(folder, size)
        print(f"{size:,} records ready in {folder}", flush=True)
    parts = set(args.parts.split(","))
    for size, (lines, trail) in generated.items() if "cli" in parts else ():
        layouts = args.layouts.split(",")
        if "lines" in layouts:
            compare(f"{size:,} JSON Lines", lines, folder)
        if "trail" in layouts:
            compare(f"{size:,} gz trail folder", trail, folder)

    smallest = generated[sizes[0]][1]
    for name, measure in (("files source", files_rate), ("S3 source (moto)", s3_rate)) if "sources" in parts else ():
        rate, events, rejects = measure(smallest)
        print(
            f"{name:<26}{rate:>10,.0f} records/s into the engine ({events:,} events; target >= 200,000/s); "
            f"rejects {rejects or 'none'}",
            flush=True,
        )

    if "memory" in parts:
        lines = generated[sizes[-1]][0]
        child = subprocess.run(
            [sys.executable, "-m", "bench.core", "--memory-of", str(lines)], capture_output=True, text=True, check=True
        )
        memory = float(child.stdout.split()[-1])
        print(
            f"{'buffer memory per event':<26}{memory:>10,.0f} B with drill-down data, {sizes[-1]:,} events "
            "(target <= 250 B)",
            flush=True,
        )

    if args.huge:
        _, trail = generate(folder, 5_000_000)
        seconds, rss, _ = run_measured([sys.executable, "-m", "metrics", str(trail)], folder / "huge.csv")
        print(f"{'5,000,000 gz trail folder':<26}{seconds:>8.1f} s, peak RSS {rss / 2**30:.2f} GiB (target <= 2 GB)")
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
