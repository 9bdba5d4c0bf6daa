"""The background collector: polls a source, normalises what it returns and feeds the
engine, keeping a health record the dashboard shows.

A source is any object with ``name``, ``poll(now) -> records`` and ``watermark(now)`` (the
time before which it has delivered every event, or None while it cannot say). A failing
poll is recorded and retried with backoff; it never ends the thread.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field

from metrics.buffer import NS_PER_SECOND
from metrics.engine import Engine
from metrics.normalise import Rejects, normalise_all

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
    ):
        self.source = source
        self.engine = engine
        self.interval = interval
        self.clock = clock
        self.store = store  # a collectors.state.StateStore, or None: nothing survives a restart
        self.save_every = save_every
        # Beside the pumps: objects with observe(records, columns) and advance(watermark_s),
        # e.g. rule detections and per-dimension anomaly scores. Their failures are recorded.
        self.analyses = list(analyses)
        self.analysis_errors: dict[str, str] = {}
        self.health = Health(source=source.name, started=clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_save = clock()

    def poll_once(self, now: float | None = None) -> None:
        """One poll, normalise, ingest and learn step; raises what the source raises."""
        now = self.clock() if now is None else now
        if hasattr(self.source, "refresh"):
            self._refresh_windows(now)
            return
        records = self.source.poll(now)
        batch = normalise_all(records, self.health.rejects, origin=self.source.name)
        result = self.engine.ingest(batch, now_ns=int(now * NS_PER_SECOND))
        watermark = self.source.watermark(now)
        if watermark is not None:
            self.engine.advance(int(watermark * NS_PER_SECOND), limit=LEARN_STEP)
        self._analyse(records, result.columns if result.added else None, watermark)
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
        if self.store is not None and self.clock() - self._last_save >= self.save_every:
            self.save()

    def _refresh_windows(self, now: float) -> None:
        """A source of windows counted elsewhere (Athena): it replaces the engine's latest
        windows itself; there are no records to normalise or analyse."""
        rows = self.source.refresh(self.engine, now)
        watermark = self.source.watermark(now)
        if watermark is not None:
            self.engine.advance(int(watermark * NS_PER_SECOND), limit=LEARN_STEP)
        health = self.health
        health.polls += 1
        health.last_poll = health.last_success = self.clock()
        health.last_batch = rows
        health.consecutive_errors = 0
        newest = getattr(self.source, "newest_window", None)
        if newest is not None:
            health.newest_event = max(newest, health.newest_event or newest)
            health.lag_seconds = now - newest

    def _analyse(self, records, columns, watermark) -> None:
        parsed = [r for r in records if isinstance(r, dict)]
        for analysis in self.analyses:
            name = type(analysis).__name__
            try:
                analysis.observe(parsed, columns)
                if watermark is not None:
                    analysis.advance(int(watermark))
                self.analysis_errors.pop(name, None)
            except Exception as error:  # an analysis failing must not lose the events already ingested
                self.analysis_errors[name] = f"{type(error).__name__}: {error}"
                traceback.print_exception(error)

    def save(self) -> None:
        """Writes the buffer and the source's checkpoints; a failure is shown, not raised."""
        try:
            self.store.save(self.engine, self.source)
        except Exception as error:  # a full disk must not stop the collection
            self.store.last_error = f"{type(error).__name__}: {error}"
        self._last_save = self.clock()

    def record_error(self, error: BaseException) -> float:
        """Counts a failed poll for the Status page; returns how long to back off."""
        health = self.health
        health.errors += 1
        health.consecutive_errors += 1
        health.last_poll = health.last_error_at = self.clock()
        health.last_error = f"{type(error).__name__}: {error}"
        traceback.print_exception(error)
        return min(MAX_BACKOFF, self.interval * 2 ** min(health.consecutive_errors, 8))

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.poll_once()
                    wait = self.interval
                except Exception as error:
                    wait = self.record_error(error)
                self._stop.wait(wait)
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
