"""Amazon Athena over the trail: the table DDL, and the generated pump query run in a
workgroup, its windows handed to the engine.

Without a queue of new log files, each refresh re-queries the last ``lookback`` seconds (20
minutes: CloudTrail delivers most events within 15) and replaces those windows, so a late
event that arrived since the last query is counted once, in its own window. The first query
after a start covers the whole retention instead, so that a restart (or a stop of any length
within it) shows again every window it showed before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from metrics.engines import latest_seconds, windows_from_frame
from metrics.pumps import FRAME_COLUMNS, PUMPS, Pump, WindowCounts
from metrics.sql import top_k_pumps, trail_sql

# Athena's price page: $5 per TB scanned, with a 10 MB minimum per query.
DOLLARS_PER_TB = 5.0
MINIMUM_BYTES = 10 * 1024**2
LOOKBACK_SECONDS = 20 * 60
CSV_ABOVE_BYTES = 1024 * 1024  # about 17 pages of GetQueryResults of window rows
THROTTLED = ("ThrottlingException", "TooManyRequestsException")
DONE = ("SUCCEEDED", "FAILED", "CANCELLED")
DAYS_KEPT = 7  # of per-day query totals, for the Status page
# The calls of each region and account in 10-minute windows: the app holds no events, so the
# sidebar's scope choices come from these windows.
SCOPE_PUMP = Pump("CallsPerRegionAccount", 600, "awsRegion", "account", title="Calls per region and account")


def source_pumps(top_k: int | None) -> tuple[Pump, ...]:
    """The pumps an Athena source fills: per-user and per-API at one minute, top-K (unless
    ``top_k`` is None), and the scope's."""
    return (*(top_k_pumps() if top_k else PUMPS), SCOPE_PUMP)


def table_ddl(bucket: str, *, database: str, table: str, org: str = "", accounts=(), regions=(), prefix: str = ""):
    """CREATE TABLE for the trail with partition projection: one ``record`` column holding each
    record's JSON text (CloudTrail's input format splits a log file into records), partitioned
    by day, region and, for an organisation trail, account."""
    base = f"s3://{bucket}/{prefix.strip('/') + '/' if prefix.strip('/') else ''}AWSLogs/"
    properties = {
        "projection.enabled": "true",
        "projection.timestamp.type": "date",
        "projection.timestamp.format": "yyyy/MM/dd",
        "projection.timestamp.interval": "1",
        "projection.timestamp.interval.unit": "DAYS",
        "projection.timestamp.range": "2013/01/01,NOW",
    }
    if regions:
        properties.update({"projection.region.type": "enum", "projection.region.values": ",".join(regions)})
    else:
        properties["projection.region.type"] = "injected"
    if org:
        location = f"{base}{org}/"
        template = f"{location}${{account}}/CloudTrail/${{region}}/${{timestamp}}"
        partitions = "account string, region string, `timestamp` string"
        if accounts:
            properties.update({"projection.account.type": "enum", "projection.account.values": ",".join(accounts)})
        else:
            properties["projection.account.type"] = "injected"
    else:
        if len(accounts) != 1:
            raise ValueError("a single-account trail needs exactly one --account")
        location = f"{base}{accounts[0]}/"
        template = f"{location}CloudTrail/${{region}}/${{timestamp}}"
        partitions = "region string, `timestamp` string"
    properties["storage.location.template"] = template
    listed = ",\n  ".join(f"'{k}'='{v}'" for k, v in properties.items())
    return f"""CREATE EXTERNAL TABLE IF NOT EXISTS {database}.{table} (
  record string
)
PARTITIONED BY ({partitions})
ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\u0001'
STORED AS INPUTFORMAT 'com.amazon.emr.cloudtrail.CloudTrailInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION '{location}'
TBLPROPERTIES (
  {listed}
)"""


def window_query(table: str, start: int, latest: int, *, regions=(), accounts=(), pumps=PUMPS, top_k=None) -> str:
    """The pump query over the day partitions from ``start`` to ``latest`` (seconds), for the
    events from ``start`` on."""
    first, last = datetime.fromtimestamp(start, UTC).date(), datetime.fromtimestamp(latest, UTC).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    where = ['"timestamp" IN (' + ", ".join(f"'{d:%Y/%m/%d}'" for d in days) + ")"]
    if regions:
        where.append("region IN (" + ", ".join(f"'{r}'" for r in regions) + ")")
    if accounts:
        where.append("account IN (" + ", ".join(f"'{a}'" for a in accounts) + ")")
    source = f"(SELECT record FROM {table} WHERE {' AND '.join(where)}) AS trail"
    return trail_sql(latest, pumps, source, earliest_seconds=start, top_k=top_k)


