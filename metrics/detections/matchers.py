"""Building blocks of the rule table: small pure functions of one record.

A matcher returns a one-line summary when the record matches and None otherwise. Matchers
built by ``calls`` carry the (eventSource, eventName) pairs they can match in ``.events``,
so the engine only asks them about those calls.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from fnmatch import fnmatchcase

from metrics.detections.gates import where
from metrics.detections.model import Outcome
from metrics.detections.policies import outside_principals, statements
from metrics.detections.record import (
    account_of,
    api_name,
    api_text,
    get,
    identity,
    instance_of_arn,
    instance_session,
    is_aws_service_call,
    is_console_login,
    is_failed,
    is_public_ip,
    items,
    principal_key,
    short,
    text,
    user_agent_family,
    user_of,
)

# Request parameters that name what a call acted on, most telling first.
_TARGETS = (
    "userName",
    "roleName",
    "groupName",
    "policyArn",
    "trailName",
    "name",
    "functionName",
    "instanceId",
    "target",
    "groupId",
    "snapshotId",
    "imageId",
    "dBSnapshotIdentifier",
    "dBClusterSnapshotIdentifier",
    "detectorId",
    "resolverQueryLogConfigId",
    "configurationRecorderName",
    "documentName",
    "modelId",
    "secretId",
)


def service(record: dict) -> str:
    return text(record, "eventSource").removesuffix(".amazonaws.com")


def describe(record: dict, detail: str = "") -> str:
    """``<user> called <service>:<API> (<what it acted on>)[: detail][ - failed: <code>]``."""
    out = f"{short(user_of(record), 80)} called {service(record)}:{api_name(record)}"
    parameters = record.get("requestParameters")
    if isinstance(parameters, dict):
        targets = [
            f"{key}={short(parameters[key], 80)}"
            for key in _TARGETS
            if isinstance(parameters.get(key), (str, int)) and parameters.get(key) != ""
        ][:2]
        instances = parameters.get("instanceIds")
        if not targets and isinstance(instances, list) and instances:
            targets = [f"instanceIds={short(','.join(map(str, instances[:5])), 80)}"]
        if targets:
            out += f" ({', '.join(targets)})"
    if detail:
        out += f": {detail}"
    code = record.get("errorCode")
    if code:
        out += f" - failed: {short(code, 60)}"
    elif is_failed(record):
        out += " - failed"
    return out


def calls(source: str, *names: str, detail: Callable[[dict], str | None] | None = None):
    """A matcher for the calls ``names`` of the service ``source`` (``iam.amazonaws.com``).

    ``detail(record)``, if given, refines it: it returns the detail text for the summary
    ("" for none) or None when the call does not count (a security group opened to a private
    range only, a policy version not made the default)."""
    wanted = frozenset(names)

    def match(record: dict) -> str | None:
        if record.get("eventSource") != source or api_name(record) not in wanted:
            return None
        if detail is None:
            return describe(record)
        extra = detail(record)
        if isinstance(extra, Outcome):
            return extra._replace(summary=describe(record, extra.summary))
        return None if extra is None else describe(record, extra)

    match.events = frozenset((source, name) for name in names)
    return match


def either(*matchers):
    """A matcher of the calls of several ``calls`` matchers (of different services): the first that matches."""

    def match(record: dict):
        for matcher in matchers:
            found = matcher(record)
            if found is not None:
                return found
        return None

    match.events = frozenset().union(*(matcher.events for matcher in matchers))
    return match


def truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# -- principals and sign-in ----------------------------------------------------------------

# What the matchers below need of a record's columns (``gates``): declared beside each one.
_CONSOLE_LOGIN = {"eventSource": {"signin.amazonaws.com"}, "eventName": {"ConsoleLogin"}}


@where(identityType={"Root"})
def root_activity(record: dict) -> str | None:
    if identity(record).get("type") != "Root" or is_aws_service_call(record) or is_console_login(record):
        return None
    return describe(record)


@where(identityType={"Root"}, **_CONSOLE_LOGIN)
def root_console_login(record: dict) -> str | None:
    if not is_console_login(record) or identity(record).get("type") != "Root":
        return None
    mfa = text(record, "additionalEventData.MFAUsed")
    where = short(record.get("sourceIPAddress"), 60)
    if is_failed(record):
        reason = short(text(record, "errorMessage") or "failed", 60)
        return Outcome(f"root console sign-in failed from {where}: {reason}", "medium", "Failed root console sign-in")
    return describe(record, f"root signed in to the console from {where}") + (
        f" (MFA used: {short(mfa, 10)})" if mfa else ""
    )


_FEDERATED_TYPES = frozenset({"AssumedRole", "FederatedUser", "SAMLUser", "WebIdentityUser"})


def is_federated(record: dict) -> bool:
    """A sign-in through SSO, SAML or web identity: MFA is the identity provider's business."""
    who = identity(record)
    if who.get("type") in _FEDERATED_TYPES:
        return True
    context = who.get("sessionContext")
    if isinstance(context, dict) and (context.get("webIdFederationData") or context.get("sessionIssuer")):
        return True
    extra = record.get("additionalEventData")
    return isinstance(extra, dict) and bool(extra.get("SamlProviderArn"))


