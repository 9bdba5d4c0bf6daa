"""Who may enter after signing in with the identity provider: the allow-list and token expiry."""

import doctest

import pytest

from auth import sso
from auth.sso import AllowList, allowed, expired, identity, parse_allow

RULES = parse_allow("alice@example.com, @corp.example, group:security")


def test_docstring_examples_hold():
    assert doctest.testmod(sso).failed == 0


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"email": "alice@example.com"}, True),
        ({"email": "ALICE@example.com ", "email_verified": True}, True),
        ({"email": "alice@example.com", "email_verified": False}, False),  # anyone can type an address
        ({"email": "bob@example.com"}, False),
        ({"email": "bob@corp.example"}, True),
        ({"email": "bob@sub.corp.example"}, False),
        ({"email": "bob@corp.example.evil"}, False),
        ({"email": "eve@evil.example", "groups": ["staff", "security"]}, True),
        ({"email": "eve@evil.example", "groups": "security"}, True),
        ({"email": "eve@evil.example", "groups": ["Security"]}, False),
        ({"sub": "12345"}, False),
        ({"email": ["alice@example.com"]}, False),
    ],
)
def test_the_allow_list_admits_addresses_domains_and_groups_only(claims, ok):
    assert allowed(claims, RULES) is ok


def test_an_empty_allow_list_admits_nobody():
    assert not AllowList()
    assert allowed({"email": "alice@example.com"}, parse_allow("")) is False


def test_the_groups_claim_is_a_setting():
    rules = parse_allow("group:admins")
    assert allowed({"cognito:groups": ["admins"]}, rules, "cognito:groups")
    assert not allowed({"cognito:groups": ["admins"]}, rules)


@pytest.mark.parametrize("entry", ["alice", "@nodot", "group:", "a@b@c", "@a@b.c"])
def test_an_entry_that_is_none_of_the_three_is_an_error(entry):
    with pytest.raises(ValueError, match="is not an e-mail address"):
        parse_allow(entry)


def test_a_token_past_its_expiry_is_expired():
    assert expired({"exp": 100}, now=100.0) and not expired({"exp": 101}, now=100.0)
    assert not expired({}, now=100.0) and not expired({"exp": "soon"}, now=100.0)


def test_a_user_is_named_by_email_else_subject():
    assert identity({"email": "a@b.c", "sub": "1"}) == "a@b.c"
    assert identity({"sub": "1"}) == "1"
