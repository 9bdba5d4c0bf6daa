"""The background collector: polls a source, normalises what it returns and feeds the
engine, keeping a health record the dashboard shows.

A source is any object with ``name``, ``poll(now) -> records`` and ``watermark(now)`` (the
time before which it has delivered every event, or None while it cannot say). A failing
poll is recorded and retried with backoff; it never ends the thread.

A source that must confirm what it delivered (a queue deletes a message only once its events
are safe) also has ``ingested() -> mark``, called after each poll's events are in the buffer,
and ``acknowledge(mark)``, called once they are in a saved snapshot (at once when there is no
state folder); ``needs_save()`` may ask for a save before the interval is up, and
``long_polls = True`` says that ``poll`` waits for events itself, so it is called again at once.

A source reading a backlog in bounded batches says ``more`` while it has some left; with
``read_ahead = True`` (its ``poll_documents`` touches nothing but its own progress, and
``checkpoints()`` returns a copy) the collector reads and normalises the next batch on a
second thread while the engine takes the current one: pyarrow's reader and the buffer's
compression let go of the interpreter, so a start's history is read on both cores. The
checkpoints saved meanwhile are those of the batches in the buffer, never of one read ahead.

The slow part of a start (restoring the saved history, the first poll of a large folder or
backfill) runs in the thread too, so that the server answers at once; ``ready`` is set when
it is done and ``starting`` says meanwhile what the thread is doing, for the pages.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from collectors import memory
from metrics.buffer import NS_PER_SECOND
from metrics.documents import normalise_documents
from metrics.engine import Engine
from metrics.normalise import Rejects, normalise_all

LOG = logging.getLogger(__name__)
# The forest learns a long backlog in steps, so that readers never wait long for the lock.
LEARN_STEP = 500
MAX_BACKOFF = 300.0


@dataclass
class Health:
    source: str
    started: float
    polls: int = 0
    last_poll: float | None = None  # when the last poll ended, successful or not
    last_success: float | None = None
    events: int = 0  # new events added to the buffer
    last_batch: int = 0
    duplicates: int = 0
    expired: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    newest_event: float | None = None  # eventTime of the newest event seen, seconds
    lag_seconds: float | None = None  # last poll's time minus the newest eventTime it brought
    restarts: int = 0  # times the thread died and was started again
    last_death: str | None = None
    rejects: Rejects = field(default_factory=Rejects)

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "rejects"}
        data["rejected"] = self.rejects.total
        return data


class _ReadAhead:
    """The next poll, read and normalised on a thread of its own."""

    def __init__(self, read, now: float):
        self._outcome = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(read, now), name="collector-read-ahead", daemon=True)
        self._thread.start()

    def _run(self, read, now: float) -> None:
        try:
            self._outcome = read(now)
        except BaseException as error:  # raised where the poll is taken, as an inline poll's would be
            self._error = error

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._outcome


class Collector:
    def __init__(
        self,
        source,
        engine: Engine,
        *,
        interval: float = 2.0,
        clock=time.time,
        store=None,
        save_every: float = 300.0,
        analyses=(),
        warm_up=None,
        on_ready=None,
        retain_from_newest: bool = False,
    ):
        self.source = source
        # Sources that replay history (files, a trail's S3 objects) count the retention back
        # from the newest event read, not from the wall clock: a folder of last year's trail
        # files keeps its last day instead of dropping everything.
        self.retain_from_newest = retain_from_newest
        self.engine = engine
        self.interval = interval
        self.clock = clock
        self.store = store  # a collectors.state.StateStore, or None: nothing survives a restart
        self.save_every = save_every
        # Beside the pumps: objects with observe(records, columns) and advance(watermark_s, limit),
        # e.g. rule detections and per-dimension anomaly scores. Their failures are recorded.
        # ``records`` are parsed dicts, or after a large poll the events' raw JSON bytes.
        self.analyses = list(analyses)
        self.analysis_errors: dict[str, str] = {}
        self.health = Health(source=source.name, started=clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_save = clock()
        self._unsaved_mark = None  # the source's mark of what is in the buffer but not saved yet
        self.warm_up = warm_up  # called with the collector in the thread, before the first poll
        self.on_ready = on_ready  # called once the warm-up and the first poll are done
        self.ready = threading.Event()
        self.starting: str | None = "Starting the collector"  # None once ready
        self.start_progress: float | None = None  # share of the warm-up done, when it can tell
        self._watermark_ns: int | None = None
        self._ahead: _ReadAhead | None = None
        # The source's checkpoints as of the batches in the buffer while one is read ahead (None:
        # the source's own are); a save never records the offsets of a batch not taken yet.
        self._checkpoints_in: dict | None = None

    def poll_once(self, now: float | None = None) -> None:
        """One poll, normalise, ingest and learn step; raises what the source raises."""
        now = self.clock() if now is None else now
        if hasattr(self.source, "refresh"):
            self._refresh_windows(now)
            return
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            batch, records, later = ahead.result()
        else:
            batch, records, later = self._read(now)
        checkpoints = None
        if later and getattr(self.source, "read_ahead", False):
            checkpoints = self.source.checkpoints()  # this batch's, before the next read moves them
            self._ahead = _ReadAhead(self._read, self.clock())
        result = self.engine.ingest(batch, now_ns=self._retention_clock_ns(batch, now))
        self._checkpoints_in = checkpoints
        self._ingested()
        watermark = self._watermark(batch, now)
        # More of a backlog to read: the forests and the analyses that can wait do (they catch up
        # between polls), and the charts fill first.
        if watermark is not None:
            self._watermark_ns = int(watermark * NS_PER_SECOND)
            self.engine.advance(self._watermark_ns, limit=0 if later else LEARN_STEP)
        # The columnar path hands over the events' raw JSON, nothing else to filter out.
        observed = records if records is batch.raws else [r for r in records if isinstance(r, dict)]
        self._analyse(observed, result.columns if result.added else None, watermark, batch, result.positions, later)
        health = self.health
        health.polls += 1
        health.last_poll = health.last_success = self.clock()
        health.events += result.added
        health.last_batch = result.added
        health.duplicates += result.duplicates
        health.expired += result.expired
        health.consecutive_errors = 0
        if len(batch):
            newest = max(batch.column("eventTime")) / NS_PER_SECOND
            health.newest_event = max(newest, health.newest_event or newest)
            health.lag_seconds = now - newest
        if self.store is not None and (self.clock() - self._last_save >= self.save_every or self._save_asked()):
            self.save()

    def _read(self, now: float):
        """(the poll's events, what the analyses observe, whether the source has more)."""
        batch, records = self._poll_and_normalise(now)
        return batch, records, bool(getattr(self.source, "more", False))

    @property
    def more(self) -> bool:
        """Whether a backlog is still being read: the source has more, or a batch read ahead
        waits for the engine."""
        return self._ahead is not None or bool(getattr(self.source, "more", False))

    def backlog_progress(self) -> float | None:
        """The share of a history read, while the source can tell (None otherwise); below 1
        while the batch read ahead is still going into the engine."""
        progress = getattr(self.source, "progress", None)
        share = progress() if callable(progress) else None
        if self._ahead is not None:
            return min(share if share is not None else 0.99, 0.99)
        return share

    def _poll_and_normalise(self, now: float):
        """(the poll's events, what the analyses observe). A source that can hand over its files
        unparsed (``poll_documents``) has a large poll normalised in one go, and the analyses
        then get the events' raw JSON instead of parsed records."""
        documents = getattr(self.source, "poll_documents", None)
        if not callable(documents):
            records = self.source.poll(now)
            return normalise_all(records, self.health.rejects, origin=self.source.name), records
        items = documents(now)
        batch, records = normalise_documents(items, self.health.rejects, origin=self.source.name)
        counted = getattr(self.source, "documents_read", None)
        if counted is not None:
            counted(items)
        return batch, records

    def _ingested(self) -> None:
        hook = getattr(self.source, "ingested", None)
        if hook is None:
            return
        mark = hook()
        if self.store is None:
            self.source.acknowledge(mark)
        else:
            self._unsaved_mark = mark

    def _save_asked(self) -> bool:
        asked = getattr(self.source, "needs_save", None)
        # At most one early save a second: a save that keeps failing must not run on every poll.
        return bool(asked and self.clock() - self._last_save >= 1.0 and asked())

    def _retention_clock_ns(self, batch, now: float) -> int:
        """The time the retention counts back from: now, or the newest event read so far."""
        if not self.retain_from_newest:
            return int(now * NS_PER_SECOND)
        newest = max(batch.column("eventTime")) if len(batch) else None
        if self.health.newest_event is not None:
            held = int(self.health.newest_event * NS_PER_SECOND)
            newest = held if newest is None else max(newest, held)
        return int(now * NS_PER_SECOND) if newest is None else newest

    def _watermark(self, batch, now: float) -> float | None:
        """The source's watermark; for history, no later than the newest event read, so that the
        forests do not learn the months of silence between last year's files and today."""
        watermark = self.source.watermark(now)
        if watermark is None or not self.retain_from_newest:
            return watermark
        newest = self._retention_clock_ns(batch, now) / NS_PER_SECOND
        return min(watermark, newest)

    @property
    def retention_reference(self) -> float | None:
        """Seconds the retention counts back from, None for the wall clock."""
        return self.health.newest_event if self.retain_from_newest else None

    def _refresh_windows(self, now: float) -> None:
        """A source of windows counted elsewhere (Athena): it replaces the engine's latest
        windows itself; there are no records to normalise or analyse."""
        rows = self.source.refresh(self.engine, now)
        self.engine.expire(int(now * NS_PER_SECOND))
        watermark = self.source.watermark(now)
        if watermark is not None:
            self._watermark_ns = int(watermark * NS_PER_SECOND)  # a backlog is learned between polls
            self.engine.advance(self._watermark_ns, limit=LEARN_STEP)
        health = self.health
        health.polls += 1
        health.last_poll = health.last_success = self.clock()
        health.last_batch = rows
        health.consecutive_errors = 0
        newest = getattr(self.source, "newest_window", None)
        if newest is not None:
            health.newest_event = max(newest, health.newest_event or newest)
            health.lag_seconds = now - newest

    def _analyse(self, records, columns, watermark, batch=None, positions=None, later=False) -> None:
        for analysis in self.analyses:
            name = type(analysis).__name__
            try:
                # An analysis that reads the batch gets it with the rows the engine took as new.
                if batch is not None and later and hasattr(analysis, "observe_later"):
                    analysis.observe_later(batch, positions)
                elif batch is not None and hasattr(analysis, "observe_batch"):
                    analysis.observe_batch(batch, positions)
                else:
                    analysis.observe(records, columns)
                if watermark is not None:
                    analysis.advance(int(watermark), limit=0 if later else LEARN_STEP)
                self.analysis_errors.pop(name, None)
            except Exception as error:  # an analysis failing must not lose the events already ingested
                self.analysis_errors[name] = f"{type(error).__name__}: {error}"
                LOG.warning("the %s analysis failed (the Status page shows it)", name, exc_info=error)

    def save(self) -> None:
        """Writes the buffer and the source's checkpoints; a failure is shown, not raised."""
        mark = self._unsaved_mark
        try:
            self.store.save(self.engine, self.source, checkpoints=self._checkpoints_in)
        except Exception as error:  # a full disk must not stop the collection
            self.store.last_error = f"{type(error).__name__}: {error}"
        else:
            if mark is not None:
                self.source.acknowledge(mark)
        self._last_save = self.clock()

    def record_error(self, error: BaseException) -> float:
        """Counts a failed poll for the Status page; returns how long to back off."""
        health = self.health
        health.errors += 1
        health.consecutive_errors += 1
        health.last_poll = health.last_error_at = self.clock()
        health.last_error = f"{type(error).__name__}: {error}"
        # One line per failed poll on the server's log, the traceback only for the first of a run
        # of failures: a source down for hours would otherwise fill the terminal.
        LOG.warning(
            "poll of %s failed (%d in a row): %s",
            self.source.name,
            health.consecutive_errors,
            health.last_error,
            exc_info=error if health.consecutive_errors == 1 else None,
        )
        return min(MAX_BACKOFF, self.interval * 2 ** min(health.consecutive_errors, 8))

    def _start_up(self) -> float:
        """The warm-up and the first poll; a failure is recorded like a failed poll, and the
        collector is ready all the same (the Status page shows why it has no data)."""
        wait = self.interval
        try:
            if self.warm_up is not None:
                self.starting = "Restoring the saved history"
                self.warm_up(self)
            self.starting, self.start_progress = "Reading the history", None
            self.poll_once()
        except Exception as error:
            wait = self.record_error(error)
        self.starting, self.start_progress = None, 1.0
        if self.on_ready is not None:
            self.on_ready()
        self.ready.set()
        return wait

    def reading_backlog(self) -> bool:
        """Whether the start is still restoring or reading history (the source has more)."""
        return self.starting is not None or self.more

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.ready.wait(timeout)

    def catch_up(self) -> bool:
        """One more step of a backlog: the forest learns a step of months of history read from
        files, each analysis that waited reads one batch. Returns whether some remains."""
        watermark = self._watermark_ns
        more = watermark is not None and self.engine.advance(watermark, limit=LEARN_STEP) == LEARN_STEP
        for analysis in self.analyses:
            name = type(analysis).__name__
            try:
                if watermark is not None:
                    learned = analysis.advance(watermark // NS_PER_SECOND, limit=LEARN_STEP) or 0
                    more = learned >= LEARN_STEP or more
                if hasattr(analysis, "catch_up"):
                    more = analysis.catch_up() or more
            except Exception as error:  # as in _analyse: shown, the collection goes on
                self.analysis_errors[name] = f"{type(error).__name__}: {error}"
                LOG.warning("the %s analysis failed (the Status page shows it)", name, exc_info=error)
        return more

    def run(self) -> None:
        try:
            if not self.ready.is_set():  # (a thread started again after a death skips it)
                self._stop.wait(self._start_up())
            backlog = True
            while not self._stop.is_set():
                try:
                    self.poll_once()
                    # A source reading a backlog in bounded batches (``more``) goes on at once, and so
                    # does one whose ``poll`` waits for events itself.
                    more = self.more
                    if backlog and not more:
                        memory.trim()  # the backlog's parsed records are garbage now
                    backlog = more
                    wait = 0 if more or getattr(self.source, "long_polls", False) else self.interval
                except Exception as error:
                    wait = self.record_error(error)
                # Between polls, the forest learns a backlog in steps instead of one step a poll.
                until = self.clock() + wait
                while not self._stop.is_set() and self.clock() < until and self.catch_up():
                    pass
                self._stop.wait(max(0.0, until - self.clock()))
        except BaseException as error:
            self.health.last_death = f"{type(error).__name__}: {error}"
            raise

    def ensure_running(self) -> bool:
        """Starts the thread again if it died; returns whether it had to."""
        if self._stop.is_set() or self._thread is None or self._thread.is_alive():
            return False
        self.health.restarts += 1
        self.health.last_death = self.health.last_death or "the collector thread ended"
        self.start()
        return True

    def start(self) -> Collector:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name=f"collector-{self.source.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.store is not None:
            self.save()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
