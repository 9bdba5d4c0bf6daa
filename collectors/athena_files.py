"""Athena over only the trail's new log files: their keys come through an SQS queue (the trail's
SNS notification subscribed to it, or the bucket's S3 event notifications, directly or through
SNS), and one query aggregates exactly those files (``"$path" IN (...)``, with their day, region
and account partitions so that Athena reads nothing else). Each file is counted once, whatever
its events' times: an event delivered an hour late lands in its own window when its file
arrives, and the windows are added to the engine, not replaced.

A message is deleted only once the windows of its files are on disk (with a state folder,
``collectors.athena_state``) and in the engine, so a restart loses no file and counts none
twice; the windows and the files counted come back from the folder at the start. A failed query
leaves its messages to come back after their visibility timeout (the queue's redrive policy
ends a file that fails every time). A message that names no log file the query can read
(unreadable, or of another kind) is counted as poison, kept as a sample, and deleted.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import astuple, dataclass
from urllib.parse import unquote_plus

import orjson
import pandas as pd

from collectors.athena import LOOKBACK_SECONDS, AthenaRunner, windows_of_results
from collectors.athena_state import WindowLog
from metrics.engines import latest_seconds, windows_from_frame
from metrics.pumps import FRAME_COLUMNS, PUMPS, WindowCounts
from metrics.sql import _quote, trail_sql

# AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/yyyy/mm/dd/FILE.json.gz; digests and other objects
# are not log files.
LOG_FILE = re.compile(
    r"(?:^|/)AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/CloudTrail/(?P<region>[a-z0-9-]+)/"
    r"(?P<day>\d{4}/\d{2}/\d{2})/[^/]+\.json(?:\.gz)?$"
)
FILES_PER_QUERY = 500  # Athena takes a query of up to 256 KB: 500 paths of ~130 characters
MESSAGES_PER_RECEIVE = 10  # SQS's most
REMEMBERED_FILES = 200_000  # keys already counted, so that a message delivered twice counts once
POISON_SAMPLES = 5


class Poison(ValueError):
    """A message that names no log file."""


@dataclass(frozen=True)
class LogFile:
    bucket: str
    key: str

    @property
    def path(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def partition(self) -> re.Match:
        return LOG_FILE.search(self.key)


def _text(value) -> str:
    if not isinstance(value, str) or not value:
        raise Poison("a bucket or key that is not text")
    return value


def log_files(body: str) -> list[LogFile]:
    """The objects a message announces: a CloudTrail SNS notification (``s3Bucket`` and
    ``s3ObjectKey``), an S3 event notification (``Records``) or EventBridge's "Object Created",
    each raw or in SNS's envelope. S3's test event announces nothing. Raises ``Poison``."""
    try:
        document = orjson.loads(body)
        if isinstance(document, dict) and document.get("Type") == "Notification":
            document = orjson.loads(document.get("Message"))
    except (orjson.JSONDecodeError, TypeError) as error:
        raise Poison(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise Poison("not a JSON object")
    if document.get("Event") == "s3:TestEvent":
        return []
    if "s3ObjectKey" in document:
        keys = document["s3ObjectKey"]
        if not isinstance(keys, list):
            raise Poison("s3ObjectKey is not a list")
        bucket = _text(document.get("s3Bucket"))
        return [LogFile(bucket, _text(key)) for key in keys]
    if isinstance(document.get("Records"), list):
        files = []
        for record in document["Records"]:
            if not isinstance(record, dict) or not str(record.get("eventName", "")).startswith("ObjectCreated"):
                continue
            s3 = record.get("s3") if isinstance(record.get("s3"), dict) else {}
            bucket, obj = s3.get("bucket") or {}, s3.get("object") or {}
            if not isinstance(bucket, dict) or not isinstance(obj, dict):
                raise Poison("an S3 event without bucket or object")
            files.append(LogFile(_text(bucket.get("name")), unquote_plus(_text(obj.get("key")))))
        return files
    if document.get("detail-type") == "Object Created" and isinstance(document.get("detail"), dict):
        detail = document["detail"]
        bucket, obj = detail.get("bucket") or {}, detail.get("object") or {}
        if not isinstance(bucket, dict) or not isinstance(obj, dict):
            raise Poison("an Object Created event without bucket or object")
        return [LogFile(_text(bucket.get("name")), _text(obj.get("key")))]
    raise Poison("neither a CloudTrail notification nor an S3 event")


def new_files_query(table: str, files: list[LogFile], latest: int, pumps=PUMPS, top_k: int | None = None) -> str:
    """The pump query over exactly ``files``, reading only their partitions."""
    matches = [f.partition for f in files]
    days = sorted({m["day"] for m in matches})
    regions = sorted({m["region"] for m in matches})
    where = [
        '"timestamp" IN (' + ", ".join(map(_quote, days)) + ")",
        "region IN (" + ", ".join(map(_quote, regions)) + ")",
    ]
    if all(m["org"] for m in matches):  # an organisation trail's table has an account partition
        where.append("account IN (" + ", ".join(map(_quote, sorted({m["account"] for m in matches}))) + ")")
    where.append('"$path" IN (' + ", ".join(_quote(f.path) for f in files) + ")")
    source = f"(SELECT record FROM {table} WHERE {' AND '.join(where)}) AS trail"
    return trail_sql(latest, pumps, source, top_k=top_k)


@dataclass
class QueueStats:
    messages: int = 0
    files: int = 0  # log files counted
    repeated: int = 0  # files announced again after they were counted
    ignored: int = 0  # objects that are not log files of the table's regions and accounts
    poison: int = 0
    delete_failures: int = 0
    waiting: int = 0  # files received, not yet counted (a failed query)


class NewFileWindows:
    """Counts each new log file once, as its key arrives on the queue."""

    name = "athena"

    def __init__(
        self,
        runner: AthenaRunner,
        table: str,
        sqs,
        queue_url: str,
        *,
        regions=(),
        accounts=(),
        lookback=LOOKBACK_SECONDS,
        every=60.0,
        query_timeout=600.0,
        visibility_timeout: int | None = None,
        files_per_query=FILES_PER_QUERY,
        pumps=PUMPS,
        top_k: int | None = None,
        state_dir=None,
        retention: float | None = None,
    ):
        self.runner = runner
        self.pumps = pumps  # the engine's: ``metrics.sql.top_k_pumps()`` with ``top_k``
        self.top_k = top_k
        self.table = table
        # Without a state folder the windows and the files counted live in memory only.
        self.log = None
        if state_dir is not None:
            self.log = WindowLog(state_dir, retention_seconds=retention, remembered=REMEMBERED_FILES)
        self.restored: dict | None = None  # what the start brought back from the folder
        self.sqs = sqs
        self.queue_url = queue_url
        self.regions = tuple(regions)
        self.accounts = tuple(accounts)
        self.lookback = lookback  # how late the forest waits for a file: CloudTrail delivers in ~15 min
        self.every = every  # each query is billed (10 MB at least): one a minute unless the queue is deep
        self.query_timeout = query_timeout
        # Longer than a query may take: a message must not come back while its files are counted.
        self.visibility_timeout = int(query_timeout + 120) if visibility_timeout is None else visibility_timeout
        self.files_per_query = files_per_query
        self.last_query: float | None = None
        self.more = False  # the last drain was cut at files_per_query: go on at once
        self.newest_window: int | None = None
        self.stats = QueueStats()
        self.poison_samples: list[str] = []
        self._counted: OrderedDict[str, None] = OrderedDict()

    def refresh(self, engine, now: float) -> int:
        """Receives the announced files, counts them in one query, adds the windows, then deletes
        their messages; returns how many window rows came back."""
        if self.restored is None:
            self._restore(engine)
        if not self.more and self.last_query is not None and now - self.last_query < self.every:
            return 0
        self.last_query = now
        counted, idle, files = self._drain()
        self._delete(idle)  # poison, repeats, other objects: nothing to wait for
        self.more = len(files) >= self.files_per_query
        self.stats.waiting = len(files)
        if not files:
            return 0
        latest = latest_seconds(int(now * 1_000_000_000))
        sql = new_files_query(self.table, files, latest, self.pumps, self.top_k)
        frame = windows_of_results(self.runner.run(sql, timeout=self.query_timeout))
        if self.log is not None:  # first on disk: a failed write leaves the messages to come back
            self.log.append(frame, [f.path for f in files], now)
        for metric, counts in windows_from_frame(frame).items():
            engine.add_windows(metric, counts)
        self._remember(f.path for f in files)
        self.stats.files += len(files)
        self.stats.waiting = 0
        if len(frame):
            self.newest_window = max(self.newest_window or 0, int(frame["window_start"].max()))
        self._delete(counted)
        return len(frame)

    def _remember(self, paths) -> None:
        for path in paths:
            self._counted[path] = None
        while len(self._counted) > REMEMBERED_FILES:
            self._counted.popitem(last=False)

    def _restore(self, engine) -> None:
        """The windows and the files counted before a restart, back from the state folder."""
        windows, files = self.log.load() if self.log is not None else (pd.DataFrame(columns=list(FRAME_COLUMNS)), [])
        for metric, counts in windows_from_frame(windows).items():
            if metric in engine.states:
                # Saved under another INSIGHTS_ATHENA_TOP_K, a metric's windows had another
                # length: each row goes to the window of today's length that holds its start.
                step = engine.states[metric].pump.step
                aligned = WindowCounts(counts.window - counts.window % step, *astuple(counts)[1:])
                engine.add_windows(metric, aligned)
        self._remember(files)
        if len(windows):
            self.newest_window = int(windows["window_start"].max())
        self.restored = {"windows": len(windows), "files": len(files)}

    def _drain(self) -> tuple[list[str], list[str], list[LogFile]]:
        """Messages until the queue is empty or they name ``files_per_query`` new files: the
        receipt handles of those naming new files, of the others, and the new files."""
        counted, idle, files, seen = [], [], [], set()
        while len(files) < self.files_per_query:
            reply = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=MESSAGES_PER_RECEIVE,
                WaitTimeSeconds=0,
                VisibilityTimeout=self.visibility_timeout,
            )
            messages = reply.get("Messages", [])
            for message in messages:
                self.stats.messages += 1
                try:
                    announced = log_files(message.get("Body", ""))
                except Poison as error:
                    self._poison(message, str(error))
                    idle.append(message["ReceiptHandle"])
                    continue
                new = 0
                for f in announced:
                    if f.path in self._counted or f.path in seen:
                        self.stats.repeated += 1
                    elif self._wanted(f):
                        seen.add(f.path)
                        files.append(f)
                        new += 1
                    else:
                        self.stats.ignored += 1
                (counted if new else idle).append(message["ReceiptHandle"])
            if len(messages) < MESSAGES_PER_RECEIVE:
                break
        return counted, idle, files

    def _wanted(self, f: LogFile) -> bool:
        match = f.partition
        return (
            match is not None
            and (not self.regions or match["region"] in self.regions)
            and (not self.accounts or match["account"] in self.accounts)
        )

    def _poison(self, message: dict, reason: str) -> None:
        self.stats.poison += 1
        sample = f"{message.get('MessageId', '?')}: {reason}: {message.get('Body', '')[:200]}"
        self.poison_samples = (self.poison_samples + [sample])[-POISON_SAMPLES:]

    def _delete(self, handles: list[str]) -> None:
        for start in range(0, len(handles), MESSAGES_PER_RECEIVE):
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles[start : start + 10])]
            reply = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            # A message not deleted comes back; its files are remembered and not counted again.
            self.stats.delete_failures += len(reply.get("Failed", []))

    def watermark(self, now: float) -> float:
        """A file arrives within ``lookback`` of its events: older windows are final enough for the
        forest (a later file still adds to its windows)."""
        return now - self.lookback

    def status(self, now: float) -> dict:
        from collectors.athena import runner_status

        info = runner_status(self.runner, self.newest_window, now)
        stats = self.stats
        info["new_files"] = {
            "messages": stats.messages,
            "files": stats.files,
            "repeated": stats.repeated,
            "ignored": stats.ignored,
            "poison": stats.poison,
            "poison_samples": list(self.poison_samples),
            "delete_failures": stats.delete_failures,
            "waiting": stats.waiting,
            "restored_windows": (self.restored or {}).get("windows", 0),
            "restored_files": (self.restored or {}).get("files", 0),
            "state_error": self.log.last_error if self.log is not None else "",
        }
        return info


def make_queue_client(queue_url: str):
    """An SQS client for the queue's region, with standard retries (``eventbridge.make_client``)."""
    from collectors import eventbridge

    return eventbridge.make_client(queue_url)
