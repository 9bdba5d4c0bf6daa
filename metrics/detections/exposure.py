"""Details of calls that open data or networks to other accounts or to everyone.

Each ``*_detail`` returns the detail text of a matching call, or None when it does not count;
those built with ``trusted`` treat the organisation's own accounts as inside.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from metrics.detections.matchers import truthy
from metrics.detections.policies import acl_grantees, as_list, outside_accounts, outside_principals
from metrics.detections.record import account_of, api_name, get, items, short

Detail = Callable[[dict], "str | None"]


def _opened(who: list[str]) -> str | None:
    return f"opened to {short(', '.join(who), 200)}" if who else None


def resource_policy(trusted: Collection[str] = ()) -> Detail:
    """A resource policy (S3, KMS, ECR, SNS, SQS) letting in a principal outside the account."""

    def detail(record: dict) -> str | None:
        parameters = record.get("requestParameters")
        if not isinstance(parameters, dict):
            return None
        name = api_name(record)
        if name == "SetTopicAttributes":
            if str(parameters.get("attributeName", "")).lower() != "policy":
                return None
            document = parameters.get("attributeValue")
        elif name == "SetQueueAttributes":
            attributes = parameters.get("attributes")
            document = attributes.get("Policy") if isinstance(attributes, dict) else None
        else:
            document = next(
                (parameters[k] for k in ("bucketPolicy", "policy", "policyText") if parameters.get(k)),
                None,
            )
        return _opened(outside_principals(document, account_of(record), trusted))

    return detail


def bucket_acl(record: dict) -> str | None:
    parameters = record.get("requestParameters")
    return _opened(acl_grantees(parameters)) if isinstance(parameters, dict) else None


_BLOCKS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def public_access_block(record: dict) -> str | None:
    """The block removed, or any of its four protections turned off."""
    if api_name(record).startswith("Delete"):
        return "public access block removed"
    configuration = get(record, "requestParameters.PublicAccessBlockConfiguration")
    if not isinstance(configuration, dict):
        return None
    off = [key for key in _BLOCKS if key in configuration and not truthy(configuration[key])]
    return f"turned off: {', '.join(off)}" if off else None


def replication(trusted: Collection[str] = ()) -> Detail:
    """Replication to a bucket of another account (the destination names its account)."""

    def detail(record: dict) -> str | None:
        configuration = get(record, "requestParameters.ReplicationConfiguration")
        if not isinstance(configuration, dict):
            return None
        rules = configuration.get("Rule", configuration.get("Rules"))
        accounts, buckets = [], []
        for rule in as_list(rules):
            destination = rule.get("Destination") if isinstance(rule, dict) else None
            if isinstance(destination, dict):
                accounts.append(destination.get("Account"))
                buckets.append(destination.get("Bucket"))
        outside = outside_accounts([a for a in accounts if a], account_of(record), trusted)
        if not outside:
            return None
        return f"replicated to {short(', '.join(map(str, filter(None, buckets))), 120)} of {', '.join(outside)}"

    return detail


def lambda_other_account(trusted: Collection[str] = ()) -> Detail:
    """AddPermission for another account's principal (``*`` is the public-access rule)."""

    def detail(record: dict) -> str | None:
        principal = get(record, "requestParameters.principal")
        if principal == "*":
            return None
        outside = outside_accounts([principal], account_of(record), trusted)
        return f"{', '.join(outside)} may {short(get(record, 'requestParameters.action'), 60)}" if outside else None

    return detail


def rds_public(record: dict) -> str | None:
    return "made publicly accessible" if truthy(get(record, "requestParameters.publiclyAccessible")) else None


# Network exposure beyond ingress.


def _anywhere(value: object) -> bool:
    return isinstance(value, str) and value.strip() in ("0.0.0.0/0", "::/0")


def internet_route(record: dict) -> str | None:
    """A default route (0.0.0.0/0 or ::/0) through an internet gateway."""
    parameters = record.get("requestParameters")
    if not isinstance(parameters, dict):
        return None
    destination = parameters.get("destinationCidrBlock") or parameters.get("destinationIpv6CidrBlock")
    gateway = parameters.get("gatewayId") or parameters.get("egressOnlyInternetGatewayId")
    if not _anywhere(destination) or not isinstance(gateway, str) or not gateway.startswith(("igw-", "eigw-")):
        return None
    return f"route {destination} via {short(gateway, 40)} in {short(parameters.get('routeTableId'), 40)}"


def internet_egress(record: dict) -> str | None:
    """Security group egress to every address."""
    parameters = record.get("requestParameters")
    if not isinstance(parameters, dict):
        return None
    ranges = []
    for permission in items(parameters.get("ipPermissions")):
        if isinstance(permission, dict):
            for entry in items(permission.get("ipRanges")) + items(permission.get("ipv6Ranges")):
                if isinstance(entry, dict):
                    ranges.extend(v for k, v in entry.items() if k in ("cidrIp", "cidrIpv6"))
    for rule in items(get(record, "responseElements.securityGroupRuleSet")):
        if isinstance(rule, dict) and truthy(rule.get("isEgress")):
            ranges.extend(rule.get(k) for k in ("cidrIpv4", "cidrIpv6"))
    opened = [r for r in ranges if _anywhere(r)]
    return f"egress to {', '.join(dict.fromkeys(opened))}" if opened else None


def network_acl_allow_all(record: dict) -> str | None:
    """A network ACL entry allowing every protocol from or to every address."""
    parameters = record.get("requestParameters")
    if not isinstance(parameters, dict) or str(parameters.get("ruleAction", "")).lower() != "allow":
        return None
    cidr = parameters.get("cidrBlock") or parameters.get("ipv6CidrBlock")
    if not _anywhere(cidr) or str(parameters.get("aclProtocol", parameters.get("protocol", ""))) not in ("-1", "all"):
        return None
    direction = "outbound" if truthy(parameters.get("egress")) else "inbound"
    return f"all {direction} traffic allowed for {cidr} (rule {short(parameters.get('ruleNumber'), 10)})"
