"""Random Cut Forest anomaly scores over the 10-second TotalCalls series.

Two engines share one small contract, after River's anomaly detectors:

- ``score_one(x) -> float`` scores a point and leaves the model unchanged;
- ``learn_one(x) -> None`` adds the point to the model.

A point is a shingle: the last ``shingle_size`` ten-second totals, oldest first. A high
score means the recent shape of the call volume is unlike what the forest has seen; a score
of 0 means the forest has not learned enough yet. Scores of the two engines are on different
scales (AWS RCF: ordinary windows well below 1; rrcf's collusive displacement: a few units,
a burst tens), so a threshold belongs to one engine.

>>> forest = make_detector("krcf", seed=1)
>>> forest.score_one([10.0] * 20)
0.0
>>> for _ in range(300):
...     forest.learn_one([10.0] * 20)
>>> forest.score_one([10.0] * 19 + [500.0]) > forest.score_one([10.0] * 20)
True

``AnomalyScorer`` feeds the forest in time order: a window is learned once the source says
it is complete (its watermark has passed), and newer windows get provisional scores that
change as late events arrive.
"""

from __future__ import annotations

import copy
import heapq
import math
import random
from collections.abc import Callable, Sequence

import numpy as np

# The seed's RANDOM_CUT_FOREST(..., 100, 256, 100000, 20).
SEED_PARAMETERS = {"num_trees": 100, "sample_size": 256, "time_decay": 100_000, "shingle_size": 20}


class KrcfForest:
    """AWS's own Random Cut Forest (the algorithm Kinesis Data Analytics ran), via krcf."""

    def __init__(
        self,
        shingle_size: int = 20,
        num_trees: int = 100,
        sample_size: int = 256,
        time_decay: float = 100_000,
        seed: int = 0,
    ):
        self.options = {
            "dimensions": shingle_size,
            "shingle_size": 1,  # we build shingles ourselves, so any window can be scored
            "num_trees": num_trees,
            "sample_size": sample_size,
            "lambda": 1.0 / time_decay,
            "random_seed": seed,
            "internal_shingling": False,
            # Trees are scored and updated on several threads; results stay reproducible.
            "parallel_execution_enabled": True,
        }
        self._forest = None

    def score_one(self, x: Sequence[float]) -> float:
        if self._forest is None:
            return 0.0
        return float(self._forest.score(_floats(x)))

    def learn_one(self, x: Sequence[float]) -> None:
        if self._forest is None:
            import krcf

            self._forest = krcf.RandomCutForest(self.options)
        self._forest.update(_floats(x))

    def copy(self) -> KrcfForest:
        """An independent forest in the same state, learning on exactly as this one would."""
        twin = KrcfForest.__new__(KrcfForest)
        twin.options = dict(self.options)
        twin._forest = None if self._forest is None else self._forest.clone()
        return twin


def _floats(x: Sequence[float]) -> list[float]:
    return np.asarray(x, dtype=float).tolist()


class RrcfForest:
    """The ``rrcf`` package (pure Python): robust random cut trees scored by collusive
    displacement, each tree keeping a time-decayed reservoir sample like AWS RCF does."""

    def __init__(
        self,
        shingle_size: int = 20,
        num_trees: int = 100,
        sample_size: int = 256,
        time_decay: float = 100_000,
        seed: int = 0,
    ):
        self.shingle_size = shingle_size
        self.num_trees = num_trees
        self.sample_size = sample_size
        self.decay = 1.0 / time_decay
        self.seed = seed
        self._trees = None

    def _start(self):
        import rrcf

        self._random = random.Random(self.seed)
        self._trees = [rrcf.RCTree(random_state=self.seed + i) for i in range(self.num_trees)]
        self._heaps = [[] for _ in range(self.num_trees)]  # (-weight, index): largest weight on top
        self._seen = 0

    def score_one(self, x: Sequence[float]) -> float:
        if self._trees is None or self._seen == 0:
            return 0.0
        point = np.asarray(x, dtype=float)
        total = 0.0
        for tree in self._trees:
            # Scoring inserts the point and removes it again; restoring the random state
            # too leaves the tree exactly as it was.
            state = tree.rng.get_state()
            tree.insert_point(point, index=-1)
            total += tree.codisp(-1)
            tree.forget_point(-1)
            tree.rng.set_state(state)
        return total / self.num_trees

    def learn_one(self, x: Sequence[float]) -> None:
        if self._trees is None:
            self._start()
        point = np.asarray(x, dtype=float)
        index = self._seen
        self._seen += 1
        for tree, heap in zip(self._trees, self._heaps):
            # AWS's sampler weight: newer points and luckier draws are kept.
            weight = -self.decay * index + math.log(-math.log(self._random.random() or 1e-300))
            if len(heap) < self.sample_size:
                heapq.heappush(heap, (-weight, index))
            elif weight < -heap[0][0]:
                _, evicted = heapq.heapreplace(heap, (-weight, index))
                tree.forget_point(evicted)
            else:
                continue
            tree.insert_point(point, index=index)

    def copy(self) -> RrcfForest:
        return copy.deepcopy(self)


