"""Reading a raw CloudTrail record safely: every value may be missing, of the wrong type, or
chosen by whoever made the call, so nothing here raises on odd input.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from metrics.detections.columns import ColumnRecord
from metrics.normalise import attribute

# Lambda's API names carry the API version: ``UpdateFunctionCode20150331v2``.
_VERSION_SUFFIX = re.compile(r"20\d{6}(v\d+)?$")
_api_names: dict[str, str] = {}

# An EC2 instance id as the session name of instance-profile credentials.
_INSTANCE_ID = re.compile(r"^i-[0-9a-fA-F]{8}([0-9a-fA-F]{9})?$")

SUMMARY_VALUE_CHARS = 120

# The values below are worked out once per distinct text, as a column dictionary would: a day
# holds a few thousand addresses and user agents against a million records. Bounded, and only
# for texts short enough that the cache stays small whatever a caller sends.
_CACHED = 1 << 16
_CACHED_CHARS = 512
_paths: dict[str, tuple[str, ...]] = {}


def get(record: object, path: str, default: object = None) -> object:
    """The value at a dotted path (``requestParameters.ipPermissions.items``), or ``default``."""
    parts = _paths.get(path)
    if parts is None:
        parts = _paths[path] = tuple(path.split("."))  # paths come from the rule table: a few hundred
    value = record
    for part in parts:
        if not isinstance(value, dict):
            return default
        value = value.get(part)
        if value is None:
            return default
    return value


def text(record: object, path: str) -> str:
    """The string at a dotted path, or "" for anything that is not a non-empty string."""
    value = get(record, path)
    return value if isinstance(value, str) else ""


def items(value: object) -> list:
    """CloudTrail lists come bare or wrapped in ``{"items": [...]}``; either way, a list."""
    if isinstance(value, dict):
        value = value.get("items")
    return value if isinstance(value, list) else []


def api_name(record: dict) -> str:
    """``eventName`` without Lambda's API version suffix."""
    name = record.get("eventName")
    if not isinstance(name, str):
        return ""
    return api_text(name)


def api_text(name: str) -> str:
    """An API name without Lambda's API version suffix."""
    cached = _api_names.get(name)
    if cached is None:
        cached = _VERSION_SUFFIX.sub("", name) or name
        if len(_api_names) > 10_000:
            _api_names.clear()
        _api_names[name] = cached
    return cached


def identity(record: dict) -> dict:
    value = record.get("userIdentity")
    return value if isinstance(value, dict) else {}


def user_of(record: dict) -> str:
    """The user as the dashboard attributes it (reference.md section 4)."""
    if type(record) is ColumnRecord:
        return record.user  # the normaliser's own attribution
    return attribute(identity(record))[0]


def account_of(record: dict) -> str:
    if type(record) is ColumnRecord:
        return record.account
    return text(record, "recipientAccountId") or text(identity(record), "accountId")


def principal_key(record: dict) -> str:
    """One principal across its sessions: account and attributed user."""
    return f"{account_of(record)}/{user_of(record)}"


def is_console_login(record: dict) -> bool:
    return record.get("eventName") == "ConsoleLogin" and record.get("eventSource") == "signin.amazonaws.com"


def is_failed(record: dict) -> bool:
    """An error code, or a console sign-in that CloudTrail records as a failure without one."""
    if record.get("errorCode"):
        return True
    return is_console_login(record) and get(record, "responseElements.ConsoleLogin") == "Failure"


def is_aws_service_call(record: dict) -> bool:
    """Made by an AWS service on the account's behalf, not by a person or workload."""
    who = identity(record)
    return (
        record.get("eventType") == "AwsServiceEvent"
        or bool(who.get("invokedBy"))
        or who.get("type") in ("AWSService", "AWSAccount")
    )


def instance_session(record: dict) -> str:
    """The instance id if these are an EC2 instance profile's credentials, else ""."""
    who = identity(record)
    if who.get("type") != "AssumedRole":
        return ""
    return instance_of_arn(text(who, "arn"))


def instance_of_arn(arn: str | None) -> str:
    """The instance id an assumed-role ARN's session is named after, else ""."""
    session = arn.rsplit("/", 1)[-1] if arn and "/" in arn else ""
    return session if _INSTANCE_ID.match(session) else ""


def parse_ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from ``sourceIPAddress``; tolerant of leading zeros ("035.1.2.3"), None for
    service names and "AWS Internal"."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    return _parse_ip(value)


@lru_cache(maxsize=_CACHED)
def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if ":" in value:
        try:
            return ipaddress.IPv6Address(value.split("%", 1)[0])
        except ValueError:
            return None
    parts = value.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        return None
    return ipaddress.IPv4Address(".".join(map(str, octets)))


def is_public_ip(value: object) -> bool:
    """A routable address outside private, shared, loopback and link-local space."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return False
    return _is_public(value)


@lru_cache(maxsize=_CACHED)
def _is_public(value: str) -> bool:
    address = parse_ip(value)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast) and not (
        isinstance(address, ipaddress.IPv4Address) and address in _SHARED
    )


_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, not an internet address

_FAMILY_TOKEN = re.compile(r"[\s/(;\[\]]")
_RANDOM_TAIL = re.compile(r"[_-][0-9a-f]{8}(-[0-9a-f]{4}){0,4}.*$")


def user_agent_family(agent: object) -> str:
    """The client product of a user agent, lower case: ``aws-cli``, ``boto3``,
    ``aws-sdk-java``, ``console``, ``terraform``, ``aws-internal``; "" if there is none."""
    if not isinstance(agent, str):
        return ""
    return _agent_family(agent) if len(agent) <= _CACHED_CHARS else _agent_family.__wrapped__(agent)


@lru_cache(maxsize=_CACHED)
def _agent_family(agent: str) -> str:
    agent = agent.strip().lstrip("[").strip()
    if not agent:
        return ""
    lower = agent[:512].lower()
    if "terraform" in lower:
        return "terraform"
    if lower.startswith("mozilla/") or lower in ("console.amazonaws.com", "signin.amazonaws.com"):
        return "console"
    if lower == "aws internal":
        return "aws-internal"
    if lower.endswith(".amazonaws.com") and " " not in lower:
        return "aws-service"
    token = _FAMILY_TOKEN.split(lower, 1)[0]
    # Per-run identifiers ("stratus-red-team_c763d13b-...") are not part of the product.
    token = _RANDOM_TAIL.sub("", token)
    return token[:64]


def iac_tool(agent: object) -> str:
    """``Terraform``, ``CloudFormation`` or ``CDK`` when the user agent is an infrastructure-as-code
    run, else "". CDK deploys through CloudFormation, so its mark wins."""
    if not isinstance(agent, str) or not agent:
        return ""
    return _iac_tool(agent) if len(agent) <= _CACHED_CHARS else _iac_tool.__wrapped__(agent)


@lru_cache(maxsize=_CACHED)
def _iac_tool(agent: str) -> str:
    lower = agent[:1024].lower()
    if "aws-cdk" in lower or "cdk/" in lower:
        return "CDK"
    if "terraform" in lower:
        return "Terraform"
    if "cloudformation" in lower:
        return "CloudFormation"
    return ""


def short(value: object, limit: int = SUMMARY_VALUE_CHARS) -> str:
    """A record value for a summary: text, bounded, on one line."""
    if value is None:
        return ""
    out = value if isinstance(value, str) else str(value)
    out = " ".join(out.split())
    return out if len(out) <= limit else out[: limit - 1] + "…"
