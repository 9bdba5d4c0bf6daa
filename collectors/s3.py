"""A source that reads the CloudTrail log files of a trail's S3 bucket: history first, then as they arrive.

A trail writes gzipped ``{"Records": [...]}`` files under
``<prefix>AWSLogs/<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/`` (an organisation trail puts
its ``o-...`` id before the account), named
``<account>_CloudTrail_<region>_<yyyymmddThhmmZ>_<random>.json.gz`` after the UTC time that ends
the file. The bucket may hold years of them, so it is never listed whole:

- the account, organisation and region folders are discovered with ``Delimiter="/"`` (unless
  given), once and then every ``rediscover_seconds``;
- each folder is listed one day prefix at a time, from the day of ``start`` (less the delivery
  window) to the day of ``end`` (plus the delivery window) or today; on the first day the
  listing starts after the name of ``start - 15 min``, since an older file holds no event of
  the range;
- objects are read in key order (the order of their name times), at most
  ``max_objects_per_poll`` a poll, so that the first poll of a long history returns soon and
  ``progress`` can be shown;
- once the history is read, every ``relist_seconds`` each folder is listed again from an hour
  before its last listing (so today, and yesterday just after midnight), which finds the
  files delivered since.

Every object is read once: its key goes into ``seen`` after it was read, and a key
in ``seen`` is never read again. The caller may persist ``seen`` between polls and pass it back
to a new source after a restart. Unparsable data comes back as ``Unreadable`` markers (from
``iter_bytes``), and so does an object over ``MAX_OBJECT_BYTES`` or one that failed to download
``READ_ATTEMPTS`` times. ``poll_documents`` gives the objects' bytes unparsed instead, for the
collector to normalise a large poll in one go (``metrics.documents``).

An S3 error on one prefix (AccessDenied, throttling) is kept in ``progress["errors"]`` and that
prefix is listed again on the next poll; the other prefixes carry on. A poll raises only when
nothing at all could be listed (no such bucket, no credentials, or nothing ever listed), so that
the collector records the error and backs off.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from metrics.documents import Document, parsed
from metrics.normalise import Unreadable

# CloudTrail delivers a file within about 15 minutes of the events it holds.
DELIVERY_WINDOW = 15 * 60
# Live listings start this long before the previous listing, for files delivered late.
RELIST_LOOKBACK = 60 * 60
MAX_OBJECT_BYTES = 512 * 1024 * 1024
READ_ATTEMPTS = 3
# Objects downloaded at once: a GetObject mostly waits on the network (botocore releases the
# GIL there), and a trail folder is thousands of small objects.
CONCURRENT_GETS = 8
# Errors that concern the whole bucket or the credentials, not one prefix.
BUCKET_ERRORS = frozenset(
    {
        "NoSuchBucket",
        "InvalidBucketName",
        "AllAccessDisabled",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
    }
)

_ACCOUNT = re.compile(r"\d{12}")
_ORG = re.compile(r"o-[a-z0-9]{10,32}")
_NAME_STAMP = re.compile(r"_(\d{8}T\d{4})Z_[^/]*$")
_ONE_DAY = timedelta(days=1)


def trail_key(
    account: str, region: str, when: float, *, prefix: str = "", org: str | None = None, suffix: str = "abcd"
) -> str:
    """The key CloudTrail gives the log file of ``account`` and ``region`` that ends at ``when``.

    >>> trail_key("111122223333", "us-east-1", 1722587400.0)
    'AWSLogs/111122223333/CloudTrail/us-east-1/2024/08/02/111122223333_CloudTrail_us-east-1_20240802T0830Z_abcd.json.gz'
    """
    moment = datetime.fromtimestamp(when, UTC)
    owner = f"{org}/{account}" if org else account
    return (
        f"{_normal_prefix(prefix)}AWSLogs/{owner}/CloudTrail/{region}/{moment:%Y/%m/%d}/"
        f"{account}_CloudTrail_{region}_{_stamp(when)}Z_{suffix}.json.gz"
    )


@dataclass(frozen=True)
class _Folder:
    """One account's folder of one region: ``.../CloudTrail/<region>/``."""

    prefix: str
    account: str
    region: str

    def day_prefix(self, day: date) -> str:
        return f"{self.prefix}{day:%Y/%m/%d}/"

    def marker(self, since: float) -> str:
        """A key just before the day's first file named at or after ``since`` (minute precision)."""
        return f"{self.day_prefix(_day(since))}{self.account}_CloudTrail_{self.region}_{_stamp(since)}Z"


@dataclass
class _Task:
    """One day prefix of one folder to list."""

    folder: _Folder
    day: date
    start_after: str | None
    history: bool
    attempts: int = 0


