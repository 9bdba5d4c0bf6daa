"""The anomaly forest of a batch run, learning in a process of its own while the events are
still being read.

krcf holds the GIL for every point it scores or learns, so a forest on a thread only takes
turns with the readers and formatters; and learning a day of ten-second windows takes seconds,
as long as reading a million events. So the reader offers each window's total as soon as it
looks complete (the input so far is in time order and the newest event is ``LATE_SECONDS``
past the window), and at the end it sends the whole final series. The worker compares: the
windows it learned from totals that turned out final keep their scores; from the first total
that changed, it goes back to a checkpoint (a copy of the forest) and learns on from the final
series. The scores are therefore exactly those ``Engine.finish()`` gives whatever the input's
order: a wrong guess only costs time.

    python -m metrics.batch_forest ENGINE SEED STEP   (the worker; spoken to over stdin/stdout)
"""

from __future__ import annotations

import os
import queue
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from metrics.anomaly import AnomalyScorer, make_detector

LATE_SECONDS = 900  # CloudTrail delivers within about 15 minutes; ordered input is far tighter
CHECKPOINT_WINDOWS = 256  # the first spacing of checkpoints; doubled whenever they grow too many
MAX_CHECKPOINTS = 12  # each a copy of the forest, several MB
LEARN_SLICE = 64  # windows learned between looks at the parent's messages

_HEADER = struct.Struct("<cqq")  # kind, first window (seconds), number of values
_OFFER, _UNORDERED, _FINAL = b"O", b"U", b"F"


class BatchForest:
    """The reader's side: ``offer`` after each ingest, ``send_final`` once everything is in,
    then ``scores()``. Any failure of the worker gives None there: the caller then learns the
    series itself."""

    def __init__(self, anomaly_engine: str, seed: int = 0, step: int = 10):
        self.step = step
        self.sent: int | None = None  # windows before this were offered
        self.ordered = True
        self.length = 0
        self.failure = ""  # why the worker gave no scores, if it did not
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "metrics.batch_forest", anomaly_engine, str(seed), str(step)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=_finding_this_package(),
            )
        except OSError as error:
            self.process, self.failure = None, f"could not start: {error}"

    def offer(self, totals, low_ns: int, high_ns: int) -> None:
        """The engine has just taken events dated [low_ns, high_ns]; ``totals`` is its
        TotalCalls state (``first`` and ``total(window)``)."""
        if self.process is None or not self.ordered or totals.first is None:
            return
        step = self.step
        low, high = low_ns // 1_000_000_000, high_ns // 1_000_000_000
        if self.sent is not None and low < self.sent:
            # An event in a window already offered: the input is not in time order. Stop
            # guessing; the final series puts the forest right.
            self.ordered = False
            self._send(_UNORDERED, 0, [])
            return
        start = totals.first if self.sent is None else self.sent
        until = (high - LATE_SECONDS) // step * step
        if until > start:
            self._send(_OFFER, start, [totals.total(w) for w in range(start, until, step)])
            self.sent = until

    def send_final(self, totals) -> None:
        """Every event is in: the whole series, from its first window to its last."""
        if totals.first is None:
            self.close()
            return
        self.length = (totals.last - totals.first) // self.step + 1
        values = [totals.total(w) for w in range(totals.first, totals.last + 1, self.step)]
        self._send(_FINAL, totals.first, values)
        if self.process is not None:
            self.process.stdin.close()

    def scores(self) -> list[float] | None:
        """The score of every window of the final series, or None if the worker failed."""
        if self.process is None:
            return None
        try:
            data = self.process.stdout.read(8 * self.length)
            self.process.wait()
        except OSError:
            data = b""
        if self.process.returncode != 0 or len(data) != 8 * self.length:
            self.failure = f"exit status {self.process.returncode}, {len(data) // 8} of {self.length} scores"
            return None
        return np.frombuffer(data, dtype=np.float64).tolist()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _send(self, kind: bytes, first: int, values: list[int]) -> None:
        if self.process is None:
            return
        try:
            self.process.stdin.write(_HEADER.pack(kind, first, len(values)))
            self.process.stdin.write(np.asarray(values, dtype=np.int64).tobytes())
            self.process.stdin.flush()
        except OSError as error:  # the worker died: the caller will learn the series itself
            self.failure = f"stopped reading: {error}"
            self.close()


