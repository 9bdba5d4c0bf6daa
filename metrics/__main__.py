"""Every metric of CloudTrail records read from files, for batch use and for checking.

    python -m metrics PATH [PATH ...] [--format csv|json] [--engine memory|duckdb|spark]
    python -m metrics --windows WINDOWS [--format csv|json]

Rows are sorted by metric, window_start, category, subcategory. Rejected records are
reported on stderr with their count and reasons. Exit status 1 only if no record could be read.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys

import orjson

from metrics.anomaly import DEFAULT_ENGINE, ENGINES
from metrics.engine import ANOMALY, Engine
from metrics.engines import add_engine_arguments, engine_from_arguments, uses_query_engine
from metrics.events import Batch
from metrics.normalise import Rejects, normalise_all
from metrics.pumps import FRAME_COLUMNS
from metrics.records import add_paths_argument, iter_paths


def read(paths, rejects: Rejects) -> tuple[Batch, int]:
    """Normalised events of every path, and how many files were read."""
    batch, files = Batch(), 0
    for origin, items in itertools.groupby(iter_paths(paths), key=lambda pair: pair[0]):
        files += 1
        batch.extend(normalise_all((record for _, record in items), rejects, origin))
    return batch, files


def rows(frame) -> list[dict]:
    out = []
    starts = frame["window_start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    for metric, start, category, subcategory, value in zip(
        frame["metric"].tolist(),
        starts,
        frame["category"].tolist(),
        frame["subcategory"].tolist(),
        frame["value"].tolist(),
    ):
        value = round(float(value), 6) if metric == ANOMALY else int(value)
        out.append(
            {"metric": metric, "window_start": start, "category": category, "subcategory": subcategory, "value": value}
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics", description=__doc__.split("\n\n")[0])
    add_paths_argument(parser, required=False)
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.add_argument("--anomaly-engine", choices=sorted(ENGINES), default=DEFAULT_ENGINE)
    add_engine_arguments(parser)
    args = parser.parse_args(argv)
    if uses_query_engine(args):
        engine = engine_from_arguments(parser, args)
        return write(engine, args.format) if engine is not None else 1
    if not args.paths:
        parser.error("give PATH(s) to read, or --windows")

    rejects = Rejects()
    batch, files = read(args.paths, rejects)
    engine = Engine(retention_seconds=None, anomaly_engine=args.anomaly_engine)
    result = engine.ingest(batch)
    engine.finish()

    print(
        f"read {result.added} events from {files} file(s); {result.duplicates} duplicate(s) counted once",
        file=sys.stderr,
    )
    if rejects.total:
        print(f"rejected {rejects.total} record(s):", file=sys.stderr)
        for reason, count in rejects.summary():
            print(f"  {count:>8}  {reason}", file=sys.stderr)
    if not result.added:
        print("nothing could be read", file=sys.stderr)
        return 1

    return write(engine, args.format)


def write(engine: Engine, output_format: str) -> int:
    """Every metric of ``engine`` on stdout, sorted; the same bytes whichever engine counted."""
    output = rows(engine.all_metrics())
    if output_format == "json":
        sys.stdout.buffer.write(orjson.dumps(output) + b"\n")
    else:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(FRAME_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
