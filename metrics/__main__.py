"""Every metric of CloudTrail records read from files, for batch use and for checking.

    python -m metrics PATH [PATH ...] [--format csv|json] [--sparse] [--engine memory|duckdb|spark]
    python -m metrics --windows WINDOWS [--format csv|json]

Rows are sorted by metric, window_start, category, subcategory. Rejected records are
reported on stderr with their count and reasons. Exit status 1 only if no record could be read.
"""

from __future__ import annotations

import argparse
import sys

import orjson
import pandas as pd

from metrics.anomaly import DEFAULT_ENGINE, ENGINES
from metrics.batch_forest import BatchForest
from metrics.engine import ANOMALY, METRIC_NAMES, Engine
from metrics.engines import add_engine_arguments, engine_from_arguments, uses_query_engine
from metrics.ingest import feed
from metrics.normalise import Rejects
from metrics.output import HEADER, csv_bytes, finish_with, rows, write_csv, write_json
from metrics.pumps import FRAME_COLUMNS, PUMPS_BY_NAME
from metrics.records import add_paths_argument


def sparse_metrics(engine: Engine) -> pd.DataFrame:
    """``all_metrics`` without the zero rows of dense series, never building them: the counts
    from the per-window totals, the scores from those above zero."""
    frames = []
    for name in METRIC_NAMES:
        if name == ANOMALY:
            frame = engine.scored_windows(engine.totals.first or 0, (engine.totals.last or 0) + 1)
        elif PUMPS_BY_NAME[name].dense:
            step = PUMPS_BY_NAME[name].step
            frame = engine.binned_totals(name, engine.totals.first or 0, (engine.totals.last or 0) + 1, step)
            frame = frame[frame["value"] != 0]
        else:
            frame = engine.metric_frame(name)
        frames.append(frame)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(FRAME_COLUMNS))
    return pd.concat(frames, ignore_index=True).sort_values(
        ["metric", "window_start", "category", "subcategory"], kind="stable", ignore_index=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics", description=__doc__.split("\n\n")[0])
    add_paths_argument(parser, required=False)
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.add_argument("--anomaly-engine", choices=sorted(ENGINES), default=DEFAULT_ENGINE)
    parser.add_argument(
        "--sparse",
        action="store_true",
        help="leave out the zero rows of the dense series (TotalCalls, NumberOfSuccessfulCalls, AnomalyScore): "
        "files months apart otherwise give millions of rows of zeros",
    )
    add_engine_arguments(parser)
    args = parser.parse_args(argv)
    if uses_query_engine(args):
        engine = engine_from_arguments(parser, args)
        return write(engine, args.format, sparse=args.sparse) if engine is not None else 1
    if not args.paths:
        parser.error("give PATH(s) to read, or --windows")

    rejects = Rejects()
    engine = Engine(retention_seconds=None, anomaly_engine=args.anomaly_engine)
    forest = BatchForest(args.anomaly_engine, step=engine.totals.pump.step)
    try:
        result = feed(
            engine,
            args.paths,
            rejects,
            hold=False,
            after_ingest=lambda low, high: forest.offer(engine.totals, low, high),
        )
        return _report_and_write(engine, result, rejects, args, forest)
    finally:
        forest.close()


def _report_and_write(engine: Engine, result, rejects: Rejects, args, forest: BatchForest) -> int:
    print(
        f"read {result.added} events from {result.files} file(s); {result.duplicates} duplicate(s) counted once",
        file=sys.stderr,
    )
    if rejects.total:
        print(f"rejected {rejects.total} record(s):", file=sys.stderr)
        for reason, count in rejects.summary():
            print(f"  {count:>8}  {reason}", file=sys.stderr)
    if not result.added:
        print("nothing could be read", file=sys.stderr)
        return 1

    written = write(engine, args.format, sparse=args.sparse, forest=forest)
    if forest.failure:
        print(f"the anomaly forest's own process failed ({forest.failure}); it learned in this one", file=sys.stderr)
    return written


def write(engine: Engine, output_format: str, sparse: bool = False, forest: BatchForest | None = None) -> int:
    """Every metric of ``engine`` on stdout, sorted; the same bytes whichever engine counted.
    ``forest``: the engine's series is being learned there (see ``metrics.batch_forest``)."""
    sys.stdout.flush()
    out = getattr(sys.stdout, "buffer", None) or _Text(sys.stdout)
    if sparse:
        if forest is not None:
            forest.send_final(engine.totals)
            finish_with(engine, forest)
        else:
            engine.finish()
        parts = [part for _, part in sparse_metrics(engine).groupby("metric", sort=False)]
        if output_format == "json":
            out.write(orjson.dumps([row for part in parts for row in rows(part)]) + b"\n")
        else:
            out.write(HEADER + b"".join(csv_bytes(part) for part in parts))
    else:
        (write_json if output_format == "json" else write_csv)(engine, out, forest)
    out.flush()
    return 0


class _Text:
    """Bytes written to a text stream with no binary buffer (a notebook's or a test's stdout)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode())

    def flush(self) -> None:
        self.stream.flush()


if __name__ == "__main__":
    sys.exit(main())
