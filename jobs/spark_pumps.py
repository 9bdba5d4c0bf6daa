"""Every pump of a trail's day range, counted by Spark with the generated query.

    spark-submit jobs/spark_pumps.py --trail s3a://BUCKET/AWSLogs/o-xxx --from 2024-08-01 --to 2024-08-02 \\
        --out s3a://BUCKET/insights/windows [--regions us-east-1,eu-west-1] [--accounts 111122223333] [--format csv]

``--trail`` is the trail's ``AWSLogs/<account>`` prefix, or ``AWSLogs/<o-org>`` for an
organisation trail (then every account under it, or those of ``--accounts``); a local folder
works the same. Days are UTC and both ends are included. The windows (``metric,
window_start, category, subcategory, value``, window_start in seconds since the epoch) are
written as Parquet or CSV, for ``python -m metrics --windows OUT`` and the ``files`` source;
dense zeros and the anomaly score are added by the engine that loads them.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metrics.engines import latest_seconds
from metrics.spark import session, trail_view
from metrics.sql import trail_sql, transpile


def day_globs(trail: str, first: date, last: date, regions: list[str], accounts: list[str]) -> list[str]:
    """One path glob per day, account set and region set, in the trail's layout."""
    trail = trail.rstrip("/")
    organisation = trail.rsplit("/", 1)[-1].startswith("o-")
    account_part = ("{" + ",".join(accounts) + "}" if accounts else "*") + "/" if organisation else ""
    region_part = "{" + ",".join(regions) + "}" if regions else "*"
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [f"{trail}/{account_part}CloudTrail/{region_part}/{day:%Y/%m/%d}/" for day in days]


def existing(spark, globs: list[str]) -> list[str]:
    """The globs that match something: a day with no logs yet is not an error."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    kept = []
    for pattern in globs:
        path = jvm.org.apache.hadoop.fs.Path(pattern)
        matches = path.getFileSystem(conf).globStatus(path)
        if matches is not None and len(matches):
            kept.append(pattern)
    return kept


def run(args) -> int:
    spark = session(args.master, app_name="insights-spark-pumps")
    try:
        paths = existing(spark, day_globs(args.trail, args.first, args.last, args.regions, args.accounts))
        if not paths:
            print(f"no trail files under {args.trail} for {args.first}..{args.last}", file=sys.stderr)
            return 1
        trail_view(spark, paths)
        windows = spark.sql(transpile(trail_sql(latest_seconds()), "spark"))
        writer = windows.coalesce(args.files).write.mode("overwrite")
        if args.format == "csv":
            writer.option("header", "true").csv(args.out)
        else:
            writer.parquet(args.out)
        print(f"windows of {len(paths)} day path(s) written to {args.out}", file=sys.stderr)
        return 0
    finally:
        spark.stop()


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark_pumps.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trail", required=True, help="s3a://BUCKET/AWSLogs/<account or o-org>, or a local folder")
    parser.add_argument("--from", dest="first", type=date.fromisoformat, required=True, help="first UTC day")
    parser.add_argument("--to", dest="last", type=date.fromisoformat, required=True, help="last UTC day (included)")
    parser.add_argument("--out", required=True, help="where the windows go (a folder of part files)")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--regions", type=_list, default=[], help="comma-separated; default every region")
    parser.add_argument("--accounts", type=_list, default=[], help="comma-separated; organisation trails only")
    parser.add_argument("--files", type=int, default=1, help="part files to write (default 1)")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    args = parser.parse_args(argv)
    if args.last < args.first:
        parser.error("--to is before --from")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
