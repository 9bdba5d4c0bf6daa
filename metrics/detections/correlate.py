"""Stateful matchers that relate events of different principals.

Each ``observe`` reads all it needs of the record before it changes any state (the detector may
ask again with the parsed record when the columns cannot answer), and its ``gate`` says what
a record it can act on looks like (``gates``): any other record is left out, unasked.
"""

from __future__ import annotations

from collections import OrderedDict

from metrics.detections.columns import ColumnRecord
from metrics.detections.gates import Gate
from metrics.detections.model import Event, Found
from metrics.detections.record import (
    api_name,
    api_text,
    get,
    identity,
    instance_of_arn,
    instance_session,
    is_failed,
    is_public_ip,
    parse_ip,
    short,
    text,
    user_agent_family,
)

LONG_TERM = ("IAMUser", "Root")


def _passes(gate: Gate, record: dict) -> bool:
    # A ColumnRecord comes only from the detector, which has tested the gate on its columns.
    return type(record) is ColumnRecord or gate.passes(record)


class InstanceCredentialsElsewhere:
    """An EC2 instance profile's credentials used from an internet address that long-term
    credentials (an IAM user's access key, root) also called from within ``window`` seconds.

    Instances share an address only with what runs beside them (other instances, behind the
    same NAT); a person's access key calling from that same address alongside an instance
    session is what stolen instance credentials look like in CloudTrail: the attacker works
    from one machine with both. Each (session, address) fires once.
    """

    gate = Gate(sourceIPAddress=is_public_ip, identityType={*LONG_TERM, "AssumedRole"})

    def __init__(self, window: int = 3600, max_addresses: int = 50_000, per_address: int = 16):
        self.window = window
        self.max_addresses = max_addresses
        self.per_address = per_address
        # (account, address) -> principal ARN -> (event, instance id or "", display name)
        self._seen: OrderedDict[tuple[str, str], OrderedDict[str, tuple[Event, str, str]]] = OrderedDict()

    def observe(self, record: dict, event: Event) -> list[Found]:
        if not _passes(self.gate, record) or not is_public_ip(event.ip):
            return []
        who = identity(record)
        instance = instance_session(record)
        if not instance and who.get("type") not in LONG_TERM:
            return []
        arn = text(who, "arn") or event.user
        place = (event.account, event.ip)
        principals = self._seen.get(place)
        if principals is None:
            principals = self._seen[place] = OrderedDict()
            if len(self._seen) > self.max_addresses:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(place)
        principals[arn] = (event, instance, event.user)
        principals.move_to_end(arn)
        if len(principals) > self.per_address:
            principals.popitem(last=False)

        fired = []
        for other_arn, (other, other_instance, other_name) in principals.items():
            if other_arn == arn or abs(other.time - event.time) > self.window:
                continue
            if instance and not other_instance:
                session, session_event, person, person_event = instance, event, other_name, other
                session_arn = arn
            elif other_instance and not instance:
                session, session_event, person, person_event = other_instance, other, event.user, event
                session_arn = other_arn
            else:
                continue
            summary = (
                f"credentials of instance {short(session, 40)} (role {short(session_event.user, 80)}) used from "
                f"{short(event.ip, 60)}, an address {short(person, 80)} also called from with long-term credentials"
            )
            fired.append(Found(f"{session_arn} from {event.ip}", summary, [session_event, person_event]))
        return fired


# Clients no EC2 instance runs with its own role: a browser, or a tool made to attack.
NOT_AN_INSTANCE_CLIENT = ("console",)


