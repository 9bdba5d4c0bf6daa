"""Rule detections and first-seen activity over raw CloudTrail records.

    >>> from metrics.detections import Detector
    >>> detector = Detector()                 # the rule table RULES, 1 h learning period
    >>> new_hits = detector.observe(records)  # doctest: +SKIP
    >>> detector.hits()                       # every hit kept, newest first  # doctest: +SKIP

Rules are data (``rules.RULES``): a pure matcher of one record, optionally counted as a burst
per key within a window, or a first-seen spec, or a stateful correlation. Each ``Hit`` links
the eventIDs that made it fire and has a stable id. ``python -m metrics.detections PATH``
runs the table over files. Pure: no Streamlit, no AWS SDK, no clock.
"""

from metrics.detections.engine import Detector, false_positives
from metrics.detections.matchers import UNUSUAL_INSTANCE_TYPES, calls
from metrics.detections.model import SEVERITIES, SEVERITY_RANK, Burst, FirstSeen, Hit, Rule
from metrics.detections.record import user_agent_family
from metrics.detections.rules import RULES, RULES_BY_ID, rules, unusual_instances_rule

__all__ = [
    "RULES",
    "RULES_BY_ID",
    "SEVERITIES",
    "SEVERITY_RANK",
    "UNUSUAL_INSTANCE_TYPES",
    "Burst",
    "Detector",
    "FirstSeen",
    "Hit",
    "Rule",
    "calls",
    "false_positives",
    "rules",
    "unusual_instances_rule",
    "user_agent_family",
]
