"""Athena's side played by DuckDB: a table like the one ``athena-ddl`` creates (one ``record``
column, the day, region and account partitions, and Athena's ``"$path"``) over trail files in
the organisation layout, and a runner that runs the Trino query on it as Athena would."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import orjson
import pandas as pd

from collectors.athena import AthenaStats
from collectors.athena_files import LOG_FILE
from metrics.sql import transpile

TABLE = "trail_table"


def trail_table(root: Path, bucket: str) -> duckdb.DuckDBPyConnection:
    rows = []
    for path in sorted(root.rglob("*.json.gz")):
        key = path.relative_to(root).as_posix()
        match = LOG_FILE.search(key)
        for record in orjson.loads(gzip.decompress(path.read_bytes()))["Records"]:
            rows.append(
                (orjson.dumps(record).decode(), f"s3://{bucket}/{key}", match["day"], match["region"], match["account"])
            )
    frame = pd.DataFrame(rows, columns=["record", "$path", "timestamp", "region", "account"])
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.register("frame", frame)
    connection.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM frame")
    return connection


class DuckRunner:
    """``AthenaRunner.run`` over the DuckDB table: every cell comes back as text (or None)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self.connection = connection
        self.stats = AthenaStats()
        self.queries: list[str] = []

    def run(self, sql: str, timeout: float = 600.0) -> pd.DataFrame:
        self.queries.append(sql)
        self.stats.queries += 1
        frame = self.connection.execute(transpile(sql, "duckdb")).fetchdf()
        return frame.astype(object).where(frame.notna(), None).map(lambda v: v if v is None else str(v))