@dataclass
class QueryInfo:
    query_id: str
    state: str = "QUEUED"
    bytes_scanned: int = 0
    reason: str = ""
    started: float = 0.0
    seconds: float = 0.0
    at: float = 0.0  # wall clock of the start, seconds

    @property
    def cost_dollars(self) -> float:
        return max(self.bytes_scanned, MINIMUM_BYTES) / 1e12 * DOLLARS_PER_TB


@dataclass
class AthenaStats:
    queries: int = 0
    failures: int = 0
    throttles: int = 0
    csv_reads: int = 0  # results read from their CSV in S3
    last_csv_error: str = ""
    bytes_scanned: int = 0
    cost_dollars: float = 0.0
    last: QueryInfo | None = None
    last_failure: str = ""
    recent: list = field(default_factory=list)
    # UTC day -> [queries, bytes scanned, dollars, failures], the last DAYS_KEPT days
    per_day: dict = field(default_factory=dict)

    def count_day(self, info: QueryInfo) -> None:
        day = datetime.fromtimestamp(info.at, UTC).strftime("%Y-%m-%d")
        totals = self.per_day.setdefault(day, [0, 0, 0.0, 0])
        totals[0] += 1
        totals[1] += info.bytes_scanned
        totals[2] += info.cost_dollars
        totals[3] += info.state != "SUCCEEDED"
        for old in sorted(self.per_day)[:-DAYS_KEPT]:
            del self.per_day[old]


class QueryFailed(RuntimeError):
    pass


class AthenaRunner:
    """Runs one query at a time in a workgroup: start, poll with backoff, page the results."""

    def __init__(
        self,
        client,
        *,
        workgroup: str,
        database: str,
        output_location: str = "",
        sleep=time.sleep,
        s3=None,
        csv_above_bytes: int = CSV_ABOVE_BYTES,
    ):
        self.client = client
        self.workgroup = workgroup
        self.database = database
        self.output_location = output_location
        self.sleep = sleep
        # With an S3 client, a result larger than ``csv_above_bytes`` is read from its CSV in the
        # output location in one GET rather than a GetQueryResults call per 1,000 rows.
        self.s3 = s3
        self.csv_above_bytes = csv_above_bytes
        self.stats = AthenaStats()

    def _call(self, method: str, **kwargs):
        """One API call; throttling (beyond botocore's own retries) waits and tries again."""
        delay = 1.0
        for attempt in range(6):
            try:
                return getattr(self.client, method)(**kwargs)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") not in THROTTLED or attempt == 5:
                    raise
                self.stats.throttles += 1
                self.sleep(delay)
                delay = min(delay * 2, 30.0)

    def run(self, sql: str, timeout: float = 600.0) -> pd.DataFrame:
        """The query's rows as a frame of strings; raises ``QueryFailed`` with Athena's reason."""
        request = {
            "QueryString": sql,
            "WorkGroup": self.workgroup,
            "QueryExecutionContext": {"Database": self.database},
        }
        if self.output_location:
            request["ResultConfiguration"] = {"OutputLocation": self.output_location}
        query_id = self._call("start_query_execution", **request)["QueryExecutionId"]
        info = QueryInfo(query_id, started=time.monotonic(), at=time.time())
        self.stats.queries += 1
        self.stats.last = info
        self.stats.recent = (self.stats.recent + [info])[-20:]
        delay, waited = 0.5, 0.0
        while True:
            execution = self._call("get_query_execution", QueryExecutionId=query_id)["QueryExecution"]
            status = execution["Status"]
            info.state = status["State"]
            info.bytes_scanned = int(execution.get("Statistics", {}).get("DataScannedInBytes", 0))
            if info.state in DONE:
                break
            if waited >= timeout:
                self._call("stop_query_execution", QueryExecutionId=query_id)
                info.state, info.reason = "CANCELLED", f"no answer in {timeout:.0f} s"
                break
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, 10.0)
        info.seconds = time.monotonic() - info.started
        self.stats.bytes_scanned += info.bytes_scanned
        self.stats.cost_dollars += info.cost_dollars
        if info.state != "SUCCEEDED":
            info.reason = info.reason or status.get("StateChangeReason", "") or info.state
        self.stats.count_day(info)
        if info.state != "SUCCEEDED":
            self.stats.failures += 1
            self.stats.last_failure = f"{query_id}: {info.state}: {info.reason}"
            raise QueryFailed(self.stats.last_failure)
        location = execution.get("ResultConfiguration", {}).get("OutputLocation", "")
        frame = self._result_csv(location) if self.s3 is not None and location.startswith("s3://") else None
        return self._results(query_id) if frame is None else frame

    def _result_csv(self, location: str) -> pd.DataFrame | None:
        """The result from its CSV if it is large; None to page it (small, or unreadable there:
        GetQueryResults still has it)."""
        bucket, _, key = location[len("s3://") :].partition("/")
        if not key or key.endswith("/"):
            return None
        try:
            if self.s3.head_object(Bucket=bucket, Key=key)["ContentLength"] <= self.csv_above_bytes:
                return None
            frame = result_csv(self.s3.get_object(Bucket=bucket, Key=key)["Body"])
        except (ClientError, BotoCoreError) as error:
            self.stats.last_csv_error = f"{location}: {error}"
            return None
        self.stats.csv_reads += 1
        return frame

    def _results(self, query_id: str) -> pd.DataFrame:
        rows, header, token = [], None, None
        while True:
            kwargs = {"QueryExecutionId": query_id, "MaxResults": 1000}
            if token:
                kwargs["NextToken"] = token
            page = self._call("get_query_results", **kwargs)
            for row in page["ResultSet"]["Rows"]:
                values = [cell.get("VarCharValue") for cell in row["Data"]]
                if header is None:
                    header = values  # the first row of the first page names the columns
                else:
                    rows.append(values)
            token = page.get("NextToken")
            if not token:
                break
        return pd.DataFrame(rows, columns=header or list(FRAME_COLUMNS))