@where(**_CONSOLE_LOGIN)
def console_login_without_mfa(record: dict) -> str | None:
    if not is_console_login(record) or get(record, "additionalEventData.MFAUsed") != "No":
        return None
    if is_failed(record) or is_federated(record):  # a failure counts toward the failed-sign-in bursts
        return None
    return describe(record, f"console sign-in without MFA from {short(record.get('sourceIPAddress'), 60)}")


@where(**_CONSOLE_LOGIN)
def console_login_failure(record: dict) -> str | None:
    if not is_console_login(record) or not is_failed(record):
        return None
    reason = text(record, "errorMessage") or "failed"
    return f"{short(user_of(record), 80)} from {short(record.get('sourceIPAddress'), 60)}: {short(reason, 60)}"


_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedAccess", "UnauthorizedOperation")


@where(errorCode=lambda code: code is not None and code.removeprefix("Client.").startswith(_DENIED))
def access_denied(record: dict) -> str | None:
    code = record.get("errorCode")
    if not isinstance(code, str) or not code.removeprefix("Client.").startswith(_DENIED):
        return None
    return f"{service(record)}:{api_name(record)} {short(code, 60)}"


_READ_PREFIXES = ("List", "Describe", "Get")
_NOT_TOOLS = ("console", "aws-internal", "aws-service")


@where(
    eventName=lambda name: name is not None and api_text(name).startswith(_READ_PREFIXES),
    userAgent=lambda agent: user_agent_family(agent) not in _NOT_TOOLS,
    eventType=lambda kind: kind != "AwsServiceEvent",
    identityType=lambda kind: kind not in ("AWSService", "AWSAccount"),
)
def enumeration_call(record: dict) -> str | None:
    """A read-only List/Describe/Get call by a person's or workload's tools, not the console."""
    name = api_name(record)
    if not name.startswith(_READ_PREFIXES) or record.get("readOnly") is False or is_aws_service_call(record):
        return None
    if user_agent_family(record.get("userAgent")) in _NOT_TOOLS:
        return None
    return f"{service(record)}:{name}"


def api_of(record: dict) -> Iterable[str]:
    return [f"{service(record)}:{api_name(record)}"]


# -- burst keys and counted values ---------------------------------------------------------


def by_principal(record: dict) -> str:
    return principal_key(record)


def by_source_ip(record: dict) -> str | None:
    return text(record, "sourceIPAddress") or None


def by_account(record: dict) -> str:
    return account_of(record)


def by_session_and_ip(record: dict) -> str:
    return f"{text(identity(record), 'arn')} from {text(record, 'sourceIPAddress')}"


def secret_ids(record: dict) -> Iterable[str]:
    secret = get(record, "requestParameters.secretId")
    return [secret] if isinstance(secret, str) else []


def decrypted_parameters(record: dict) -> Iterable[str]:
    parameters = record.get("requestParameters")
    if not isinstance(parameters, dict):
        return []
    names = parameters.get("names")
    if isinstance(names, list):
        return [n for n in names if isinstance(n, str)]
    for key in ("name", "path"):
        if isinstance(parameters.get(key), str):
            return [parameters[key]]
    return []


def instance_id(record: dict) -> Iterable[str]:
    value = get(record, "requestParameters.instanceId")
    return [value] if isinstance(value, str) else []


# -- details of particular calls -----------------------------------------------------------


def with_decryption(record: dict) -> str | None:
    return "" if truthy(get(record, "requestParameters.withDecryption")) else None


def user_data_attribute(record: dict) -> str | None:
    return "" if get(record, "requestParameters.attribute") == "userData" else None


def set_as_default(record: dict) -> str | None:
    if api_name(record) == "SetDefaultPolicyVersion":
        return f"version {short(get(record, 'requestParameters.versionId'), 20)} made the default"
    return "new version made the default" if truthy(get(record, "requestParameters.setAsDefault")) else None


