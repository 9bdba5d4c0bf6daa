"""Every metric of CloudTrail records read from files, for batch use and for checking.

    python -m metrics PATH [PATH ...] [--format csv|json]

Rows are sorted by metric, window_start, category, subcategory. Rejected records are
reported on stderr with their count and reasons. Exit status 1 only if no record could be read.
"""

from __future__ import annotations

import argparse
import sys

from metrics.anomaly import DEFAULT_ENGINE, ENGINES
from metrics.engine import Engine
from metrics.ingest import feed
from metrics.normalise import Rejects
from metrics.output import write_csv, write_json
from metrics.records import add_paths_argument


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics", description=__doc__.split("\n\n")[0])
    add_paths_argument(parser)
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.add_argument("--anomaly-engine", choices=sorted(ENGINES), default=DEFAULT_ENGINE)
    args = parser.parse_args(argv)

    rejects = Rejects()
    engine = Engine(retention_seconds=None, anomaly_engine=args.anomaly_engine)
    result = feed(engine, args.paths, rejects, raws=False)

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

    sys.stdout.flush()
    (write_json if args.format == "json" else write_csv)(engine, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