def result_csv(body) -> pd.DataFrame:
    """Athena's result CSV (every value quoted, a NULL as an empty field) as a frame of strings,
    like the pages of GetQueryResults; an empty field becomes "" as an empty string does."""
    return pd.read_csv(body, dtype=str, keep_default_na=False)


def windows_of_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Athena's text cells as typed window rows."""
    out = frame.reindex(columns=list(FRAME_COLUMNS)).copy()
    out["window_start"] = out["window_start"].astype("int64")
    out["value"] = out["value"].astype("int64")
    for column in ("category", "subcategory"):
        out[column] = out[column].fillna("")
    return out


class AthenaWindows:
    """Re-queries the latest windows and replaces them in the engine."""

    name = "athena"

    def __init__(
        self,
        runner: AthenaRunner,
        table: str,
        *,
        regions=(),
        accounts=(),
        lookback=LOOKBACK_SECONDS,
        every=60.0,
        pumps=PUMPS,
        top_k: int | None = None,
        retention: float | None = None,
    ):
        self.runner = runner
        self.pumps = pumps  # the engine's: ``metrics.sql.top_k_pumps()`` with ``top_k``
        self.top_k = top_k
        # The engine's retention: what the first query re-counts (nothing is kept on disk).
        self.retention = retention
        self.filled = False  # whether a query has covered the retention since the start
        self.every = every  # seconds between two queries: each one is billed
        self.last_query: float | None = None
        self.table = table
        self.regions = tuple(regions)
        self.accounts = tuple(accounts)
        self.lookback = lookback
        self.newest_window: int | None = None

    def refresh(self, engine, now: float) -> int:
        """Replace every window from ``lookback`` seconds ago on (the retention on the first
        query) with Athena's count of them; returns how many window rows came back."""
        if self.last_query is not None and now - self.last_query < self.every:
            return 0
        self.last_query = now
        step = max(p.step for p in self.pumps)
        span = self.lookback if self.filled or self.retention is None else max(self.lookback, self.retention)
        start = int(now) - int(span)
        start -= start % step
        latest = latest_seconds(int(now * 1_000_000_000))
        scope = {"regions": self.regions, "accounts": self.accounts, "pumps": self.pumps, "top_k": self.top_k}
        sql = window_query(self.table, start, latest, **scope)
        frame = windows_of_results(self.runner.run(sql))
        counts = windows_from_frame(frame)
        for pump in self.pumps:
            engine.replace_windows(pump.name, counts.get(pump.name, WindowCounts.empty()), start, latest + 1)
        self.filled = True
        if len(frame):
            self.newest_window = max(self.newest_window or 0, int(frame["window_start"].max()))
        return len(frame)

    def watermark(self, now: float) -> float:
        """Windows older than the re-queried span are final: the forest may learn them."""
        return now - self.lookback

    def status(self, now: float) -> dict:
        return runner_status(self.runner, self.newest_window, now)


def runner_status(runner: AthenaRunner, newest_window: int | None, now: float) -> dict:
    """What the Status page shows of the queries: states, bytes, cost, failures, lag."""
    stats = runner.stats
    last = stats.last
    return {
        "queries": stats.queries,
        "failures": stats.failures,
        "throttles": stats.throttles,
        "last_state": last.state if last else None,
        "last_bytes_scanned": last.bytes_scanned if last else 0,
        "bytes_scanned": stats.bytes_scanned,
        "cost_dollars": stats.cost_dollars,
        "last_failure": stats.last_failure,
        "lag_seconds": None if newest_window is None else now - newest_window,
    }
