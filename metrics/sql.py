"""The pumps written as SQL, from the same spec table.

``trail_sql`` is the query a distributed engine runs over a trail (Athena, Spark, DuckDB): one
scan of the raw records, the normaliser's reject and attribution rules, de-duplication by
eventID, and one ``GROUPING SETS`` aggregation for every pump. It is written once in Trino's
dialect (Athena's) and ``transpile`` derives the others. Its input is a relation ``trail``
with one column ``record``, the JSON text of one CloudTrail record, so that a number or an
object where CloudTrail writes a string is seen and rejected rather than cast to text. Its
rows are sparse ``metric, window_start, category, subcategory, value`` with window_start in
seconds since the epoch and "" for a missing label; dense zeros and the anomaly score are the
engine's job (``Engine.add_windows``).

``pump_sql`` is one pump over already normalised events (DuckDB), used to check the
in-process aggregation and to benchmark it.
"""

from __future__ import annotations

from dataclasses import replace

import sqlglot
from sqlglot import exp

from metrics.normalise import EARLIEST_EVENT_NS, MAX_FIELD_CHARS, MAX_RECORD_BYTES, TEXT_FIELDS
from metrics.pumps import PUMPS, Condition, Pump
from metrics.windows import NS_PER_SECOND

# The top-level text fields the normaliser checks (type and length), and their JSON paths.
IDENTITY_FIELDS = ("type", "userName", "invokedBy", "principalId", "arn")
ISSUER_PATH = "$.userIdentity.sessionContext.sessionIssuer.userName"
# The pump columns the query can group and filter on, as its own column names.
PUMP_COLUMNS = {
    "eventSource": "f_eventsource",
    "eventName": "f_eventname",
    "sourceIPAddress": "f_sourceipaddress",
    "errorCode": "f_errorcode",
    "user": "user_name",
    "session": "session_name",
    "awsRegion": "region_name",
    "account": "account_id",
}
# Labels computed apart from the plain text fields (the account falls back to the caller's).
DERIVED_COLUMNS = ("user", "session", "awsRegion", "account")
ACCOUNT_PATH = {"id_accountId": "$.userIdentity.accountId"}
# CloudTrail writes eventTime as 2024-08-02T08:30:00Z. Every engine parses this extended ISO
# form alike (fraction to the microsecond, Z or an offset, naive meaning UTC); a form only
# Python's parser takes (basic format, week dates) is rejected here and counted in-process.
EVENT_TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
EVENT_ID_CHARS = 128
# At organisation scale the per-user and per-API pumps come back as the largest K rows of each
# minute and one row for the rest (a label no IAM name or service can take).
TOP_K_PUMPS = ("CallsPerUser", "CallsPerAPI")
TOP_K_STEP = 60
OTHER = "(other)"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _json_text(path: str) -> str:
    """The JSON text of the value at ``path`` ('"x"' for a string, 'null', '{...}'), or NULL."""
    return f"json_format(json_extract(j, {_quote(path)}))"


def _is_string(name: str) -> str:
    return f"({name}_json LIKE '\"%' AND {name}_json <> '\"\"')"


def _is_missing(name: str) -> str:
    return f"({name}_json IS NULL OR {name}_json IN ('null', '\"\"'))"


def _fields(extra_paths: dict[str, str] | None = None) -> list[str]:
    """Every value the rules need: the JSON text of each field (for its type) and its text."""
    paths = {"eventID": "$.eventID", "eventTime": "$.eventTime", "readOnly": "$.readOnly"}
    paths.update({f: f"$.{f}" for f in TEXT_FIELDS})
    paths["userIdentity"] = "$.userIdentity"
    paths.update({f"id_{f}": f"$.userIdentity.{f}" for f in IDENTITY_FIELDS})
    paths["issuer"] = ISSUER_PATH
    paths.update(extra_paths or {})
    out = ["record"]
    for name, path in paths.items():
        column = name.lower()
        out.append(f"{_json_text(path)} AS {column}_json")
        if name not in ("readOnly", "userIdentity"):
            out.append(f"json_extract_scalar(j, {_quote(path)}) AS {column}")
    return out


def _records(source: str, extra_paths: dict[str, str] | None = None) -> str:
    """The CTEs every query starts with: each record of ``source`` parsed once, the fields the
    rules need, and its eventTime in seconds (``event_seconds``, NULL if unparsable)."""
    fields = ",\n    ".join(_fields(extra_paths))
    return f"""WITH parsed AS (
  SELECT record, TRY(json_parse(record)) AS j FROM {source}
),
fields AS (
  SELECT
    {fields}
  FROM parsed
),
timed AS (
  SELECT *,
    CASE WHEN eventtime_json LIKE '"%' AND regexp_like(eventtime, {_quote(EVENT_TIME_PATTERN)})
      THEN CAST(floor(to_unixtime(TRY(from_iso8601_timestamp(eventtime)))) AS BIGINT) END AS event_seconds
  FROM fields
)"""