class S3TrailSource:
    name = "s3"
    relist_seconds = 60.0
    rediscover_seconds = 3600.0
    max_lists_per_poll = 100  # list requests a poll, so that many empty days do not stall one poll

    def __init__(
        self,
        client,
        bucket: str,
        prefix: str = "",
        *,
        start: float,
        end: float | None = None,
        accounts: tuple[str, ...] = (),
        regions: tuple[str, ...] = (),
        seen: set[str] | None = None,
        max_objects_per_poll: int = 200,
    ) -> None:
        if max_objects_per_poll < 1:
            raise ValueError("max_objects_per_poll must be at least 1")
        self.client = client
        self.bucket = bucket
        self.prefix = _normal_prefix(prefix)
        self.start = start
        self.end = end
        self.accounts = tuple(accounts)
        self.regions = tuple(regions)
        self.max_objects_per_poll = max_objects_per_poll
        self._seen = set() if seen is None else seen
        self._paginator = client.get_paginator("list_objects_v2")
        # Name stamps outside these bounds hold no event of [start, end).
        self._first_stamp = _stamp(start - DELIVERY_WINDOW)
        self._last_stamp = None if end is None else _stamp(end + DELIVERY_WINDOW)

        self._folders: dict[str, _Folder] = {}
        self._discovery: list[tuple[str, str]] = []  # (kind, prefix) still to list
        self._discovered = False
        self._discovered_at: float | None = None
        self._tasks: deque[_Task] = deque()
        self._failed_tasks: list[_Task] = []
        self._pending: deque[tuple[str, int]] = deque()  # (key, size) to read, in listing order
        self._pending_keys: set[str] = set()
        self._failed_reads: list[tuple[str, int]] = []
        self._read_attempts: dict[str, int] = {}
        self._listed_at: dict[str, float] = {}  # folder prefix -> time its listing was complete up to
        self._next_round = 0.0
        self._history_left = 0  # history day prefixes never tried yet
        self._ever_listed = False
        self._ok = 0
        self._failures: list[BaseException] = []

        self._lock = threading.Lock()
        self._errors: dict[str, str] = {}
        self._error_count = 0
        self._objects_listed = 0
        self._objects_read = 0
        self._bytes_read = 0
        self._records = 0
        self._unreadable = 0
        self._days_done = 0
        self._days_total = 0
        self._current_prefix = ""

    @property
    def seen(self) -> set[str]:
        """Keys already read; the set passed in, updated in place during ``poll``."""
        return self._seen

    @property
    def progress(self) -> dict:
        """Where the reading stands, for the Status page.

        ``objects_listed`` new objects found, ``objects_pending`` found and not read yet,
        ``objects_read`` and ``bytes_read`` (as stored), ``records`` and ``unreadable`` markers
        delivered, ``days_done`` of ``days_total`` day prefixes of the history (folders x days),
        ``current_prefix``, ``caught_up``, ``errors`` (prefix or key -> message, for what is
        failing now) and ``error_count`` (every failed request so far).
        """
        with self._lock:
            errors = dict(self._errors)
        return {
            "folders": len(self._folders),
            "objects_listed": self._objects_listed,
            "objects_pending": len(self._pending) + len(self._failed_reads),
            "objects_read": self._objects_read,
            "bytes_read": self._bytes_read,
            "records": self._records,
            "unreadable": self._unreadable,
            "days_done": self._days_done,
            "days_total": self._days_total,
            "current_prefix": self._current_prefix,
            "caught_up": self._caught_up(),
            "errors": errors,
            "error_count": self._error_count,
        }

    def watermark(self, now: float) -> float | None:
        """Every event before this time has been delivered, once the listing has caught up."""
        return now - DELIVERY_WINDOW if self._caught_up() else None

    def poll(self, now: float) -> list[object]:
        """Records (or ``Unreadable`` markers) of the next objects not read yet."""
        items = self.poll_documents(now)
        records = parsed(items)
        self.documents_read(items)
        return records

    def documents_read(self, items) -> None:
        """Counts the records of documents once normalised (``metrics.documents`` fills them in)."""
        for item in items:
            if isinstance(item, Document):
                self._unreadable += item.unreadable
                self._records += item.records - item.unreadable

    def poll_documents(self, now: float) -> list[Document | Unreadable]:
        """What ``poll`` reads, unparsed: the next objects' bytes, and markers of those that could
        not be read; ``documents_read`` is called with them once they are normalised."""
        self._ok = 0
        self._failures = []
        if self._discovered_at is None or (self._caught_up() and now - self._discovered_at >= self.rediscover_seconds):
            self._discovered_at = now
            if ("root", self._root) not in self._discovery:
                self._discovery.append(("root", self._root))
        self._discover(now)

        # What failed on the previous poll is tried again first.
        self._tasks.extendleft(reversed(self._failed_tasks))
        self._failed_tasks = []
        for key, size in reversed(self._failed_reads):
            self._pending.appendleft((key, size))
            self._pending_keys.add(key)
        self._failed_reads = []
        if not self._tasks and not self._pending and now >= self._next_round:
            self._queue_round(now)

        records: list[object] = []
        reads = lists = 0
        with ThreadPoolExecutor(CONCURRENT_GETS, thread_name_prefix="s3-get") as pool:
            while reads < self.max_objects_per_poll:
                if self._pending:
                    wanted = []
                    while self._pending and len(wanted) < min(4 * CONCURRENT_GETS, self.max_objects_per_poll - reads):
                        key, size = self._pending.popleft()
                        self._pending_keys.discard(key)
                        wanted.append((key, size))
                    # Only the downloads run on the pool; what they mean is worked out here, in order.
                    for (key, size), got in zip(wanted, pool.map(self._get, *zip(*wanted))):
                        records.extend(self._fetch(key, size, got))
                    reads += len(wanted)
                elif self._tasks and lists < self.max_lists_per_poll:
                    lists += self._list(self._tasks.popleft(), now)
                else:
                    break
        nothing_listed = not records and not self._ok and self._failures
        if nothing_listed and (not self._ever_listed or any(map(_whole_bucket, self._failures))):
            raise self._failures[-1]
        return records

    # Discovery of the account and region folders.

    @property
    def _root(self) -> str:
        return f"{self.prefix}AWSLogs/"

    def _discover(self, now: float) -> None:
        units, self._discovery = self._discovery, []
        new: list[_Task] = []
        while units:
            kind, prefix = units.pop(0)
            if kind == "account" and self.regions:
                account = prefix.split("/")[-2]
                for region in self.regions:
                    new.extend(self._add_folder(f"{prefix}CloudTrail/{region}/", account, region, now))
                continue
            listed = f"{prefix}CloudTrail/" if kind == "account" else prefix
            try:
                children = self._common_prefixes(listed)
            except (ClientError, BotoCoreError) as error:
                self._listing_failed(listed, error)
                if kind == "root" and self.accounts:
                    # Listing AWSLogs/ may be denied while the given accounts' folders are not;
                    # their organisation folders, if any, stay unknown.
                    self._discovered = True
                    units.extend(("account", f"{prefix}{account}/") for account in self.accounts)
                else:
                    self._discovery.append((kind, prefix))
                continue
            self._listing_ok(listed)
            if kind == "root":
                self._discovered = True
            for child in children:
                part = child[len(listed) : -1]
                if kind == "root" and _ORG.fullmatch(part):
                    units.append(("org", child))
                elif kind in ("root", "org") and _ACCOUNT.fullmatch(part):
                    if not self.accounts or part in self.accounts:
                        units.append(("account", child))
                elif kind == "account":
                    new.extend(self._add_folder(child, prefix.split("/")[-2], part, now))
        if new:
            self._tasks = deque(sorted([*self._tasks, *new], key=lambda t: (t.day, t.folder.prefix)))
            self._next_round = max(self._next_round, now + self.relist_seconds)

    def _common_prefixes(self, prefix: str) -> list[str]:
        self._current_prefix = prefix
        found: list[str] = []
        for page in self._paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            found.extend(entry["Prefix"] for entry in page.get("CommonPrefixes", ()))
        return found

    def _add_folder(self, prefix: str, account: str, region: str, now: float) -> list[_Task]:
        if prefix in self._folders:
            return []
        folder = self._folders[prefix] = _Folder(prefix, account, region)
        until = now if self.end is None else min(now, self.end + DELIVERY_WINDOW)
        tasks = self._day_tasks(folder, self.start - DELIVERY_WINDOW, until, history=True)
        self._history_left += len(tasks)
        self._days_total += len(tasks)
        return tasks

    # Listing day prefixes.

    def _day_tasks(self, folder: _Folder, since: float, until: float, *, history: bool) -> list[_Task]:
        tasks = []
        first, day = _day(since), _day(since)
        while day <= _day(until):
            tasks.append(_Task(folder, day, folder.marker(since) if day == first else None, history))
            day += _ONE_DAY
        return tasks

    def _queue_round(self, now: float) -> None:
        """Lists every folder again from an hour before its last listing, for new files."""
        self._next_round = now + self.relist_seconds
        until = now if self.end is None else min(now, self.end + DELIVERY_WINDOW)
        tasks: list[_Task] = []
        for folder in self._folders.values():
            listed = self._listed_at.get(folder.prefix)
            if listed is None:
                continue  # no day listed yet: its failed history prefixes are being retried
            since = max(self.start - DELIVERY_WINDOW, listed - RELIST_LOOKBACK)
            if since <= until:
                tasks.extend(self._day_tasks(folder, since, until, history=False))
        self._tasks.extend(sorted(tasks, key=lambda t: (t.day, t.folder.prefix)))

    def _list(self, task: _Task, now: float) -> int:
        """Lists one day prefix and queues its new objects; returns the list requests made."""
        prefix = task.folder.day_prefix(task.day)
        self._current_prefix = prefix
        if task.history and task.attempts == 0:
            self._history_left -= 1
        task.attempts += 1
        params = {"Bucket": self.bucket, "Prefix": prefix}
        if task.start_after:
            params["StartAfter"] = task.start_after
        objects: list[dict] = []
        pages = 0
        try:
            for page in self._paginator.paginate(**params):
                pages += 1
                objects.extend(page.get("Contents", ()))
        except (ClientError, BotoCoreError) as error:
            self._listing_failed(prefix, error)
            self._failed_tasks.append(task)
            return max(pages, 1)
        self._listing_ok(prefix)
        if task.history:
            self._days_done += 1
        day_end = datetime.combine(task.day + _ONE_DAY, time(), UTC).timestamp()
        complete_to = min(now, day_end)
        self._listed_at[task.folder.prefix] = max(self._listed_at.get(task.folder.prefix, complete_to), complete_to)
        for entry in objects:
            key = entry["Key"]
            if key in self._seen or key in self._pending_keys or key in self._read_attempts or not self._wanted(key):
                continue
            self._pending.append((key, int(entry.get("Size", 0))))
            self._pending_keys.add(key)
            self._objects_listed += 1
        return max(pages, 1)

    def _wanted(self, key: str) -> bool:
        match = _NAME_STAMP.search(key)
        if match is None:
            return True  # not named like a trail file: read it, the normaliser judges
        stamp = match[1]
        return stamp >= self._first_stamp and (self._last_stamp is None or stamp <= self._last_stamp)

    # Reading objects.

    def _get(self, key: str, size: int) -> bytes | BaseException | None:
        """The object's bytes, the error that stopped reading it, or None when it is not to be
        read (already read, too large): run on the download pool, so it changes nothing."""
        if key in self._seen or size > MAX_OBJECT_BYTES:
            return None
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as error:
            return error

    def _fetch(self, key: str, size: int, got: bytes | BaseException | None) -> list[Document | Unreadable]:
        """What a download (``_get``'s answer) gives, and its bookkeeping."""
        if key in self._seen:
            return []
        origin = f"s3://{self.bucket}/{key}"
        self._current_prefix = key.rpartition("/")[0] + "/"
        if size > MAX_OBJECT_BYTES:
            self._seen.add(key)
            self._unreadable += 1
            return [Unreadable("object too large", origin, f"{size} bytes, the limit is {MAX_OBJECT_BYTES}")]
        if isinstance((error := got), BaseException):
            if _code(error) in ("NoSuchKey", "404"):
                return []  # deleted since it was listed
            self._record_error(key, error)
            attempts = self._read_attempts[key] = self._read_attempts.get(key, 0) + 1
            if attempts < READ_ATTEMPTS:
                self._failed_reads.append((key, size))
                return []
            del self._read_attempts[key]
            self._seen.add(key)
            self._unreadable += 1
            return [Unreadable("unreadable object", origin, _describe(error))]
        self._seen.add(key)
        self._read_attempts.pop(key, None)
        with self._lock:
            self._errors.pop(key, None)
        self._objects_read += 1
        self._bytes_read += len(got)
        return [Document(got, origin)]

    # Bookkeeping.

    def _caught_up(self) -> bool:
        # Failed prefixes do not hold the watermark (a denied one would hold it for ever); an object
        # that failed to download does, for the few polls until it is read or given up.
        return self._discovered and self._history_left == 0 and not self._pending and not self._failed_reads

    def _listing_ok(self, prefix: str) -> None:
        self._ok += 1
        self._ever_listed = True
        with self._lock:
            self._errors.pop(prefix, None)

    def _listing_failed(self, prefix: str, error: BaseException) -> None:
        self._failures.append(error)
        self._record_error(prefix, error)

    def _record_error(self, where: str, error: BaseException) -> None:
        with self._lock:
            self._errors[where] = _describe(error)
            self._error_count += 1


def _normal_prefix(prefix: str) -> str:
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _stamp(when: float) -> str:
    """``yyyymmddThhmm`` in UTC, as in a trail file's name (which adds a ``Z``)."""
    return f"{datetime.fromtimestamp(when, UTC):%Y%m%dT%H%M}"


def _day(when: float) -> date:
    return datetime.fromtimestamp(when, UTC).date()


def _code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def _describe(error: BaseException) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', error)}"
    return f"{type(error).__name__}: {error}"


def _whole_bucket(error: BaseException) -> bool:
    return isinstance(error, BotoCoreError) or _code(error) in BUCKET_ERRORS
