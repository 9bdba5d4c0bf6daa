"""Benchmark of the buffer snapshot on generated data (the events of ``bench.core``).

    python -m bench.snapshot [--events 1000000] [--folder /tmp]

Prints: save time and file size, the longest wait for the buffer's lock while saving (a
reader taking snapshots throughout), resident memory the save added at its peak; then, into
fresh engines checked against the original, ingesting row group by row group (``batches``)
and ``load`` of one whole batch followed by its ingest, with the memory each added at its peak.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import tempfile
import threading
import time
from collections.abc import Iterator

import pyarrow as pa

from bench.core import generate_lines, normalise_lines, rss_bytes
from metrics.engine import Engine
from metrics.snapshot import batches, load, save


class Watch(threading.Thread):
    """Meanwhile, in another thread: the longest ``buffer.snapshot()`` (a lock hold) and the
    peak resident memory above the settled start."""

    def __init__(self, buffer):
        super().__init__(daemon=True)
        self.buffer = buffer
        self.done = threading.Event()
        self.longest = 0.0
        self.start_rss = settle()
        self.peak = self.start_rss

    def run(self) -> None:
        while not self.done.wait(0.005):
            start = time.perf_counter()
            self.buffer.snapshot()
            self.longest = max(self.longest, time.perf_counter() - start)
            self.peak = max(self.peak, rss_bytes())

    @property
    def added_mib(self) -> float:
        return (self.peak - self.start_rss) / 2**20


@contextlib.contextmanager
def watching(buffer) -> Iterator[Watch]:
    watch = Watch(buffer)
    watch.start()
    try:
        yield watch
    finally:
        watch.done.set()
        watch.join()


def settle() -> int:
    """Resident bytes once freed memory is handed back to the system (glibc and Arrow keep
    freed memory for reuse, which would hide what the next step needs)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    pa.default_memory_pool().release_unused()
    return rss_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--folder", default=None, help="where to write the snapshot (a temporary folder if not given)")
    args = parser.parse_args()

    start = 1_789_948_800  # a Monday, 00:00 UTC
    print(f"generating {args.events:,} events ...", flush=True)
    lines = generate_lines(args.events, start)[: args.events]
    engine = Engine(retention_seconds=None)
    for part in range(0, len(lines), 100_000):
        engine.ingest(normalise_lines(lines[part : part + 100_000]))
    del lines
    gc.collect()
    n = len(engine.buffer)

    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = os.path.join(folder, "buffer.parquet")
        with watching(engine.buffer) as watch:
            info = save(engine.buffer, path)

        ids = engine.buffer.snapshot().frame()["eventID"].iloc[:: max(1, n // 1000)].tolist()
        expected = engine.buffer.raw_records(ids)

        def check(fresh: Engine) -> None:
            if len(fresh.buffer) != n:
                raise SystemExit(f"loaded {len(fresh.buffer):,} of {n:,} events")
            if fresh.buffer.raw_records(ids) != expected:
                raise SystemExit("raw records differ after loading")

        streamed = Engine(retention_seconds=None)
        with watching(streamed.buffer) as stream_watch:
            started = time.perf_counter()
            for part in batches(path):
                streamed.ingest(part)
            stream_seconds = time.perf_counter() - started
        check(streamed)
        del streamed, part

        fresh = Engine(retention_seconds=None)
        with watching(fresh.buffer) as load_watch:
            started = time.perf_counter()
            batch = load(path)
            loaded = time.perf_counter() - started
            started = time.perf_counter()
            fresh.ingest(batch)
            ingested = time.perf_counter() - started
            del batch
        check(fresh)

    def line(label: str, value: str, note: str = "") -> None:
        print(f"{label:<38}{value:>16}   {note}")

    print()
    line("events in buffer", f"{n:,}")
    line("save", f"{info.seconds:.2f} s", f"{info.events:,} events (target < 15 s for 1M)")
    line("file size", f"{info.bytes / 2**20:,.1f} MiB", f"{info.bytes / max(1, info.events):,.0f} B per event")
    line("longest lock wait while saving", f"{watch.longest * 1000:.1f} ms", "a reader's buffer.snapshot() meanwhile")
    line("memory added by saving, peak", f"{watch.added_mib:,.0f} MiB", "resident")
    line("load", f"{loaded:.2f} s", "file to Batch (target < 15 s for 1M)")
    line("ingest of the loaded batch", f"{ingested:.2f} s", f"load + ingest = {loaded + ingested:.2f} s")
    line(
        "memory added by load + ingest, peak",
        f"{load_watch.added_mib:,.0f} MiB",
        "resident, engine included",
    )
    line("ingest row group by row group", f"{stream_seconds:.2f} s", "for part in batches(path): engine.ingest(part)")
    line("memory added so, peak", f"{stream_watch.added_mib:,.0f} MiB", "resident, engine included")


if __name__ == "__main__":
    main()
