"""Who a resource policy or an ACL lets in: principals compared with the event's own account.

A policy arrives as a JSON string or as an already-parsed object, depending on the service;
both are read. ``trusted`` are the organisation's own accounts (``INSIGHTS_ORG_ACCOUNTS``),
which count as inside.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable

MAX_POLICY_CHARS = 64 * 1024
ACCOUNT_ID = re.compile(r"(?<![0-9])([0-9]{12})(?![0-9])")

# Conditions that tie a ``*`` principal to known callers: not public, unless they name an
# account outside.
_RESTRICTING_KEYS = (
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:sourceaccount",
    "aws:sourcearn",
    "aws:sourceowner",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceip",
    "aws:resourceorgid",
    "kms:calleraccount",
    "kms:viaservice",
)
_ACCOUNT_KEYS = ("aws:principalaccount", "aws:sourceaccount", "aws:sourceowner", "kms:calleraccount")

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def parse(document: object) -> dict | None:
    """A policy document as a dict, from a JSON string or a dict; None for anything else."""
    if isinstance(document, dict):
        return document
    if not isinstance(document, str) or len(document) > MAX_POLICY_CHARS:
        return None
    try:
        parsed = json.loads(document)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def statements(document: object) -> list[dict]:
    policy = parse(document)
    found = policy.get("Statement") if policy else None
    if isinstance(found, dict):
        found = [found]
    return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []


def as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _condition_keys(statement: dict) -> dict[str, list]:
    """Condition key (lower case) -> its values, whatever the operator."""
    out: dict[str, list] = {}
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        return out
    for block in condition.values():
        if isinstance(block, dict):
            for key, value in block.items():
                if isinstance(key, str):
                    out.setdefault(key.lower(), []).extend(as_list(value))
    return out


def _account(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    found = ACCOUNT_ID.search(value)
    return found.group(1) if found else None


def outside_principals(document: object, own: str, trusted: Collection[str] = ()) -> list[str]:
    """What the Allow statements let in from outside: ``anyone (*)`` or ``account N``, in order,
    each once. Service and federated principals are not accounts and are left out."""
    inside = {own, *trusted}
    out: list[str] = []
    for statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        values = as_list(principal.get("AWS")) if isinstance(principal, dict) else as_list(principal)
        conditions = _condition_keys(statement)
        for value in values:
            if value == "*":
                named = [a for key in _ACCOUNT_KEYS for a in map(_account, conditions.get(key, ())) if a]
                if any(key in conditions for key in _RESTRICTING_KEYS):
                    out.extend(f"account {a}" for a in named if a not in inside)
                else:
                    out.append("anyone (*)")
            else:
                account = _account(value)
                if account and account not in inside:
                    out.append(f"account {account}")
    return list(dict.fromkeys(out))


def outside_accounts(values: Iterable[object], own: str, trusted: Collection[str] = ()) -> list[str]:
    """``account N`` for each value naming an account (an id or an ARN) outside, ``anyone (*)`` for *."""
    inside = {own, *trusted}
    out = []
    for value in values:
        if value == "*":
            out.append("anyone (*)")
            continue
        account = _account(value)
        if account and account not in inside:
            out.append(f"account {account}")
    return list(dict.fromkeys(out))


def acl_grantees(parameters: dict) -> list[str]:
    """Who an S3 ACL (the XML body or the x-amz-grant headers, or a canned ACL) opens the bucket to
    beyond its owner: everyone, any AWS account, or another canonical user or e-mail."""
    out = []
    canned = parameters.get("x-amz-acl")
    for acl in as_list(canned):
        if acl in ("public-read", "public-read-write"):
            out.append(f"everyone ({acl})")
        elif acl == "authenticated-read":
            out.append("any AWS account (authenticated-read)")
    for key, value in parameters.items():
        if isinstance(key, str) and key.startswith("x-amz-grant-"):
            for grant in as_list(value):
                text = str(grant)
                if ALL_USERS in text:
                    out.append(f"everyone ({key.removeprefix('x-amz-grant-')})")
                elif AUTHENTICATED_USERS in text:
                    out.append(f"any AWS account ({key.removeprefix('x-amz-grant-')})")
    policy = parameters.get("AccessControlPolicy")
    if isinstance(policy, dict):
        owner = policy.get("Owner")
        owner_id = owner.get("ID") if isinstance(owner, dict) else None
        acl = policy.get("AccessControlList")
        grants = acl.get("Grant") if isinstance(acl, dict) else None
        for grant in as_list(grants):
            if not isinstance(grant, dict):
                continue
            grantee = grant.get("Grantee")
            if not isinstance(grantee, dict):
                continue
            permission = str(grant.get("Permission", "?"))
            uri = grantee.get("URI")
            if uri == ALL_USERS:
                out.append(f"everyone ({permission})")
            elif uri == AUTHENTICATED_USERS:
                out.append(f"any AWS account ({permission})")
            elif isinstance(grantee.get("EmailAddress"), str):
                out.append(f"e-mail {grantee['EmailAddress']} ({permission})")
            elif isinstance(grantee.get("ID"), str) and owner_id and grantee["ID"] != owner_id:
                out.append(f"another canonical user ({permission})")
    return list(dict.fromkeys(out))