def guardduty_disabled(record: dict) -> str | None:
    if api_name(record) == "UpdateDetector":
        enable = get(record, "requestParameters.enable")
        return "detector disabled" if enable is False or enable == "false" else None
    return ""


def event_selectors(record: dict) -> str | None:
    if api_name(record) != "PutEventSelectors":
        return ""
    selectors = get(record, "requestParameters.eventSelectors")
    if isinstance(selectors, list) and any(
        isinstance(s, dict) and s.get("includeManagementEvents") is False for s in selectors
    ):
        return "management events no longer logged"
    return "event selectors changed"


# IAM: what a policy grants, whom a role trusts.

ADMIN_POLICIES = ("AdministratorAccess", "IAMFullAccess")


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def admin_grant(record: dict) -> str | None:
    """The admin policy attached, or the statement allowing every action on every resource."""
    arn = get(record, "requestParameters.policyArn")
    if isinstance(arn, str) and arn.rsplit("/", 1)[-1] in ADMIN_POLICIES:
        return f"{short(arn.rsplit('/', 1)[-1], 60)} attached"
    for statement in statements(get(record, "requestParameters.policyDocument")):
        if statement.get("Effect") != "Allow":
            continue
        actions = _as_list(statement.get("Action"))
        resources = _as_list(statement.get("Resource"))
        if any(a in ("*", "*:*", "iam:*") for a in actions) and "*" in resources:
            return "inline policy allows every action on every resource"
    return None


def policy_change(record: dict) -> str | None:
    return None if admin_grant(record) else ""


def external_trust(trusted: Collection[str] = ()) -> Callable[[dict], str | None]:
    """Principals of another account (not one of ``trusted``), or anyone, allowed to assume the role."""

    def detail(record: dict) -> str | None:
        document = get(record, "requestParameters.policyDocument") or get(
            record, "requestParameters.assumeRolePolicyDocument"
        )
        outside = outside_principals(document, account_of(record), trusted)
        return "role trusts " + ", ".join(outside) if outside else None

    return detail


def trust_change(trusted: Collection[str] = ()) -> Callable[[dict], str | None]:
    external = external_trust(trusted)
    return lambda record: None if external(record) else ""


def other_user(record: dict) -> str | None:
    """For calls on a user: say when it is somebody else."""
    target = get(record, "requestParameters.userName")
    if isinstance(target, str) and target and target != identity(record).get("userName"):
        return f"for another user, {short(target, 80)}"
    return ""


# Network exposure.


def _cidrs(permission: dict) -> list[str]:
    out = []
    for entry in items(permission.get("ipRanges")):
        if isinstance(entry, dict) and isinstance(entry.get("cidrIp"), str):
            out.append(entry["cidrIp"])
    for entry in items(permission.get("ipv6Ranges")):
        if isinstance(entry, dict) and isinstance(entry.get("cidrIpv6"), str):
            out.append(entry["cidrIpv6"])
    for key in ("cidrIp", "cidrIpv4", "cidrIpv6"):
        if isinstance(permission.get(key), str):
            out.append(permission[key])
    return out


def _ports(permission: dict) -> str:
    protocol = str(permission.get("ipProtocol", "")).lower()
    low, high = permission.get("fromPort"), permission.get("toPort")
    if protocol in ("-1", "all"):
        return "all traffic"
    if protocol in ("icmp", "1", "icmpv6", "58"):
        return protocol
    if low is None or high is None or (low in (0, -1) and high in (65535, -1)):
        return f"all ports/{protocol or '?'}"
    if low == high:
        return f"port {low}/{protocol}"
    return f"ports {low}-{high}/{protocol}"


def _is_anywhere(cidr: str) -> bool:
    return cidr.strip().endswith("/0")


def internet_ingress(record: dict) -> str | None:
    """Which ports a security group rule opened to every address (a /0 range)."""
    parameters = record.get("requestParameters")
    permissions = []
    if isinstance(parameters, dict):
        permissions.extend(p for p in items(parameters.get("ipPermissions")) if isinstance(p, dict))
        permissions.append(parameters)  # the older flat shape: cidrIp, fromPort, toPort
    for path in ("requestParameters.securityGroupRuleSet", "responseElements.securityGroupRuleSet"):
        permissions.extend(p for p in items(get(record, path)) if isinstance(p, dict) and not truthy(p.get("isEgress")))
    opened = {}
    for permission in permissions:
        for cidr in _cidrs(permission):
            if _is_anywhere(cidr):
                opened.setdefault(_ports(permission), cidr)
    if not opened:
        return None
    return "opened to the internet: " + ", ".join(f"{ports} from {short(cidr, 50)}" for ports, cidr in opened.items())


