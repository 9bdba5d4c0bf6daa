"""Per-rule hits of the detection table on the Stratus Red Team files and on a benign demo day,
and what the detections cost beside the ingest.

    python -m bench.detections
    python -m bench.detections --events 200000 [--folder DIR]

Prints the number of separate hits on ``tests/data/stratus-red-team/`` and per rule, then the
hits per rule on the demo's 2026-01-05 with its incidents off (seed 7, 2 events/s at peak):
the false-positive figures of the README, measured in one run.

With ``--events``: the JSON Lines of ``bench.ingest`` (made once in ``--folder``) read as a
large poll is (columnar normalising, engine ingest), then the rule table over that batch from
its columns (``Detector.observe_batch``, what the collector runs) and over each raw record
parsed into a dict (``Detector.observe``, what it ran before), in records per CPU-second with
their ratios, and whether both found the same hits.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson

from collectors.demo import DemoSource
from metrics.detections import RULES_BY_ID, Detector, false_positives
from metrics.detections.__main__ import read
from metrics.normalise import Rejects

STRATUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "stratus-red-team")
BENIGN_DAY = datetime(2026, 1, 5, tzinfo=UTC)


def stratus_hits() -> Counter:
    records, _ = read([STRATUS], Rejects())
    detector = Detector(max_hits=10**9)
    detector.observe(records)
    return Counter(hit.rule_id for hit in detector.hits())


def benign_hits() -> dict[str, int]:
    day = int(BENIGN_DAY.timestamp())
    return false_positives(DemoSource(seed=7, rate=2, incidents=False).records(day, day + 86_400))


def _severity(rule_id: str) -> str:
    rule = RULES_BY_ID.get(rule_id)
    return rule.severity if rule else "?"


def cost(events: int, folder: str) -> None:
    from bench.ingest import generate
    from metrics.columnar import normalise_lines
    from metrics.engine import Engine

    lines_path, _ = generate(Path(folder), events)
    lines = [line for line in lines_path.read_bytes().splitlines() if line.strip()]
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores", flush=True)
    started = time.process_time()
    batch = normalise_lines(lines, Rejects())
    result = Engine(retention_seconds=None).ingest(batch)
    ingest = time.process_time() - started
    started = time.process_time()
    by_columns = Detector()
    by_columns.observe_batch(batch, result.positions)
    columns = time.process_time() - started
    started = time.process_time()
    by_records = Detector()
    by_records.observe([orjson.loads(raw) for raw in batch.raws])
    records = time.process_time() - started
    n = len(batch)
    print(f"{n} events of {lines_path.name}:")
    print(f"  normalise + ingest (columnar)      {n / ingest:>9,.0f} records/CPU-s")
    print(f"  detections over the columns        {n / columns:>9,.0f} records/CPU-s")
    print(f"  detections over parsed records     {n / records:>9,.0f} records/CPU-s")
    print(
        f"  columns / parsed records: {records / columns:.2f}x faster;"
        f" detections over the columns cost {columns / ingest:.2f}x the ingest"
    )
    same = by_columns.hits() == by_records.hits() and by_columns.errors == by_records.errors
    print(f"  same hits: {same} ({len(by_columns.hits())} hits)")
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=0, help="measure the cost on this many generated events")
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "bench-ingest"))
    args = parser.parse_args()
    if args.events:
        Path(args.folder).mkdir(parents=True, exist_ok=True)
        cost(args.events, args.folder)
        return
    started = time.perf_counter()
    stratus = stratus_hits()
    print(f"Stratus Red Team files: {sum(stratus.values())} separate hits, {len(stratus)} rules fired")
    for rule_id, count in sorted(stratus.items()):
        print(f"  {rule_id:45} {_severity(rule_id):8} {count}")
    benign = {rule_id: n for rule_id, n in benign_hits().items() if n}
    print(f"Benign demo day {BENIGN_DAY:%Y-%m-%d} (seed 7, rate 2, incidents off): {sum(benign.values())} hits")
    for rule_id, count in sorted(benign.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {rule_id:45} {_severity(rule_id):8} {count}")
    print(f"took {time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
