"""The pumps written as SQL (DuckDB's dialect) from the same spec table.

Used to check our aggregation against a database engine and to benchmark it; it is also the
shape a query engine over a trail's S3 prefix would run to hand over pre-aggregated windows.
The table needs columns named as in ``metrics.events.COLUMNS`` with ``eventTime`` a timestamp.
"""

from __future__ import annotations

from metrics.pumps import Condition, Pump


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _where(condition: Condition | None) -> str:
    if condition is None:
        return "TRUE"
    column = f'"{condition.column}"'
    if condition.op == "missing":
        return f"({column} IS NULL OR CAST({column} AS VARCHAR) = '')"
    operator = {"eq": "=", "ne": "<>"}[condition.op]
    return f"CAST({column} AS VARCHAR) {operator} {_quote(condition.value)}"


def _label(column: str | None) -> str:
    return "''" if column is None else f"COALESCE(CAST(\"{column}\" AS VARCHAR), '')"


def pump_sql(pump: Pump, table: str = "events") -> str:
    """A query giving rows (metric, window_start, category, subcategory, value) for ``pump``,
    with window_start in whole seconds since the epoch."""
    window = f'(epoch_ns("eventTime") // 1000000000) // {pump.step} * {pump.step}'
    counts = (
        f"SELECT {window} AS window_start, {_label(pump.category)} AS category, "
        f"{_label(pump.subcategory)} AS subcategory, count(*) AS value "
        f"FROM {table} WHERE {_where(pump.where)} GROUP BY ALL"
    )
    if not pump.dense:
        return f"SELECT {_quote(pump.name)} AS metric, * FROM ({counts})"
    return (
        f"WITH counts AS ({counts}), "
        f"span AS (SELECT min({window}) AS lo, max({window}) AS hi FROM {table}), "
        f"every AS (SELECT unnest(generate_series(lo, hi, {pump.step})) AS window_start FROM span) "
        f"SELECT {_quote(pump.name)} AS metric, every.window_start, '' AS category, '' AS subcategory, "
        f"COALESCE(counts.value, 0) AS value FROM every LEFT JOIN counts USING (window_start)"
    )