# Sharing.


def _shared_with(entries: list, inside: Collection[str]) -> list[str]:
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("group") == "all":
            out.append("everyone (public)")
        elif isinstance(entry.get("userId"), str) and entry["userId"] not in inside:
            out.append(f"account {entry['userId']}")
        elif isinstance(entry.get("organizationArn"), str):
            out.append(f"organization {entry['organizationArn']}")
        elif isinstance(entry.get("organizationalUnitArn"), str):
            out.append(f"organizational unit {entry['organizationalUnitArn']}")
    return out


def ec2_shared(permission: str, trusted: Collection[str] = ()) -> Callable[[dict], str | None]:
    def detail(record: dict) -> str | None:
        added = _shared_with(items(get(record, f"requestParameters.{permission}.add")), {account_of(record), *trusted})
        return f"shared with {short(', '.join(added), 200)}" if added else None

    return detail


def rds_shared(trusted: Collection[str] = ()) -> Callable[[dict], str | None]:
    def detail(record: dict) -> str | None:
        if get(record, "requestParameters.attributeName") != "restore":
            return None
        inside = {account_of(record), *trusted}
        added = [v for v in _as_list(get(record, "requestParameters.valuesToAdd")) if isinstance(v, str)]
        added = ["everyone (public)" if v == "all" else f"account {v}" for v in added if v not in inside]
        return f"restore shared with {short(', '.join(added), 200)}" if added else None

    return detail


# Execution.


def user_data_set(record: dict) -> str | None:
    parameters = record.get("requestParameters")
    if not isinstance(parameters, dict):
        return None
    if "userData" in parameters or parameters.get("attribute") == "userData":
        return "user data replaced (runs at the next start)"
    return None


UNUSUAL_INSTANCE_TYPES = ("p*", "g*", "inf*", "trn*", "dl*", "x*", "u-*", "f*", "vt*", "hpc*", "*.metal*")


def unusual_instances(patterns: Iterable[str] = UNUSUAL_INSTANCE_TYPES) -> Callable[[dict], str | None]:
    """Detail for RunInstances of an instance type matching any of the glob ``patterns``."""
    patterns = tuple(p.lower() for p in patterns)

    def detail(record: dict) -> str | None:
        kind = get(record, "requestParameters.instanceType")
        if not isinstance(kind, str) or not any(fnmatchcase(kind.lower(), p) for p in patterns):
            return None
        counts = [
            i.get("maxCount") for i in items(get(record, "requestParameters.instancesSet")) if isinstance(i, dict)
        ]
        count = f" x{counts[0]}" if counts and counts[0] not in (None, 1) else ""
        return f"instance type {short(kind, 40)}{count}"

    return detail


def _layer_name(arn: object) -> str:
    text = str(arn)
    return text.split(":layer:", 1)[1] if ":layer:" in text else text


def layers_added(record: dict) -> str | None:
    layers = get(record, "requestParameters.layers")
    if isinstance(layers, list) and layers:
        return "layers: " + short(", ".join(_layer_name(layer) for layer in layers[:10]), 160)
    return None


def public_lambda(record: dict) -> str | None:
    parameters = record.get("requestParameters")
    if not isinstance(parameters, dict):
        return None
    if api_name(record) == "AddPermission":
        if parameters.get("functionUrlAuthType") == "NONE":
            return "function URL opened without authentication"
        if (
            parameters.get("principal") == "*"
            and not parameters.get("sourceArn")
            and not parameters.get("sourceAccount")
        ):
            return f"anyone may {short(parameters.get('action'), 60)}"
        return None
    if parameters.get("authType") == "NONE":
        return "function URL without authentication"
    return None


@where(
    identityType={"AssumedRole"},
    principalArn=instance_of_arn,
    sourceIPAddress=is_public_ip,
    userAgent=lambda agent: user_agent_family(agent) not in ("aws-internal", "aws-service", ""),
)
def instance_credentials_public(record: dict) -> str | None:
    """An instance profile's credentials used from an internet address by a non-AWS client."""
    instance = instance_session(record)
    if not instance or not is_public_ip(record.get("sourceIPAddress")):
        return None
    if user_agent_family(record.get("userAgent")) in ("aws-internal", "aws-service", ""):
        return None
    return (
        f"credentials of instance {short(instance, 40)} (role {short(user_of(record), 80)}) called "
        f"{service(record)}:{api_name(record)} from {short(record.get('sourceIPAddress'), 60)}"
        f" with {short(record.get('userAgent'), 60)}"
    )