class InstanceSessionElsewhere:
    """An EC2 instance profile session (its session name is the instance id) calling from a
    second source address, public or private, or with a client no instance runs (a browser,
    an offensive tool). An instance keeps its addresses; its credentials taken elsewhere do
    not. Each (session, address) fires once; the hit links the first call seen from the
    earlier address and the new one."""

    gate = Gate(
        identityType={"AssumedRole"},
        principalArn=instance_of_arn,
        sourceIPAddress=lambda address: parse_ip(address) is not None,
    )

    def __init__(self, offensive=lambda agent: "", max_sessions: int = 50_000, per_session: int = 8):
        self.offensive = offensive
        self.max_sessions = max_sessions
        self.per_session = per_session
        self._sessions: OrderedDict[str, OrderedDict[str, tuple[Event, str]]] = OrderedDict()

    def observe(self, record: dict, event: Event) -> list[Found]:
        if not _passes(self.gate, record):
            return []
        instance = instance_session(record)
        if not instance or parse_ip(event.ip) is None:
            return []
        arn = text(identity(record), "arn")
        agent = record.get("userAgent")
        family = user_agent_family(agent)
        addresses = self._sessions.get(arn)
        if addresses is None:
            addresses = self._sessions[arn] = OrderedDict()
            if len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(arn)
        where = f"instance {short(instance, 40)} (role {short(event.user, 80)})"
        tool = self.offensive(agent)
        if family in NOT_AN_INSTANCE_CLIENT or tool:
            client = tool or "a browser"
            summary = f"credentials of {where} used by {short(client, 40)} from {short(event.ip, 60)}"
            return [Found(f"{arn} client {family}", summary, [event])]
        if event.ip in addresses:
            return []
        fired = []
        if addresses:
            first_ip, (first, first_family) = next(iter(addresses.items()))
            summary = (
                f"credentials of {where} used from {short(event.ip, 60)} ({short(family or 'no client', 40)}) "
                f"after {short(first_ip, 60)} ({short(first_family or 'no client', 40)})"
            )
            fired.append(Found(f"{arn} from {event.ip}", summary, [first, event]))
        if len(addresses) < self.per_session:
            addresses[event.ip] = (event, family)
        return fired


TRAIL_CALLS = ("CreateTrail", "UpdateTrail")
LIFECYCLE_CALLS = ("PutBucketLifecycle", "PutBucketLifecycleConfiguration")


def _days(value: object) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def shortest_expiry(record: dict) -> tuple[float, str] | None:
    """The shortest expiration of an enabled lifecycle rule: (days, what expires)."""
    configuration = get(record, "requestParameters.LifecycleConfiguration")
    if not isinstance(configuration, dict):
        return None
    rules = configuration.get("Rule", configuration.get("Rules"))
    found = []
    for rule in rules if isinstance(rules, list) else [rules]:
        if not isinstance(rule, dict) or str(rule.get("Status", "Enabled")).lower() != "enabled":
            continue
        expiration, noncurrent = rule.get("Expiration"), rule.get("NoncurrentVersionExpiration")
        if isinstance(expiration, dict) and _days(expiration.get("Days")) is not None:
            found.append((_days(expiration["Days"]), "objects"))
        if isinstance(noncurrent, dict) and _days(noncurrent.get("NoncurrentDays")) is not None:
            found.append((_days(noncurrent["NoncurrentDays"]), "older versions"))
    return min(found) if found else None


class LifecycleExpiry:
    """A lifecycle rule that deletes a bucket's objects within ``max_days``: logs, backups or data
    destroyed without a Delete call in sight. Higher severity when the bucket receives a
    trail's logs, learned from the CreateTrail and UpdateTrail events seen."""

    gate = Gate(
        eventSource={"cloudtrail.amazonaws.com", "s3.amazonaws.com"},
        eventName=lambda name: name is not None and api_text(name) in (*TRAIL_CALLS, *LIFECYCLE_CALLS),
    )

    def __init__(self, max_days: float = 7, max_buckets: int = 10_000):
        self.max_days = max_days
        self.max_buckets = max_buckets
        self._trail_buckets: OrderedDict[str, str] = OrderedDict()  # bucket -> trail name

    def observe(self, record: dict, event: Event) -> list[Found]:
        source, name = record.get("eventSource"), api_name(record)
        if source == "cloudtrail.amazonaws.com" and name in TRAIL_CALLS and not is_failed(record):
            bucket = text(record, "requestParameters.s3BucketName") or text(record, "responseElements.s3BucketName")
            if bucket:
                trail = text(record, "requestParameters.name") or "?"
                self._trail_buckets[bucket] = trail
                self._trail_buckets.move_to_end(bucket)
                if len(self._trail_buckets) > self.max_buckets:
                    self._trail_buckets.popitem(last=False)
            return []
        if source != "s3.amazonaws.com" or name not in LIFECYCLE_CALLS:
            return []
        shortest = shortest_expiry(record)
        if shortest is None or shortest[0] > self.max_days:
            return []
        days, what = shortest
        bucket = text(record, "requestParameters.bucketName")
        trail = self._trail_buckets.get(bucket)
        summary = (
            f"{short(event.user, 80)} set a lifecycle rule on bucket {short(bucket, 80)}: {what} expire after "
            f"{days:g} day(s)"
        )
        if trail is not None:
            summary += f"; the bucket holds the logs of trail {short(trail, 80)}"
        if event.failed:
            summary += f" - failed: {short(record.get('errorCode') or '', 60)}"
        return [Found(event.id, summary, [event], "high" if trail is not None else None)]
