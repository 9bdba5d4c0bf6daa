"""The explorer's search language: terms anywhere in the record, field:value, AND/OR/NOT,
phrases and wildcards, and malformed searches explained."""

import orjson
import pytest

from metrics.explore import EventFilter, matching
from metrics.query import QueryError, parse, required_text
from tests.conftest import batch_of, make_record

RECORD = {
    "eventName": "GetObject",
    "errorCode": "AccessDenied",
    "userIdentity": {
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLE:ci-run-7",
        "arn": "arn:aws:sts::111122223333:assumed-role/deployer/ci-run-7",
        "accessKeyId": "ASIAEXAMPLEKEY",
    },
    "requestParameters": {"bucketName": "logs-bucket", "tags": [{"key": "team", "value": "Blue Team"}]},
    "readOnly": True,
    "user": "deployer",
}


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("ASIAEXAMPLEKEY", True),  # a nested string, anywhere
        ("asiaexample", True),  # a piece of it, any case
        ("accessKeyId", False),  # keys are not searched, only values
        ("userIdentity.accessKeyId:ASIAEXAMPLEKEY", True),
        ("userIdentity.accessKeyId:ASIAEXAMPLE", False),  # a field's value is matched whole
        ("userIdentity.accessKeyId:ASIA*", True),
        ("errorCode:accessdenied", True),
        ("errorCode:AccessDenied AND eventName:GetObject", True),
        ("errorCode:AccessDenied eventName:PutObject", False),  # side by side: both must hold
        ("eventName:PutObject OR eventName:GetObject", True),
        ("NOT errorCode:AccessDenied", False),
        ("errorCode:AccessDenied AND NOT user:alice", True),
        ("(eventName:PutObject OR errorCode:Throttling) AND deployer", False),
        ("eventName:PutObject OR errorCode:AccessDenied AND deployer", True),  # AND binds tighter
        ('"Blue Team"', True),  # a phrase, in a list inside an object
        ('"team blue"', False),
        ("requestParameters.tags.value:blue*", True),  # through a list
        ("requestParameters:logs-bucket", True),  # an object matches if any string in it does
        ("errorMessage:*", False),  # present at all
        ("errorCode:*", True),
        ("readOnly:true", True),
        ("arn:aws:sts::111122223333:assumed-role/deployer/ci-run-7", True),  # an ARN is text, not a field
        ("*deployer/ci-*", True),
        ('user:"deployer"', True),
        ("nosuchfield:x", False),
    ],
)
def test_a_search_matches_a_record_as_an_analyst_expects(search, expected):
    assert parse(search).matches(RECORD) is expected


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ('"open phrase', "a quote is not closed"),
        ("(errorCode:x", "a parenthesis is not closed"),
        ("errorCode:x)", "a closing parenthesis has no opening one"),
        ("errorCode:x AND", "the search ends where a term was expected"),
        ("OR errorCode:x", "OR needs a term on each side"),
    ],
)
def test_a_malformed_search_is_explained_not_raised_later(search, message):
    with pytest.raises(QueryError, match=message):
        parse(search)


def test_an_empty_search_matches_everything():
    assert parse("   ") is None


def test_only_certain_text_is_required_of_the_raw_json():
    assert required_text(parse("AKIA* logs")) == ["akia", "logs"]
    assert required_text(parse("a OR b")) == []  # either may be missing
    assert required_text(parse("user:deployer")) == []  # a column may be derived from the record
    assert required_text(parse("NOT x")) == []


def test_the_events_filter_searches_the_full_records_it_is_given(engine):
    alice = {"type": "IAMUser", "userName": "alice", "accessKeyId": "AKIAALICE", "principalId": "AIDAALICE"}
    records = [
        make_record("k1", "2024-08-02T08:30:00Z", userIdentity=alice, requestID="req-1111"),
        make_record("k2", "2024-08-02T08:30:05Z", errorCode="AccessDenied", requestID="req-2222"),
    ]
    engine.ingest(batch_of(records))
    frame = engine.buffer.snapshot().frame()
    raws = engine.buffer.raw_records

    def found(text):
        return matching(frame, EventFilter(text=text), raws=raws)["eventID"].tolist()

    assert found("AKIAALICE") == ["k1"]  # only in the full record, not in the table's columns
    assert found("req-2222") == ["k2"]
    assert found("userIdentity.accessKeyId:AKIAALICE") == ["k1"]
    assert found("errorCode:AccessDenied") == ["k2"]
    assert found("user:alice OR errorCode:AccessDenied") == ["k1", "k2"]
    assert found("NOT errorCode:*") == ["k1"]
    assert orjson.loads(raws(["k1"])[0])["userIdentity"]["accessKeyId"] == "AKIAALICE"
