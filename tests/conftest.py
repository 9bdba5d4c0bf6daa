import copy
import json
from pathlib import Path

import pytest

from collectors.normalise import Rejects, normalise_all
from metrics.engine import Engine

DATA = Path(__file__).parent / "data"
STRATUS = DATA / "stratus-red-team"


def stratus(name: str) -> list[dict]:
    """The records of one Stratus Red Team technique file."""
    return json.loads((STRATUS / f"{name}.json").read_text())


def all_stratus() -> list[dict]:
    return [r for path in sorted(STRATUS.glob("*.json")) for r in json.loads(path.read_text())]


BASE_RECORD = {
    "eventVersion": "1.10",
    "userIdentity": {
        "type": "IAMUser",
        "principalId": "AIDAEXAMPLE",
        "arn": "arn:aws:iam::111122223333:user/alice",
        "accountId": "111122223333",
        "userName": "alice",
    },
    "eventTime": "2024-08-02T08:30:00Z",
    "eventSource": "sts.amazonaws.com",
    "eventName": "GetCallerIdentity",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "198.51.100.7",
    "userAgent": "aws-cli/2.22.4",
    "requestParameters": None,
    "responseElements": None,
    "eventID": "00000000-0000-4000-8000-000000000000",
    "readOnly": True,
    "eventType": "AwsApiCall",
    "recipientAccountId": "111122223333",
}


def make_record(event_id: str, event_time: str, **fields) -> dict:
    """A valid record with the given eventID and eventTime; ``fields`` replace top-level keys
    (a value of ``...`` removes the key)."""
    record = copy.deepcopy(BASE_RECORD)
    record["eventID"] = event_id
    record["eventTime"] = event_time
    for key, value in fields.items():
        if value is ...:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def batch_of(records):
    rejects = Rejects()
    batch = normalise_all(records, rejects)
    assert rejects.total == 0, rejects.summary()
    return batch


@pytest.fixture
def engine():
    return Engine(retention_seconds=None, seed=0)