def _finding_this_package() -> dict:
    """The environment, with this package's folder first on the path (the caller may have found
    it through a ``sys.path`` of its own)."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


# --- the worker ---------------------------------------------------------------------------


class _Learner:
    """The worker's forest, the series it has learned from, and checkpoints to go back to."""

    def __init__(self, anomaly_engine: str, seed: int, step: int):
        self.make = lambda: AnomalyScorer(make_detector(anomaly_engine, seed), step=step)
        self.step = step
        self.scorer = self.make()
        self.first: int | None = None
        self.series: list[int] = []
        self.checkpoints: list[tuple[int, object]] = []  # (next window, copy of the detector)
        self.every = CHECKPOINT_WINDOWS

    def total(self, window: int) -> int:
        index = (window - self.first) // self.step
        return self.series[index] if 0 <= index < len(self.series) else 0

    def pending(self) -> bool:
        return self.first is not None and self._learned() < len(self.series)

    def _learned(self) -> int:
        return 0 if self.scorer.next is None else (self.scorer.next - self.first) // self.step

    def learn(self, limit: int | None = None) -> None:
        """Learn up to ``limit`` more windows of the series, checkpointing on the way."""
        end = self.first + len(self.series) * self.step
        left = limit
        while self.pending() and (left is None or left > 0):
            done = self._learned()
            if done % self.every == 0 and done and (not self.checkpoints or self.checkpoints[-1][0] < done):
                self.checkpoints.append((done, self.scorer.detector.copy()))
                if len(self.checkpoints) > MAX_CHECKPOINTS:
                    self.every *= 2
                    self.checkpoints = [c for c in self.checkpoints if c[0] % self.every == 0]
            chunk = self.every - done % self.every
            if left is not None:
                chunk = min(chunk, left)
                left -= chunk
            self.scorer.advance(self.total, self.first, min(end, self.first + (done + chunk) * self.step))

    def final(self, first: int, values: np.ndarray) -> list[float]:
        """The scores of the final series, keeping what was learned from totals it confirms."""
        values = values.tolist()
        if first != self.first:
            self.scorer, self.checkpoints, self.every = self.make(), [], CHECKPOINT_WINDOWS
        else:
            agreed = next((i for i, (a, b) in enumerate(zip(self.series, values)) if a != b), len(self.series))
            agreed = min(agreed, len(values))
            if self._learned() > agreed:
                self._rewind(agreed)
        self.first, self.series = first, values
        self.learn()
        return [self.scorer.scores[first + i * self.step] for i in range(len(values))]

    def _rewind(self, windows: int) -> None:
        """Back to the forest as it was before learning more than ``windows`` windows."""
        kept = [c for c in self.checkpoints if c[0] <= windows]
        self.checkpoints = kept
        if not kept:
            self.scorer = self.make()
            return
        done, detector = kept[-1]
        self.scorer.detector = detector.copy()
        self.scorer.next = self.first + done * self.step


def _read_messages(fd: int, messages: queue.Queue) -> None:
    """Drains the parent's pipe at once, so its writes never wait for the forest. Plain
    ``os.read``: a buffered stream's lock held by this thread would stall the exit."""
    while True:
        header = _read_exactly(fd, _HEADER.size)
        if header is None:
            messages.put(None)
            return
        kind, first, count = _HEADER.unpack(header)
        data = _read_exactly(fd, 8 * count)
        if data is None:
            messages.put(None)
            return
        messages.put((kind, first, np.frombuffer(data, dtype=np.int64)))


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def work(anomaly_engine: str, seed: int, step: int, stdin_fd: int, stdout) -> int:
    learner = _Learner(anomaly_engine, seed, step)
    messages: queue.Queue = queue.Queue()
    threading.Thread(target=_read_messages, args=(stdin_fd, messages), daemon=True).start()
    guessing = True
    while True:
        try:
            message = messages.get(block=not (guessing and learner.pending()))
        except queue.Empty:
            learner.learn(LEARN_SLICE)
            continue
        if message is None:
            return 1  # the parent went away without a final series
        kind, first, values = message
        if kind == _OFFER:
            if learner.first is None:
                learner.first = first
            learner.series.extend(values.tolist())
        elif kind == _UNORDERED:
            guessing = False
        elif kind == _FINAL:
            scores = learner.final(first, values)
            stdout.write(np.asarray(scores, dtype=np.float64).tobytes())
            stdout.flush()
            return 0


if __name__ == "__main__":
    engine_name, seed_text, step_text = sys.argv[1:4]
    sys.exit(work(engine_name, int(seed_text), int(step_text), sys.stdin.fileno(), sys.stdout.buffer))
