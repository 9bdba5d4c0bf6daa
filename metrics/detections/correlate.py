"""Stateful matchers that relate events of different principals."""

from __future__ import annotations

from collections import OrderedDict

from metrics.detections.model import Event
from metrics.detections.record import identity, instance_session, is_public_ip, short, text

LONG_TERM = ("IAMUser", "Root")


class InstanceCredentialsElsewhere:
    """An EC2 instance profile's credentials used from an internet address that long-term
    credentials (an IAM user's access key, root) also called from within ``window`` seconds.

    Instances share an address only with what runs beside them (other instances, behind the
    same NAT); a person's access key calling from that same address alongside an instance
    session is what stolen instance credentials look like in CloudTrail: the attacker works
    from one machine with both. Each (session, address) fires once.
    """

    def __init__(self, window: int = 3600, max_addresses: int = 50_000, per_address: int = 16):
        self.window = window
        self.max_addresses = max_addresses
        self.per_address = per_address
        # (account, address) -> principal ARN -> (event, instance id or "", display name)
        self._seen: OrderedDict[tuple[str, str], OrderedDict[str, tuple[Event, str, str]]] = OrderedDict()

    def observe(self, record: dict, event: Event) -> list[tuple[str, str, list[Event]]]:
        if not is_public_ip(event.ip):
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
            fired.append((f"{session_arn} from {event.ip}", summary, [session_event, person_event]))
        return fired
