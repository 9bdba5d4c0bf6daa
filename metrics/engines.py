"""Every metric computed by an engine other than ours: DuckDB or Spark run ``trail_sql`` over
the record files, and the windows they return go into an ``Engine`` (which adds the dense
zeros and scores the anomalies in-process), so that every path prints the same rows.

Both read what ``metrics.records.iter_paths`` reads: trail files ``{"Records": [...]}``, JSON
arrays and JSON Lines, gzipped or not, in the same files.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.engine import Engine
from metrics.pumps import FRAME_COLUMNS, PUMPS, PUMPS_BY_NAME, WindowCounts
from metrics.records import RECORD_SUFFIXES
from metrics.windows import NS_PER_SECOND

ENGINE_NAMES = ("memory", "duckdb", "spark")
FUTURE_TOLERANCE_SECONDS = 86_400


def latest_seconds(now_ns: int | None = None) -> int:
    """The latest eventTime second accepted, as ``metrics.normalise.latest_event_ns``."""
    now = time.time_ns() if now_ns is None else now_ns
    return (now + FUTURE_TOLERANCE_SECONDS * NS_PER_SECOND) // NS_PER_SECOND


def record_files(paths: Iterable[str | Path]) -> list[str]:
    """The files ``iter_paths`` would read, in its order."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(
                str(p)
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.name.lower().endswith(RECORD_SUFFIXES)
            )
        else:
            files.append(str(path))
    return files


def windows_from_frame(frame: pd.DataFrame) -> dict[str, WindowCounts]:
    """Sparse rows of ``FRAME_COLUMNS`` (window_start in seconds, "" for a missing label) as
    window counts per metric."""
    out = {}
    for metric, rows in frame.groupby("metric", sort=True):
        out[metric] = WindowCounts(
            rows["window_start"].to_numpy(dtype=np.int64),
            _labels(rows["category"]),
            _labels(rows["subcategory"]),
            rows["value"].to_numpy(dtype=np.int64),
        )
    return out


def _labels(column: pd.Series) -> np.ndarray:
    values = column.astype(object).to_numpy()
    return np.where(pd.isna(values) | (values == ""), None, values).astype(object)


def engine_of_windows(frame: pd.DataFrame, anomaly_engine: str = "krcf") -> Engine:
    """An engine holding the windows of ``frame``, its whole series learned (batch use)."""
    engine = Engine(retention_seconds=None, anomaly_engine=anomaly_engine)
    for metric, counts in windows_from_frame(frame).items():
        if metric not in PUMPS_BY_NAME:
            raise ValueError(f"unknown metric in windows: {metric!r}")
        engine.add_windows(metric, counts)
    engine.finish()
    return engine


# A trail file is one JSON object; DuckDB's reader refuses an object over 16 MiB by default, and
# a busy account's five minutes in one region (or any organisation trail file at ~5M events a day)
# is larger than that.
MAX_DOCUMENT_BYTES = 1 << 30


def duckdb_windows(files: list[str], now_ns: int | None = None, pumps=PUMPS, top_k: int | None = None) -> pd.DataFrame:
    """The query's rows computed by DuckDB over ``files`` (``trail_sql``'s ``pumps`` and ``top_k``)."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    if not files:
        return pd.DataFrame(columns=list(FRAME_COLUMNS))
    listing = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    # A trail file is one object holding Records; an array or JSON Lines file is read as records.
    connection.execute(
        "CREATE TEMP VIEW trail AS SELECT CAST(r AS VARCHAR) AS record FROM ("
        "SELECT unnest(CASE WHEN json_type(json) = 'OBJECT' AND json_type(json, '$.Records') = 'ARRAY' "
        "THEN json_extract(json, '$.Records[*]') ELSE [json] END) AS r "
        f"FROM read_json_objects({listing}, format = 'auto', ignore_errors = true, "
        f"maximum_object_size = {MAX_DOCUMENT_BYTES}))"
    )
    from metrics.sql import trail_sql, transpile  # sqlglot takes 0.15-0.3 s to import: only when a query runs

    sql = trail_sql(latest_seconds(now_ns), pumps, top_k=top_k)
    return connection.execute(transpile(sql, "duckdb")).fetchdf()


def spark_windows(
    files: list[str], master: str | None = None, now_ns: int | None = None, pumps=PUMPS, top_k: int | None = None
) -> pd.DataFrame:
    """The query's rows computed by Spark (``local[*]`` unless a master URL is given)."""
    from metrics.spark import session, trail_view
    from metrics.sql import trail_sql, transpile

    spark = session(master)
    try:
        if not files:
            return pd.DataFrame(columns=list(FRAME_COLUMNS))
        trail_view(spark, files)
        rows = spark.sql(transpile(trail_sql(latest_seconds(now_ns), pumps, top_k=top_k), "spark")).collect()
        return pd.DataFrame([r.asDict() for r in rows], columns=list(FRAME_COLUMNS))
    finally:
        spark.stop()


def load_windows(path: str | Path) -> pd.DataFrame:
    """Windows written by the Spark job (a Parquet or CSV file, or a folder of part files)."""
    path = Path(path)
    parts = sorted(path.rglob("*")) if path.is_dir() else [path]
    parquet = [p for p in parts if p.is_file() and p.suffix == ".parquet"]
    csvs = [p for p in parts if p.is_file() and p.suffix == ".csv"]
    if parquet:
        frames = [pd.read_parquet(p) for p in parquet]
    elif csvs:
        frames = [pd.read_csv(p, dtype={"category": str, "subcategory": str}, keep_default_na=False) for p in csvs]
    else:
        raise ValueError(f"no Parquet or CSV windows under {path}")
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FRAME_COLUMNS))
    missing = set(FRAME_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"windows lack column(s): {', '.join(sorted(missing))}")
    return frame[list(FRAME_COLUMNS)]


def add_engine_arguments(parser) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINE_NAMES,
        default="memory",
        help="who counts: this process (default), DuckDB or Spark running the generated query",
    )
    parser.add_argument("--spark-master", metavar="URL", help="Spark master for --engine spark (default local[*])")
    parser.add_argument("--windows", metavar="PATH", help="load windows written by jobs/spark_pumps.py instead")


def uses_query_engine(args) -> bool:
    return args.engine != "memory" or args.windows is not None


def engine_from_arguments(parser, args) -> Engine | None:
    """The engine for ``--engine duckdb|spark`` or ``--windows``; None (reported) if nothing was
    counted."""
    if args.windows is not None:
        if args.paths:
            parser.error("--windows loads windows already counted: give no PATH with it")
        frame = load_windows(args.windows)
        origin = args.windows
    else:
        if not args.paths:
            parser.error(f"--engine {args.engine} needs PATH(s) to read")
        files = record_files(args.paths)
        frame = duckdb_windows(files) if args.engine == "duckdb" else spark_windows(files, args.spark_master)
        origin = f"{args.engine} over {len(files)} file(s)"
    print(f"{len(frame)} window row(s) from {origin}", file=sys.stderr)
    if not len(frame):
        print("nothing could be read", file=sys.stderr)
        return None
    return engine_of_windows(frame, args.anomaly_engine)
