"""Per-rule hits of the detection table on the Stratus Red Team files and on a benign demo day.

    python -m bench.detections

Prints the number of separate hits on ``tests/data/stratus-red-team/`` and per rule, then the
hits per rule on the demo's 2026-01-05 with its incidents off (seed 7, 2 events/s at peak):
the false-positive figures of the README, measured in one run.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime

from collectors.demo import DemoSource
from metrics.detections import RULES_BY_ID, Detector, false_positives
from metrics.detections.__main__ import read
from metrics.normalise import Rejects

STRATUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "stratus-red-team")
BENIGN_DAY = datetime(2026, 1, 5, tzinfo=UTC)


def stratus_hits() -> Counter:
    records, _ = read([STRATUS], Rejects())
    detector = Detector(max_hits=10**9)
    detector.observe(records)
    return Counter(hit.rule_id for hit in detector.hits())


def benign_hits() -> dict[str, int]:
    day = int(BENIGN_DAY.timestamp())
    return false_positives(DemoSource(seed=7, rate=2, incidents=False).records(day, day + 86_400))


def _severity(rule_id: str) -> str:
    rule = RULES_BY_ID.get(rule_id)
    return rule.severity if rule else "?"


def main() -> None:
    started = time.perf_counter()
    stratus = stratus_hits()
    print(f"Stratus Red Team files: {sum(stratus.values())} separate hits, {len(stratus)} rules fired")
    for rule_id, count in sorted(stratus.items()):
        print(f"  {rule_id:45} {_severity(rule_id):8} {count}")
    benign = {rule_id: n for rule_id, n in benign_hits().items() if n}
    print(f"Benign demo day {BENIGN_DAY:%Y-%m-%d} (seed 7, rate 2, incidents off): {sum(benign.values())} hits")
    for rule_id, count in sorted(benign.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {rule_id:45} {_severity(rule_id):8} {count}")
    print(f"took {time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