ENGINES: dict[str, Callable[..., object]] = {"krcf": KrcfForest, "rrcf": RrcfForest}
DEFAULT_ENGINE = "krcf"


def make_detector(engine: str = DEFAULT_ENGINE, seed: int = 0, **parameters):
    """A forest with the seed's parameters unless overridden."""
    try:
        factory = ENGINES[engine]
    except KeyError:
        raise ValueError(f"unknown anomaly engine {engine!r}; choose one of {sorted(ENGINES)}") from None
    settings = {**SEED_PARAMETERS, **parameters}
    return factory(seed=seed, **settings)


# Provisional scores cover the live edge (CloudTrail's 15 minutes of late delivery, and some);
# beyond that, windows wait for the forest to learn up to them.
PROVISIONAL_WINDOWS = 360


class AnomalyScorer:
    """Streams a dense series of window totals through a detector, in time order.

    ``advance`` learns every window before the watermark (each scored first, then learned,
    as the seed's pump did); the score of a learned window is final. Windows are counted
    from the first one that holds any event; the first ``shingle_size - 1`` of them have no
    full shingle and score 0.
    """

    def __init__(self, detector, step: int = 10, shingle_size: int = 20):
        self.detector = detector
        self.step = step
        self.shingle_size = shingle_size
        self.scores: dict[int, float] = {}
        self.start: int | None = None  # first window of the series the forest follows
        self.next: int | None = None  # first window not yet learned
        self._provisional: dict[int, tuple[tuple, float]] = {}

    def _shingle(self, total: Callable[[int], int], window: int) -> list[float]:
        step = self.step
        return [float(total(window - k * step)) for k in range(self.shingle_size - 1, -1, -1)]

    def _warm(self, window: int) -> bool:
        return window >= self.start + (self.shingle_size - 1) * self.step

    def advance(self, total: Callable[[int], int], first: int | None, until: int, limit: int | None = None) -> int:
        """Learn the windows before ``until`` (seconds); returns how many were learned.

        ``total(window)`` gives a window's count; ``first`` is the series' first window.
        ``limit`` bounds the work of one call, so a long backlog can be taken in steps.
        """
        if self.start is None:
            if first is None:
                return 0
            self.start = self.next = first
        learned = 0
        while self.next < until and (limit is None or learned < limit):
            window = self.next
            if self._warm(window):
                shingle = self._shingle(total, window)
                self.scores[window] = self.detector.score_one(shingle)
                self.detector.learn_one(shingle)
            else:
                self.scores[window] = 0.0
            self.next += self.step
            learned += 1
        if learned:
            self._provisional = {w: v for w, v in self._provisional.items() if w >= self.next}
        return learned

    def adopt(self, first: int, scores: Sequence[float]) -> None:
        """The final scores of the series' windows from ``first`` on, learned by another
        forest with the same settings (batch use: this detector has not learned them, so only
        these scores are read from here on)."""
        self.start = first
        self.next = first + len(scores) * self.step
        self.scores = {first + i * self.step: score for i, score in enumerate(scores)}
        self._provisional = {}

    def score(self, total: Callable[[int], int], window: int) -> float:
        """The final score of a learned window, else a provisional one from the forest as
        it stands (pure: nothing is learned)."""
        final = self.scores.get(window)
        if final is not None:
            return final
        if self.start is None or window < self.start or not self._warm(window):
            return 0.0
        if window >= self.next + PROVISIONAL_WINDOWS * self.step:
            return 0.0  # a backlog the forest has not reached yet: not scored, not guessed
        # Readers ask again every few seconds; until the window's shingle or the forest
        # changes, the answer is the same.
        shingle = self._shingle(total, window)
        key = (self.next, tuple(shingle))
        cached = self._provisional.get(window)
        if cached is not None and cached[0] == key:
            return cached[1]
        score = self.detector.score_one(shingle)
        self._provisional[window] = (key, score)
        return score

    def forget_before(self, window: int) -> None:
        for w in [w for w in self.scores if w < window]:
            del self.scores[w]
