"""Start-up of the app's runtime on the files source: N generated events over the last 24 h in
one JSON Lines file, read as a server reads it (detections and per-dimension anomalies on),
then a restart from the saved state. Each phase runs in a fresh process, so that resident
memory is its own.

    python -m bench.startup [--events 1000000] [--folder /tmp/insights-bench] [--tracemalloc]

Prints per phase: seconds to ready (restore and first poll), seconds until every event is in,
peak and final resident memory (after the collector's own trims), the time of one full
``gc.collect()`` over that state (Streamlit's ``runner.postScriptGC`` runs one after every
script and fragment run), and with ``--tracemalloc``
the ten biggest allocation sites once everything is in (tracing slows the run several times).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from bench.core import MEAN_RHYTHM, rss_bytes
from collectors.demo import DemoSource

DAY = 86_400
MIB = 1024 * 1024


def generate(path: Path, events: int, now: float) -> None:
    """About ``events`` demo records over the 24 h before ``now`` (5 min of margin, so that
    none expires during the run), written hour by hour."""
    source = DemoSource(seed=11, rate=events / DAY / MEAN_RHYTHM * 1.02)
    start = int(now) - DAY + 300
    written = 0
    partial = path.with_suffix(".part")
    with open(partial, "wb") as out:
        for hour in range(24):
            for record in source.records(start + hour * 3600, min(start + (hour + 1) * 3600, int(now) - 60)):
                out.write(orjson.dumps(record) + b"\n")
                written += 1
    os.replace(partial, path)
    path.with_suffix(".meta").write_text(json.dumps({"events": written, "requested": events, "now": now}))


class Peak(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak = rss_bytes()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.peak = max(self.peak, rss_bytes())


def phase(folder: Path, trace: bool) -> dict:
    """One start of the runtime in this process: until every event is in, then saved."""
    os.environ.update(
        {
            "INSIGHTS_SOURCE": "files",
            "INSIGHTS_FILES_PATH": str(folder / "records"),
            "INSIGHTS_STATE_DIR": str(folder / "state"),
            "INSIGHTS_POLL_SECONDS": "2",
        }
    )
    if trace:
        import tracemalloc

        tracemalloc.start(8)
    from settings import load
    from ui.runtime import build

    watch = Peak()
    watch.start()
    began = time.perf_counter()
    shared = build(load())
    collector = shared.collector
    built = time.perf_counter() - began
    collector.start()
    collector.wait_ready()
    ready = time.perf_counter() - began
    while getattr(collector.source, "more", False) or collector.health.polls < 2:
        time.sleep(0.2)
    loaded = time.perf_counter() - began
    time.sleep(1)
    import gc

    collected = time.perf_counter()
    gc.collect(2)  # what Streamlit's runner.postScriptGC does after every script and fragment run
    full_gc = time.perf_counter() - collected
    figures = {
        "built_s": built,
        "ready_s": ready,
        "all_in_s": loaded,
        "events": len(shared.engine.buffer),
        "restored": collector.store.restored_events,
        "detections": len(shared.detector.hits()),
        "rejected": collector.health.rejects.total,
        "analysis_errors": dict(collector.analysis_errors),
        "peak_rss_mib": watch.peak / MIB,
        "rss_mib": rss_bytes() / MIB,
        "gc_collect_2_s": full_gc,
        "gc_tracked_objects": len(gc.get_objects()),
    }
    if trace:
        import tracemalloc

        top = tracemalloc.take_snapshot().statistics("lineno")[:10]
        figures["tracemalloc_top"] = [f"{s.size / MIB:7.1f} MiB  {s.traceback[0]}" for s in top]
        figures["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / MIB
    collector.stop(timeout=60)  # saves the state, as a shutdown does
    watch.stop.set()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--folder", default="/tmp/insights-bench")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.folder)
    if args.phase:
        print(json.dumps(phase(folder, args.tracemalloc)))
        return
    records = folder / "records"
    records.mkdir(parents=True, exist_ok=True)
    data = records / "day.jsonl"
    meta = data.with_suffix(".meta")
    fresh = meta.exists() and json.loads(meta.read_text())["requested"] == args.events
    fresh = fresh and time.time() - json.loads(meta.read_text())["now"] < 3600  # still within the 24 h
    if not fresh:
        print(f"generating {args.events:,} events over the last 24 h into {data} ...", flush=True)
        generate(data, args.events, time.time())
    for stale in (folder / "state").glob("**/*"):
        if stale.is_file():
            stale.unlink()
    size = data.stat().st_size / MIB
    print(f"{json.loads(meta.read_text())['events']:,} events, {size:,.0f} MiB of JSON Lines; load: {os.getloadavg()}")
    for name in ("first start", "restart from the saved state"):
        command = [sys.executable, "-m", "bench.startup", "--folder", str(folder), "--phase", name]
        if args.tracemalloc:
            command.append("--tracemalloc")
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        print(f"\n{name}:")
        for key, value in figures.items():
            if key == "tracemalloc_top":
                print("  tracemalloc, biggest sites once everything is in:")
                for line in value:
                    print(f"    {line}")
            else:
                print(f"  {key:18} {value:,.1f}" if isinstance(value, float) else f"  {key:18} {value}")
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
