"""Benchmark of the core engine on generated data; every ratio is measured in this run.

    python -m bench.core [--events 1000000] [--batch 1000]

Prints: the pumps' full recompute against DuckDB running the same SQL over the same frame,
one incremental batch into the full buffer against that recompute, normalising speed, buffer
memory per event, and Random Cut Forest points per second for each engine.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import subprocess
import sys
import tempfile
import time

import duckdb
import numpy as np
import orjson

from collectors.demo import DemoSource
from metrics.anomaly import ENGINES, make_detector
from metrics.buffer import EventColumns
from metrics.engine import Engine
from metrics.normalise import Rejects, normalise_all
from metrics.pumps import PUMPS, compute_all
from metrics.sql import pump_sql

DAY = 86_400
# The demo's daily rhythm averages this share of its peak rate.
MEAN_RHYTHM = 0.566


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def best_of(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def generate_lines(events: int, start: int) -> list[bytes]:
    """About ``events`` records over one day (more if needed), as JSON lines."""
    source = DemoSource(seed=11, rate=events / DAY / MEAN_RHYTHM * 1.02)
    lines: list[bytes] = []
    hour = 0
    while len(lines) < events:
        lines.extend(orjson.dumps(r) for r in source.records(start + hour * 3600, start + (hour + 1) * 3600))
        hour += 1
    return lines


def normalise_lines(lines: list[bytes]):
    rejects = Rejects()
    batch = normalise_all((orjson.loads(line) for line in lines), rejects)
    assert not rejects.total, rejects.summary()
    return batch


def memory_per_event(path: str, batch: int = 1_000) -> float:
    """Resident bytes per event of an engine filled from a JSON Lines file."""
    gc.collect()
    before = rss_bytes()
    engine = Engine(retention_seconds=None)
    with open(path, "rb") as file:
        while lines := list(itertools.islice(file, batch)):
            engine.ingest(normalise_lines(lines))
    gc.collect()
    return (rss_bytes() - before) / len(engine.buffer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=50, help="incremental batches to average")
    parser.add_argument("--rcf-points", type=int, default=3000)
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        print(memory_per_event(args.memory_of))
        return

    start = 1_789_948_800  # a Monday, 00:00 UTC
    print(f"generating {args.events:,} events plus {args.batches} batches of {args.batch:,} ...", flush=True)
    lines = generate_lines(args.events + args.batch * args.batches, start)
    base_lines, extra_lines = lines[: args.events], lines[args.events : args.events + args.batch * args.batches]
    del lines
    gc.collect()

    # Normalising raw JSON, one core.
    sample = base_lines[:100_000]
    seconds = best_of(3, lambda: normalise_lines(sample))
    normalise_rate = len(sample) / seconds

    # Buffer memory: resident growth of a fresh process that reads the events from a file
    # in the collector's batch sizes, so nothing else this benchmark holds is counted.
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as file:
        file.write(b"\n".join(base_lines))
        file.flush()
        child = subprocess.run(
            [sys.executable, "-m", "bench.core", "--memory-of", file.name], capture_output=True, text=True, check=True
        )
    memory = float(child.stdout.split()[-1])

    engine = Engine(retention_seconds=None)
    for part in range(0, len(base_lines), 100_000):
        engine.ingest(normalise_lines(base_lines[part : part + 100_000]))
    del base_lines
    gc.collect()

    # Full recompute over the same frame: ours and DuckDB's.
    frame = engine.buffer.snapshot().frame()
    columns = EventColumns.from_frame(frame)
    ours = best_of(3, lambda: compute_all(columns))
    connection = duckdb.connect()
    connection.execute("SET threads TO 2")
    connection.register("events", frame)
    queries = [pump_sql(p) for p in PUMPS]
    theirs = best_of(3, lambda: [connection.execute(q).fetchnumpy() for q in queries])
    check_same(compute_all(columns), connection, queries)

    n = len(engine.buffer)

    # Incremental: new batches into the full buffer, every metric updated.
    batches = [normalise_lines(extra_lines[i : i + args.batch]) for i in range(0, len(extra_lines), args.batch)]
    now = int(frame["eventTime"].iloc[-1].value)
    engine.advance(now)  # the forest learns the day once, as a live engine would have
    timings = []
    for batch in batches:
        t0 = time.perf_counter()
        engine.ingest(batch, now_ns=now)
        engine.advance(now)
        timings.append(time.perf_counter() - t0)
    incremental = statistics.mean(timings)

    # Random Cut Forest at the seed's parameters.
    rates = {}
    for name in ENGINES:
        points = args.rcf_points if name == "krcf" else max(40, args.rcf_points // 60)
        rates[name] = rcf_rate(name, points)

    def line(label: str, value: str, note: str = "") -> None:
        print(f"{label:<38}{value:>16}   {note}")

    print()
    line("events in buffer", f"{n:,}")
    line("pumps, full recompute (ours)", f"{ours * 1000:.1f} ms")
    line(
        "pumps, full recompute (DuckDB)",
        f"{theirs * 1000:.1f} ms",
        f"ours/DuckDB = {ours / theirs:.2f}x (target <= 1.5x)",
    )
    line(
        f"one batch of {args.batch:,}, all metrics",
        f"{incremental * 1000:.2f} ms",
        f"DuckDB full / batch = {theirs / incremental:.0f}x (target >= 20x; mean of {len(timings)} batches, "
        f"median {statistics.median(timings) * 1000:.2f} ms)",
    )
    line("normalising raw JSON, one core", f"{normalise_rate:,.0f} /s", "records per second (target >= 50,000)")
    line(
        "buffer memory per event",
        f"{memory:,.0f} B",
        f"1M events = {memory * 1e6 / 2**30:.2f} GiB resident (target <= 1 GiB)",
    )
    for name, rate in rates.items():
        line(f"RCF {name}, score + learn", f"{rate:,.0f} /s", "points per second at the seed's parameters")
    line("RCF krcf / rrcf", f"{rates['krcf'] / rates['rrcf']:,.0f}x", "(target >= 5,000 points/s for the default)")


def check_same(ours: dict, connection, queries: list[str]) -> None:
    for query, (name, frame) in zip(queries, ours.items()):
        result = connection.execute(query + " ORDER BY window_start, category, subcategory").fetchdf()
        expected = frame["value"].to_numpy()
        if len(result) != len(frame) or not np.array_equal(result["value"].to_numpy(), expected):
            raise SystemExit(f"{name}: our counts differ from DuckDB's")


def rcf_rate(engine: str, points: int) -> float:
    detector = make_detector(engine, seed=3)
    rng = np.random.default_rng(5)
    series = rng.poisson(50, points + 20).astype(float)
    shingles = [series[i : i + 20] for i in range(points)]
    start = time.perf_counter()
    for shingle in shingles:
        detector.score_one(shingle)
        detector.learn_one(shingle)
    return points / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
