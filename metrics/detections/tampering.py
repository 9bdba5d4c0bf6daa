"""Details of calls that destroy logs or data, weaken detection, or point at offensive tools."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable

from metrics.detections.matchers import truthy
from metrics.detections.model import Outcome
from metrics.detections.record import api_name, get, short


def retention_of_a_day(record: dict) -> str | None:
    days = get(record, "requestParameters.retentionInDays")
    try:
        value = int(days)
    except (TypeError, ValueError):
        return None
    return (
        f"log group {short(get(record, 'requestParameters.logGroupName'), 80)} kept {value} day" if value <= 1 else None
    )


def versioning_suspended(record: dict) -> str | None:
    configuration = get(record, "requestParameters.VersioningConfiguration")
    if not isinstance(configuration, dict):
        return None
    if str(configuration.get("Status", "")).lower() == "suspended":
        return "versioning suspended"
    if str(configuration.get("MfaDelete", "")).lower() == "disabled":
        return "MFA delete disabled"
    return None


def logging_removed(record: dict) -> str | None:
    status = get(record, "requestParameters.BucketLoggingStatus")
    if not isinstance(status, dict) or status.get("LoggingEnabled"):
        return None
    return "server access logging removed"


def findings_archived(record: dict) -> str | None:
    """GuardDuty: a filter that archives findings, or a trusted IP list (no findings for it)."""
    name = api_name(record)
    if name in ("CreateFilter", "UpdateFilter"):
        action = get(record, "requestParameters.action")
        return "findings matching the filter archived" if str(action).upper() == "ARCHIVE" else None
    return "trusted IP list: no findings for its addresses"


def findings_suppressed(record: dict) -> str | None:
    """Security Hub: findings given the workflow status SUPPRESSED."""
    status = get(record, "requestParameters.Workflow.Status") or get(record, "requestParameters.workflow.status")
    if str(status).upper() != "SUPPRESSED":
        return None
    identifiers = get(record, "requestParameters.FindingIdentifiers")
    count = len(identifiers) if isinstance(identifiers, list) else "some"
    return f"{count} finding(s) suppressed"


def database_deleted(record: dict) -> str | Outcome | None:
    if truthy(get(record, "requestParameters.skipFinalSnapshot")):
        return Outcome("deleted without a final snapshot", severity="high")
    return ""


def snapshot_ids(record: dict) -> Iterable[str]:
    parameters = record.get("requestParameters")
    if not isinstance(parameters, dict):
        return []
    for key in ("snapshotId", "dBSnapshotIdentifier", "dBClusterSnapshotIdentifier"):
        if isinstance(parameters.get(key), str):
            return [parameters[key]]
    return []


def boundary_removed(record: dict) -> str | None:
    target = get(record, "requestParameters.userName") or get(record, "requestParameters.roleName")
    return f"permissions boundary removed from {short(target, 80)}"


# Offensive tools, as their user agents name them. Lower case; a word may stand anywhere.
OFFENSIVE_TOOLS = {
    "trufflehog": "TruffleHog",
    "pacu": "Pacu",
    "s3browser": "S3 Browser",
    "s3 browser": "S3 Browser",
    "cloudfox": "CloudFox",
    "scoutsuite": "ScoutSuite",
    "scout suite": "ScoutSuite",
    "prowler": "Prowler",
    "cloudsploit": "CloudSploit",
    "kali": "a Kali Linux client",
    "parrot": "a Parrot OS client",
    "pentoo": "a Pentoo client",
}
_TOOL_PATTERN = re.compile(
    r"(?<![a-z0-9])(" + "|".join(re.escape(k) for k in sorted(OFFENSIVE_TOOLS, key=len, reverse=True)) + r")"
)


def offensive_tool(expected: Collection[str] = ()) -> Callable[[object], str]:
    """The offensive tool a user agent names ("" for none), leaving out the ``expected`` ones
    (names as in ``OFFENSIVE_TOOLS``' keys or values, any case: a scanner the team runs)."""
    allowed = {e.strip().lower().replace(" ", "") for e in expected if e.strip()}

    def tool(agent: object) -> str:
        if not isinstance(agent, str) or not agent:
            return ""
        for found in _TOOL_PATTERN.finditer(agent[:1024].lower()):
            name = OFFENSIVE_TOOLS[found.group(1)]
            if found.group(1).replace(" ", "") not in allowed and name.lower().replace(" ", "") not in allowed:
                return name
        return ""

    return tool