def _valid(latest_seconds: int, earliest_seconds: int | None) -> str:
    """The normaliser's reject rules, as one condition on the extracted fields."""
    earliest = max(EARLIEST_EVENT_NS // NS_PER_SECOND, earliest_seconds or 0)
    rules = [
        f"{_is_string('eventid')} AND length(eventid) <= {EVENT_ID_CHARS}",
        "event_seconds IS NOT NULL",
        f"event_seconds >= {earliest}",
        f"event_seconds <= {int(latest_seconds)}",
        f"length(record) <= {MAX_RECORD_BYTES}",
        "(readonly_json IS NULL OR readonly_json IN ('null', 'true', 'false', '\"true\"', '\"false\"'))",
        "(useridentity_json IS NULL OR useridentity_json = 'null' OR useridentity_json LIKE '{%')",
    ]
    for field in TEXT_FIELDS:
        name = field.lower()
        rules.append(f"({_is_missing(name)} OR ({name}_json LIKE '\"%' AND length({name}) <= {MAX_FIELD_CHARS}))")
    return "\n    AND ".join(rules)


def _string_or_null(name: str) -> str:
    return f"CASE WHEN {_is_string(name)} THEN {name} END"


def _account() -> str:
    """The normaliser's account: the recipient's, else the caller's (needs ``ACCOUNT_PATH``)."""
    return f"coalesce({_string_or_null('recipientaccountid')}, {_string_or_null('id_accountid')})"


def _attribution() -> tuple[str, str]:
    """(user, session) after reference.md section 4, as SQL over the identity fields."""
    typed = _is_string("id_type")
    issued = f"{typed} AND id_type IN ('AssumedRole', 'FederatedUser') AND {_is_string('issuer')}"
    fallback = ", ".join(_string_or_null(f"id_{f.lower()}") for f in ("userName", "invokedBy", "principalId"))
    user = (
        f"substr(CASE WHEN {typed} AND id_type = 'Root' THEN 'root' "
        f"WHEN {issued} THEN issuer "
        f"ELSE coalesce({fallback}, 'unknown') END, 1, {MAX_FIELD_CHARS})"
    )
    session = (
        f"CASE WHEN {issued} AND id_arn_json LIKE '\"%' THEN nullif(regexp_extract(id_arn, '/([^/]*)$', 1), '') END"
    )
    return user, session


def _condition(condition: Condition) -> str:
    column = PUMP_COLUMNS[condition.column]
    if condition.op == "missing":
        return f"{column} IS NULL"
    operator = {"eq": "=", "ne": "<>"}[condition.op]
    return f"{column} {operator} {_quote(condition.value)}"


def _plan(pumps: tuple[Pump, ...]):
    """The grouping columns, each pump's grouping set, and the flag column of its filter."""
    flags = {}
    for pump in pumps:
        if pump.where is not None and pump.where not in flags:
            flags[pump.where] = f"flag_{len(flags)}"
    sets = []
    for pump in pumps:
        members = [f"w_{pump.step}"] + [PUMP_COLUMNS[c] for c in (pump.category, pump.subcategory) if c]
        if pump.where is not None:
            members.append(flags[pump.where])
        sets.append(members)
    # Spark wants grouping_id's columns in the order the grouping sets first name them.
    columns = list(dict.fromkeys(c for members in sets for c in members))
    if len({frozenset(s) for s in sets}) != len(sets):
        raise ValueError("two pumps have the same grouping set; give one a filter or another column")
    return columns, sets, flags


def _grouping_id(columns: list[str], members: list[str]) -> int:
    """The value of grouping(columns...) for rows of the set ``members``: a bit set for each
    column left out, the first column being the highest bit."""
    return sum(1 << (len(columns) - 1 - i) for i, c in enumerate(columns) if c not in members)


def top_k_pumps(pumps: tuple[Pump, ...] = PUMPS) -> tuple[Pump, ...]:
    """``pumps`` with the per-user and per-API ones at ``TOP_K_STEP`` windows, as a query engine
    returns them with ``trail_sql(top_k=K)``."""
    return tuple(replace(p, step=TOP_K_STEP) if p.name in TOP_K_PUMPS else p for p in pumps)


def _top_k(rows: str, k: int) -> str:
    """The rows of the ``TOP_K_PUMPS`` cut to the ``k`` largest of each window, the rest summed
    into one ``OTHER`` row, so that every window's total stays exact."""
    names = ", ".join(map(_quote, TOP_K_PUMPS))
    return f"""WITH pump_rows AS (
{rows}
),
ranked AS (
  SELECT *, CASE WHEN metric IN ({names})
    THEN row_number() OVER (PARTITION BY metric, window_start ORDER BY value DESC, category, subcategory)
    ELSE 0 END AS place
  FROM pump_rows
)
SELECT metric, window_start, category, subcategory, value FROM ranked WHERE place <= {int(k)}
UNION ALL
SELECT metric, window_start, {_quote(OTHER)} AS category, '' AS subcategory, CAST(sum(value) AS BIGINT) AS value
FROM ranked WHERE place > {int(k)}
GROUP BY metric, window_start"""


def trail_sql(
    latest_seconds: int,
    pumps: tuple[Pump, ...] = PUMPS,
    source: str = "trail",
    earliest_seconds: int | None = None,
    top_k: int | None = None,
) -> str:
    """The single-scan query of every pump over ``source`` (a relation with a ``record``
    column), in Trino's dialect. An eventTime after ``latest_seconds`` is rejected, as the
    normaliser rejects one more than a day ahead of the clock; ``earliest_seconds`` (a
    multiple of every pump's step) keeps only the events from then on, for a re-query of the
    latest windows. With ``top_k``, the ``TOP_K_PUMPS`` keep their ``top_k`` largest rows of
    each window and one ``OTHER`` row for the rest (give them ``top_k_pumps`` windows)."""
    if top_k:
        return _top_k(trail_sql(latest_seconds, pumps, source, earliest_seconds), top_k)
    columns, sets, flags = _plan(pumps)
    user, session = _attribution()
    windows = ",\n    ".join(f"event_seconds - event_seconds % {c[2:]} AS {c}" for c in columns if c.startswith("w_"))
    labels = ",\n    ".join(
        f"{_string_or_null(f.lower())} AS {PUMP_COLUMNS[f]}" for f in PUMP_COLUMNS if f not in DERIVED_COLUMNS
    )
    # Only a pump by region or account (the Athena source's scope) pays for their extraction.
    scoped = any(c in ("awsRegion", "account") for p in pumps for c in (p.category, p.subcategory))
    if scoped:
        labels += f",\n    {_string_or_null('awsregion')} AS region_name,\n    {_account()} AS account_id"
    flag_columns = "".join(f",\n    CASE WHEN {_condition(c)} THEN 1 ELSE 0 END AS {name}" for c, name in flags.items())
    ids = [_grouping_id(columns, members) for members in sets]

    def by_set(values: list[str]) -> str:
        cases = " ".join(f"WHEN {i} THEN {v}" for i, v in zip(ids, values))
        return f"CASE g {cases} END"

    def label(pump: Pump, column: str | None) -> str:
        return f"coalesce({PUMP_COLUMNS[column]}, '')" if column else "''"

    kept = " OR ".join(
        f"(g = {i} AND {flags[p.where]} = 1)" if p.where is not None else f"g = {i}" for i, p in zip(ids, pumps)
    )
    grouping_sets = ", ".join("(" + ", ".join(s) + ")" for s in sets)
    return f"""{_records(source, ACCOUNT_PATH if scoped else None)},
events AS (
  SELECT
    eventid,
    record,
    {windows},
    {labels},
    {user} AS user_name,
    {session} AS session_name
  FROM timed
  WHERE {_valid(latest_seconds, earliest_seconds)}
),
unique_events AS (
  SELECT * FROM (
    SELECT *{flag_columns},
      row_number() OVER (PARTITION BY eventid ORDER BY record) AS copy
    FROM events
  ) AS numbered
  WHERE copy = 1
),
grouped AS (
  SELECT grouping({", ".join(columns)}) AS g, {", ".join(columns)}, count(*) AS n
  FROM unique_events
  GROUP BY GROUPING SETS ({grouping_sets})
)
SELECT
  {by_set([_quote(p.name) for p in pumps])} AS metric,
  {by_set([f"w_{p.step}" for p in pumps])} AS window_start,
  {by_set([label(p, p.category) for p in pumps])} AS category,
  {by_set([label(p, p.subcategory) for p in pumps])} AS subcategory,
  n AS value
FROM grouped
WHERE {kept}"""


# The events table's columns an EventFilter narrows, as the events query names them.
FILTER_COLUMNS = {
    "regions": "region_name",
    "accounts": "account_id",
    "services": "f_eventsource",
    "apis": "f_eventname",
    "users": "user_name",
    "sessions": "session_name",
    "ips": "f_sourceipaddress",
    "error_codes": "f_errorcode",
}


def _one_of(column: str, values) -> str:
    """SQL for ``column`` holding one of ``values``, None meaning a missing value."""
    present = [v for v in values if v is not None]
    parts = [f"{column} IN ({', '.join(map(_quote, present))})"] if present else []
    if len(present) < len(values):
        parts.append(f"{column} IS NULL")
    return "(" + " OR ".join(parts) + ")"


def events_sql(flt, source: str, latest_seconds: int, limit: int, needles=(), conditions=()) -> str:
    """The records (JSON text, oldest first, at most ``limit``) of ``source`` an
    ``metrics.explore.EventFilter`` selects, for a drill-down served by the query engine. The
    rules and attribution are the normaliser's, as in ``trail_sql``; ``needles`` are lower-case
    pieces of text a record must hold (``metrics.query.required_text`` of the filter's search).
    What SQL cannot say exactly (the search itself) is left to ``metrics.explore.matching``
    over the rows returned. ``conditions`` are more SQL conditions on the columns of ``events``
    (as the "(other)" row's of ``collectors.athena_events``)."""
    user, session = _attribution()
    labels = ",\n    ".join(
        f"{_string_or_null(f.lower())} AS {PUMP_COLUMNS[f]}" for f in PUMP_COLUMNS if f not in DERIVED_COLUMNS
    )
    where = []
    if flt.end is not None:
        where.append(f"event_seconds < {int(flt.end)}")
    for criterion, column in FILTER_COLUMNS.items():
        values = getattr(flt, criterion)
        if values:
            where.append(_one_of(column, values))
    for criterion, value in flt.excluded:
        where.append(f"NOT coalesce({_one_of(FILTER_COLUMNS[criterion], (value,))}, FALSE)")
    if flt.event_ids:
        where.append(f"eventid IN ({', '.join(map(_quote, flt.event_ids))})")
    if flt.outcome:
        where.append("f_errorcode IS " + ("NOT NULL" if flt.outcome == "failed" else "NULL"))
    where += [f"strpos(lower(record), {_quote(n)}) > 0" for n in needles]
    where += list(conditions)
    return f"""{_records(source, ACCOUNT_PATH)},
events AS (
  SELECT
    record,
    eventid,
    event_seconds,
    {labels},
    {_string_or_null("awsregion")} AS region_name,
    {_account()} AS account_id,
    {user} AS user_name,
    {session} AS session_name
  FROM timed
  WHERE {_valid(latest_seconds, flt.start)}
)
SELECT record FROM events
WHERE {" AND ".join(where) or "TRUE"}
ORDER BY event_seconds, eventid
LIMIT {int(limit)}"""


DIALECTS = ("trino", "spark", "duckdb")


def transpile(sql: str, dialect: str) -> str:
    """``sql`` (Trino) in ``dialect``, with the fixes sqlglot's own translation needs."""
    if dialect == "trino":
        return sql
    tree = sqlglot.parse_one(sql, read="trino")
    if dialect == "spark":
        tree = tree.transform(_for_spark)
    return tree.sql(dialect=dialect)


def _for_spark(node: exp.Expression) -> exp.Expression:
    """Spark runs in ANSI mode, where one bad value fails the whole query, and sqlglot writes
    Trino's TRY() as the bare expression: make every TRY a safe form. JSON goes through
    Spark's VARIANT, which keeps a value's type (GET_JSON_OBJECT turns 12 and "12" alike into
    text). GROUPING of several columns is GROUPING_ID there."""
    if isinstance(node, exp.Try):
        inner = node.this
        if isinstance(inner, exp.ParseJSON):
            return exp.func("try_parse_json", inner.this)
        if isinstance(inner, exp.FromISO8601Timestamp):
            return exp.TryCast(this=inner.this, to=exp.DataType.build("timestamp"), safe=True)
        if isinstance(inner, exp.Cast):
            return exp.TryCast(this=inner.this, to=inner.to, safe=True)
        raise ValueError(f"no safe Spark form for TRY({inner.sql('trino')})")
    if isinstance(node, exp.JSONFormat) and isinstance(node.this, exp.JSONExtract):
        extract = node.this
        return exp.func("to_json", exp.func("variant_get", extract.this, _path(extract)))
    if isinstance(node, exp.JSONExtractScalar):
        return exp.func("try_variant_get", node.this, _path(node), exp.Literal.string("string"))
    if isinstance(node, exp.Grouping) and len(node.expressions) > 1:
        return exp.func("grouping_id", *node.expressions)
    return node


def _path(node: exp.Expression) -> exp.Expression:
    path = node.expression
    return exp.Literal.string(path.sql(dialect="trino").strip("'")) if not isinstance(path, exp.Literal) else path


# One pump over normalised events (DuckDB's dialect). The table needs columns named as in
# ``metrics.events.COLUMNS`` with ``eventTime`` a timestamp.


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
