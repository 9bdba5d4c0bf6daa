"""Who may see the dashboard after signing in with the identity provider (OpenID Connect).

Streamlit's ``st.login`` does the sign-in and keeps the identity token's claims (``st.user``);
this module decides on them, without Streamlit. ``INSIGHTS_SSO_ALLOW`` lists who may enter,
comma-separated:

- ``alice@example.com``: that e-mail address;
- ``@example.com``: every address of that domain (not its subdomains);
- ``group:security``: members of that group, from the claim ``INSIGHTS_SSO_GROUPS_CLAIM``
  (``groups`` for Okta and Entra ID, ``cognito:groups`` for Cognito).

An e-mail counts only when the provider says it is verified (``email_verified`` is not false),
and a token past its ``exp`` lets nobody in. Nobody is allowed while the list is empty.

>>> rules = parse_allow("alice@example.com, @corp.example, group:security")
>>> allowed({"email": "Alice@Example.com"}, rules), allowed({"email": "bob@corp.example"}, rules)
(True, True)
>>> allowed({"email": "eve@evil.example", "groups": ["security"]}, rules)
True
>>> allowed({"email": "eve@evil.example", "groups": ["staff"]}, rules)
False
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AllowList:
    emails: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.emails or self.domains or self.groups)


def parse_allow(text: str) -> AllowList:
    """The allow-list from its setting; raises ValueError for an entry that is none of the three."""
    emails, domains, groups = set(), set(), set()
    for entry in (item.strip() for item in text.split(",")):
        if not entry:
            continue
        if entry.lower().startswith("group:") and entry[6:].strip():
            groups.add(entry[6:].strip())
        elif entry.startswith("@") and "." in entry[1:] and "@" not in entry[1:]:
            domains.add(entry[1:].lower())
        elif entry.count("@") == 1 and all(entry.split("@")):
            emails.add(entry.lower())
        else:
            raise ValueError(f"{entry!r} is not an e-mail address, @domain or group:NAME")
    return AllowList(frozenset(emails), frozenset(domains), frozenset(groups))


def expired(claims: dict[str, Any], now: float | None = None) -> bool:
    """Whether the identity token has an expiry and it has passed."""
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int | float) or not math.isfinite(expires):
        return False
    return expires <= (time.time() if now is None else now)


def _groups(claims: dict[str, Any], claim: str) -> set[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {item for item in value if isinstance(item, str)}
    return set()


def allowed(claims: dict[str, Any], rules: AllowList, groups_claim: str = "groups") -> bool:
    """Whether the signed-in identity with these claims may see the dashboard."""
    if not rules:
        return False
    email = claims.get("email")
    if isinstance(email, str) and email.count("@") == 1 and claims.get("email_verified") is not False:
        email = email.strip().lower()
        if email in rules.emails or email.rsplit("@", 1)[1] in rules.domains:
            return True
    return bool(_groups(claims, groups_claim) & rules.groups)


def identity(claims: dict[str, Any]) -> str:
    """How the user is named in the app: the e-mail, else the subject."""
    for key in ("email", "preferred_username", "sub"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return "unknown"
