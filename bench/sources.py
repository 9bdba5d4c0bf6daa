"""Records per second from the files source and the S3 source into the engine, through the
collector's own poll (read, normalise, ingest, learn), with and without the rule detections.

    python -m bench.sources [--events 150000] [--folder DIR] [--skip-s3]

First, DuckDB (the in-process anchor) reading the same inputs into a table of the normaliser's
columns, for scale: the rate an engine built for this reaches on the same machine.

Uses the demo data of ``bench.ingest`` (made once in ``--folder``): the gzipped trail files in
the S3 layout for both sources, served to the S3 source by a moto server in its own process,
and the JSON Lines file for the files source as well. Each measurement is a fresh engine and
collector; the rejects are printed by reason. "Detections" is the app's rule table behind
``collectors.analyses.Detections``; "detections (parsed)" hands it each raw record parsed
with orjson, what a detector that reads only dicts costs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import tempfile
import time
import zlib
from pathlib import Path

import orjson

import collectors.collector as collector_module
from bench.ingest import _FIELDS, DAY, START, _normalised, generate, moto_client
from collectors.analyses import Detections
from collectors.collector import Collector
from collectors.files import FileSource
from metrics.detections.engine import Detector
from metrics.detections.rules import rules
from metrics.engine import Engine
from metrics.triage import Triage


class _Parsed:
    """Hands an analysis parsed records whatever the collector hands over."""

    def __init__(self, analysis):
        self.analysis = analysis

    def observe(self, records, columns) -> None:
        self.analysis.observe([orjson.loads(r) if isinstance(r, bytes) else r for r in records], columns)

    def advance(self, watermark_s: int) -> None:
        self.analysis.advance(watermark_s)


def _analyses(kind: str, folder: Path) -> list:
    if kind == "none":
        return []
    detections = Detections(Detector(rules()), Triage(str(folder / "triage.json")))
    return [detections] if kind == "detections" else [_Parsed(detections)]


def drain(source, now: float, analyses: list) -> tuple[float, Collector]:
    """Seconds to poll ``source`` dry through a collector into a fresh engine."""
    collector = Collector(source, Engine(retention_seconds=None), analyses=analyses, retain_from_newest=True)
    engine, learning = collector.engine, [0.0]
    advance = engine.advance

    def timed_advance(*args, **kwargs):
        began = time.perf_counter()
        try:
            return advance(*args, **kwargs)
        finally:
            learning[0] += time.perf_counter() - began

    engine.advance = timed_advance
    collector.learning = learning
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(100_000):
        before = collector.health.events + collector.health.duplicates + collector.health.rejects.total
        collector.poll_once(now)
        after = collector.health.events + collector.health.duplicates + collector.health.rejects.total
        if after == before and not collector.more and source.watermark(now) is not None:
            break
    collector.cpu_seconds = time.process_time() - cpu
    return time.perf_counter() - start, collector


def report(label: str, seconds: float, collector: Collector) -> None:
    events = len(collector.engine.buffer)
    rejects = dict(collector.health.rejects.summary())
    errors = f"; analysis errors {collector.analysis_errors}" if collector.analysis_errors else ""
    learned = collector.learning[0]
    print(
        f"{label:<58}{events / seconds:>8,.0f} records/s ({events:,} events in {seconds:.2f} s, "
        f"{collector.cpu_seconds:.2f} s CPU: {events / collector.cpu_seconds:,.0f}/s of CPU; forest learning "
        f"{learned:.2f} s of it; target >= 200,000/s); rejects {rejects or 'none'}{errors}",
        flush=True,
    )


def gunzip_times(trail_dir: Path) -> tuple[float, float]:
    """CPU seconds to inflate every file of the trail folder with zlib and with isal."""
    from isal import igzip

    datas = [file.read_bytes() for file in sorted(trail_dir.rglob("*.json.gz"))]
    began = time.process_time()
    for data in datas:
        zlib.decompress(data, wbits=31)
    middle = time.process_time()
    for data in datas:
        igzip.decompress(data)
    return middle - began, time.process_time() - middle


def duckdb_rate(path: Path) -> tuple[float, float, int]:
    """(seconds, CPU seconds, rows) for DuckDB, the in-process anchor, to read ``path`` (a JSON
    Lines file or a trail folder) into a table of the normaliser's columns: ``bench.ingest``'s
    peer without the counting, with no raw record kept for drill-down (the engine keeps one)."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET threads TO 2; SET TimeZone = 'UTC'")
    if path.is_dir():
        records = "{'Records': '" + "STRUCT(" + ", ".join(f'"{k}" {v}' for k, v in _FIELDS.items()) + ")[]'}"
        source = f"SELECT unnest(Records) AS r FROM read_json('{path}/**/*.json.gz', columns={records})"
    else:
        columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in _FIELDS.items()) + "}"
        source = f"SELECT j AS r FROM read_json('{path}', format='newline_delimited', columns={columns}) AS j"
    start, cpu = time.perf_counter(), time.process_time()
    connection.execute(f"CREATE TABLE events AS {_normalised(source)}")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    rows = connection.execute("SELECT count(*) FROM events").fetchone()[0]
    connection.close()
    return seconds, cpu_seconds, rows


