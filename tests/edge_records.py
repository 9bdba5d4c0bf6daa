"""An edge-case trail for comparing engines: every identity type, both pump filters, every
reject rule, duplicates, fractional and offset times. Written as real trail files."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from tests.conftest import make_record

ISSUER = {"sessionIssuer": {"type": "Role", "userName": "deploy-role", "arn": "arn:aws:iam::111122223333:role/deploy"}}


def without(record: dict, key: str) -> dict:
    del record[key]
    return record


def identity(**fields) -> dict:
    return {"accountId": "111122223333", **fields}


def _accepted() -> list[dict]:
    t = "2024-08-02T08:30:0{}Z"
    return [
        make_record("root-1", t.format(1), userIdentity=identity(type="Root", principalId="111122223333")),
        make_record("iam-1", t.format(2)),  # alice
        make_record(
            "role-1",
            t.format(3),
            userIdentity=identity(
                type="AssumedRole",
                principalId="AROA:ci",
                arn="arn:aws:sts::111122223333:assumed-role/deploy/ci-run-42",
                sessionContext=ISSUER,
            ),
        ),
        make_record(
            "role-no-issuer",
            t.format(4),
            userIdentity=identity(type="AssumedRole", principalId="AROA:lonely", arn="arn:aws:sts::1:assumed-role/x/y"),
        ),
        make_record(
            "federated-1",
            t.format(5),
            userIdentity=identity(type="FederatedUser", arn="arn:aws:sts::1:federated-user/bob", sessionContext=ISSUER),
        ),
        make_record(
            "role-arn-without-slash",
            t.format(6),
            userIdentity=identity(type="AssumedRole", arn="no-slash-here", sessionContext=ISSUER),
        ),
        make_record(
            "role-empty-issuer",
            t.format(7),
            userIdentity=identity(
                type="AssumedRole",
                principalId="AROA:empty",
                sessionContext={"sessionIssuer": {"userName": ""}},
            ),
        ),
        make_record(
            "service-1",
            t.format(8),
            userIdentity={"type": "AWSService", "invokedBy": "lambda.amazonaws.com"},
            sourceIPAddress="lambda.amazonaws.com",
        ),
        make_record("account-1", t.format(9), userIdentity={"type": "AWSAccount", "principalId": "AIDAOTHER"}),
        make_record("empty-identity", "2024-08-02T08:30:10Z", userIdentity={}),
        make_record("no-identity", "2024-08-02T08:30:11Z", userIdentity=...),
        make_record("null-identity", "2024-08-02T08:30:12Z", userIdentity=None),
        make_record(
            "number-username",
            "2024-08-02T08:30:13Z",
            userIdentity={"type": "IAMUser", "userName": 7, "principalId": "AIDANUMBER"},
        ),
        make_record(
            "long-username",
            "2024-08-02T08:30:14Z",
            userIdentity={"type": "IAMUser", "userName": "u" * 9000},
        ),
        # Both filters: EC2 with and without an error, an empty errorCode meaning success.
        make_record("ec2-ok", "2024-08-02T08:30:20Z", eventSource="ec2.amazonaws.com", eventName="DescribeInstances"),
        make_record(
            "ec2-denied",
            "2024-08-02T08:30:21Z",
            eventSource="ec2.amazonaws.com",
            eventName="RunInstances",
            errorCode="Client.UnauthorizedOperation",
        ),
        make_record("empty-error", "2024-08-02T08:30:22Z", errorCode=""),
        make_record("null-error", "2024-08-02T08:30:23Z", errorCode=None),
        make_record("no-source", "2024-08-02T08:30:24Z", eventSource=...),
        make_record("readonly-text", "2024-08-02T08:30:25Z", readOnly="false"),
        # Times: a fraction at the end of a window, offsets, a naive time (UTC).
        make_record("fraction", "2024-08-02T08:30:29.999999Z"),
        make_record("offset-plus", "2024-08-02T10:30:35+02:00"),
        make_record("offset-minus", "2024-08-02T03:00:36.5-05:30"),
        make_record("naive", "2024-08-02T08:30:37"),
        make_record("millis", "2024-08-02T08:31:00.123Z"),
        # A late event for an early window, after a quiet minute.
        make_record("late", "2024-08-02T08:28:15Z"),
    ]


def _rejected() -> list[object]:
    t = "2024-08-02T08:30:40Z"
    return [
        without(make_record("", t), "eventID"),
        make_record(17, t),
        make_record("", t),
        make_record("x" * 129, t),
        without(make_record("no-time", t), "eventTime"),
        make_record("number-time", 1722587440),
        make_record("garbage-time", "yesterday"),
        make_record("impossible-date", "2024-02-30T00:00:00Z"),
        make_record("before-cloudtrail", "2012-12-31T23:59:59Z"),
        make_record("far-future", "2099-01-01T00:00:00Z"),
        make_record("number-source", t, eventSource=12),
        make_record("object-name", t, eventName={"forged": True}),
        make_record("list-ip", t, sourceIPAddress=["1.2.3.4"]),
        make_record("long-agent", t, userAgent="a" * 8193),
        make_record("bool-error", t, errorCode=True),
        make_record("bad-readonly", t, readOnly="yes"),
        make_record("number-readonly", t, readOnly=1),
        make_record("string-identity", t, userIdentity="root"),
        make_record("huge", t, requestParameters={"blob": "z" * 300_000}),
        5,
        "not a record",
        None,
    ]


def write_edge_trail(root: Path, org: str = "o-edge") -> list[Path]:
    """Two trail files and a JSON Lines file; a record duplicated within and across files."""
    accepted, rejected = _accepted(), _rejected()
    duplicate = make_record("dup-1", "2024-08-02T08:30:38Z")
    files = {
        f"AWSLogs/{org}/111122223333/CloudTrail/us-east-1/2024/08/02/a.json.gz": accepted[:12] + [duplicate, duplicate],
        f"AWSLogs/{org}/111122223333/CloudTrail/eu-west-1/2024/08/02/b.json.gz": accepted[12:] + rejected + [duplicate],
    }
    written = []
    for key, records in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(orjson.dumps({"Records": records})))
        written.append(path)
    lines = root / "extra" / "late.jsonl"
    lines.parent.mkdir(parents=True)
    lines.write_bytes(orjson.dumps(make_record("jsonl-1", "2024-08-02T08:31:05Z")) + b"\n{broken\n")
    written.append(lines)
    return written