@contextlib.contextmanager
def _path(path: str):
    """The collector's normalising as it is ("columnar": a large poll at once) or record by
    record whatever the poll's size ("per-record", what every poll did before)."""
    if path == "columnar":
        yield
        return
    original = collector_module.normalise_documents
    collector_module.normalise_documents = functools.partial(original, fast_bytes=math.inf)
    try:
        yield
    finally:
        collector_module.normalise_documents = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "bench-ingest"))
    parser.add_argument("--kinds", default="none,detections,parsed", help="analyses: none,detections,parsed")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--paths", default="columnar,per-record", help="columnar (large polls at once), per-record")
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores", flush=True)
    lines, trail = generate(folder, args.events)
    with_zlib, with_isal = gunzip_times(trail)
    print(
        f"{'gunzip of the trail folder':<58}zlib {with_zlib:.2f} s CPU, isal {with_isal:.2f} s CPU: "
        f"isal/zlib = {with_isal / with_zlib:.2f}x",
        flush=True,
    )
    for label, path in (("gz trail folder", trail), ("JSON Lines", lines)):
        seconds, cpu_seconds, rows = duckdb_rate(path)
        print(
            f"{'DuckDB read_json into a table, ' + label:<58}{rows / seconds:>8,.0f} records/s ({rows:,} rows in "
            f"{seconds:.2f} s, {cpu_seconds:.2f} s CPU: {rows / cpu_seconds:,.0f}/s of CPU; the anchor, no raw "
            "records kept)",
            flush=True,
        )
    runs = [(kind, path) for path in args.paths.split(",") for kind in args.kinds.split(",")]
    names = {"none": "", "detections": ", detections", "parsed": ", detections (parsed)"}
    for kind, path in runs:
        with _path(path):
            seconds, collector = drain(FileSource(trail, settle_seconds=0), time.time(), _analyses(kind, folder))
            report(f"files source, gz trail folder, {path}{names[kind]}", seconds, collector)
            seconds, collector = drain(FileSource(lines, settle_seconds=0), time.time(), _analyses(kind, folder))
            report(f"files source, JSON Lines, {path}{names[kind]}", seconds, collector)
    if not args.skip_s3:
        from collectors.s3 import S3TrailSource

        client, server = moto_client(trail)
        try:
            for kind, path in runs:
                with _path(path):
                    source = S3TrailSource(client, "trail", start=START, end=START + DAY, max_objects_per_poll=500)
                    seconds, collector = drain(source, START + DAY + 3600, _analyses(kind, folder))
                    report(f"S3 source (moto), {path}{names[kind]}", seconds, collector)
        finally:
            server.terminate()
            server.wait()
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)", flush=True)


if __name__ == "__main__":
    main()
