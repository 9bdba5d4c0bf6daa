"""Sigma rules as a second rule source (metrics.detections.sigma): each rule written for these
tests covers modifiers and condition forms, against a firing and a silent record; what is not
supported is refused with its reason, and the other rules still run."""

import json
import shutil
from pathlib import Path

import pytest

from metrics.detections import RULES, Detector
from metrics.detections.__main__ import main
from metrics.detections.sigma import Unsupported, compile_rule, load_folder
from tests.conftest import STRATUS, make_record, stratus

SIGMA = Path(__file__).parent / "data" / "sigma"
ALICE = {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "userName": "alice"}
ROOT = {"type": "Root", "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333"}
_ids = iter(range(10**9))


def rec(source: str, name: str, seconds: int = 0, **fields) -> dict:
    fields.setdefault("userIdentity", ALICE)
    fields.setdefault("userAgent", "aws-cli/2.22.4 md/distrib#ubuntu.24")
    return make_record(
        f"s-{next(_ids):06d}",
        f"2024-08-02T08:{seconds // 60:02d}:{seconds % 60:02d}Z",
        eventSource=f"{source}.amazonaws.com",
        eventName=name,
        **fields,
    )


@pytest.fixture(scope="module")
def loaded():
    return load_folder(str(SIGMA))


def sigma_hits(loaded, records) -> dict[str, list]:
    detector = Detector(loaded.rules, group_seconds=0)
    out: dict[str, list] = {}
    for hit in detector.observe(records):
        out.setdefault(hit.rule_id.removeprefix("sigma:0b1c2d3e-0000-4000-8000-00000000000"), []).append(hit)
    assert not detector.errors
    return out


PASSROLE = json.dumps({"Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}).replace(" ", "")

# (rule number, record, fires?, what it shows)
CASES = [
    (1, rec("iam", "CreateUser"), True, "a value of the list, case-insensitively"),
    (1, rec("iam", "CREATEACCESSKEY"), True, "upper case in the record"),
    (1, rec("iam", "DeleteUser"), False, "another API"),
    (1, rec("sts", "CreateUser"), False, "both fields must match"),
    (2, rec("sts", "GetCallerIdentity", userAgent="aws-cli/2.22 md/distrib#KALI.2024"), True, "contains"),
    (2, rec("sts", "GetCallerIdentity", userAgent="python-requests/2.32.3"), True, "startswith, second map"),
    (2, rec("sts", "GetCallerIdentity", userAgent="Python-Requests/2.32.3"), True, "startswith ignores case"),
    (2, rec("sts", "GetCallerIdentity", userAgent="my-python-requests/2"), False, "startswith is at the start"),
    (
        2,
        rec("sts", "GetCallerIdentity", userAgent="python-requests/2.32.3", sourceIPAddress="198.51.100.250"),
        False,
        "not endswith",
    ),
    (
        3,
        rec("iam", "PutRolePolicy", userAgent="Boto3/1.35", requestParameters={"policyDocument": PASSROLE}),
        True,
        "re, contains|all and re|i",
    ),
    (
        3,
        rec("iam", "PutRolePolicy", userAgent="aws-cli/2.22", requestParameters={"policyDocument": PASSROLE}),
        True,
        "cased with a wildcard",
    ),
    (
        3,
        rec("iam", "PutRolePolicy", userAgent="AWS-CLI/2.22", requestParameters={"policyDocument": PASSROLE}),
        False,
        "cased is case-sensitive",
    ),
    (
        3,
        rec("iam", "putrolepolicy", userAgent="Boto3/1.35", requestParameters={"policyDocument": PASSROLE}),
        False,
        "re is case-sensitive",
    ),
    (
        3,
        rec(
            "iam",
            "PutRolePolicy",
            userAgent="Boto3/1.35",
            requestParameters={"policyDocument": PASSROLE.replace('"Resource":"*"', '"Resource":"arn:x"')},
        ),
        False,
        "all values must be contained",
    ),
    (
        3,
        rec("iam", "PutRolePolicyVersion", userAgent="Boto3/1.35", requestParameters={"policyDocument": PASSROLE}),
        False,
        "re anchored by the rule",
    ),
    (4, rec("cloudtrail", "StopLogging"), True, "wildcard *, no errorCode, null field"),
    (4, rec("cloudtrail", "DeleteTrail"), True, "wildcard ?"),
    (4, rec("cloudtrail", "DeleteTrails"), False, "? is one character"),
    (4, rec("cloudtrail", "StopLogging", errorCode="AccessDenied"), False, "exists: false"),
    (4, rec("cloudtrail", "StopLogging", responseElements={"ok": True}), False, "null: absent or null only"),
    (5, rec("logs", "PutRetentionPolicy", readOnly=False, requestParameters={"retentionInDays": 1}), True, "numbers"),
    (5, rec("logs", "PutRetentionPolicy", readOnly=True, requestParameters={"retentionInDays": 1}), False, "booleans"),
    (5, rec("logs", "PutRetentionPolicy", readOnly=False, requestParameters={"retentionInDays": 14}), False, "14"),
    (5, rec("logs", "CreateLogGroup", requestParameters={"logGroupName": "/literal*star"}), True, "escaped *"),
    (5, rec("logs", "CreateLogGroup", requestParameters={"logGroupName": "/literalXstar"}), False, "not a wildcard"),
    (5, rec("ssm", "GetParameters", requestParameters={"names": ["/a", "/db-PASSWORD"]}), True, "a list field"),
    (5, rec("ssm", "GetParameters", requestParameters={"names": ["/a", "/b"]}), False, "no item matches"),
    (6, rec("iam", "ListUsers", userIdentity=ROOT, errorCode="AccessDenied"), True, "all of them"),
    (6, rec("iam", "ListUsers", userIdentity=ROOT), False, "one of them only"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"rule{c[0]}-{'fires' if c[2] else 'silent'}-{c[3]}" for c in CASES])
def test_a_sigma_rule_on_a_hand_made_record(loaded, case):
    number, record, fires, _ = case
    hits = sigma_hits(loaded, [record])
    assert (str(number) in hits) is fires, {k: [h.title for h in v] for k, v in hits.items()}


def test_every_test_rule_loads_and_has_a_firing_and_a_silent_case(loaded):
    assert loaded.refused == []
    assert len(loaded.rules) == 6
    for number in range(1, 7):
        assert {fires for n, _, fires, _ in CASES if n == number} == {True, False}, number


def test_a_sigma_hit_carries_the_rules_title_level_tags_and_id(loaded):
    (hit,) = sigma_hits(loaded, [rec("iam", "CreateUser")])["1"]
    assert hit.rule_id == "sigma:0b1c2d3e-0000-4000-8000-000000000001"
    assert hit.title == "IAM user or access key created (test rule)"
    assert hit.severity == "medium" and hit.technique == "T1136.003"
    assert hit.tags == ("attack.persistence", "attack.t1136.003")
    assert "Sigma: IAM user or access key created" in hit.summary
    (hit,) = sigma_hits(
        loaded, [rec("logs", "PutRetentionPolicy", readOnly=False, requestParameters={"retentionInDays": 1})]
    )["5"]
    assert hit.severity == "info" and hit.technique == ""  # informational; no ATT&CK tag


def test_sigma_hits_go_through_the_same_grouping(loaded):
    keys = [rec("iam", "CreateAccessKey", i * 10) for i in range(3)]
    (hit,) = Detector(loaded.rules).observe(keys)
    assert len(hit.event_ids) == 3 and hit.summary.startswith("3 matching calls within 10 min")


def test_per_event_matching_is_exact_on_the_stratus_files(tmp_path):
    (tmp_path / "ec2.yml").write_text(
        "title: EC2 calls\nid: exact-ec2\nlogsource: {product: aws, service: cloudtrail}\n"
        "detection:\n  ec2: {eventSource: ec2.amazonaws.com}\n  denied: {errorCode|contains: Unauthorized}\n"
        "  condition: ec2 and not denied\nlevel: low\n"
    )
    loaded = load_folder(str(tmp_path))
    records = [r for path in sorted(STRATUS.glob("*.json")) for r in stratus(path.stem)]
    detector = Detector((*RULES, *loaded.rules), max_hits=10**9)
    detector.observe(records)
    linked = [e for h in detector.hits() if h.rule_id == "sigma:exact-ec2" for e in h.event_ids]
    expected = {
        r["eventID"]
        for r in records
        if r.get("eventSource") == "ec2.amazonaws.com" and "unauthorized" not in (r.get("errorCode") or "").lower()
    }
    assert len(linked) == len(set(linked)) and set(linked) == expected and len(expected) > 20


def rule_text(detection: str, **header) -> str:
    lines = ["title: t", "id: bad-rule", "logsource:", "  product: aws", "  service: cloudtrail", "detection:"]
    lines += ["  " + line for line in detection.strip().splitlines()]
    lines += [f"{k}: {v}" for k, v in header.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (rule_text("keywords:\n  - evil\ncondition: keywords"), "keyword searches"),
        (rule_text("sel:\n  eventName|base64offset|contains: x\ncondition: sel"), "modifier 'base64offset'"),
        (rule_text("sel:\n  sourceIPAddress|cidr: 10.0.0.0/8\ncondition: sel"), "modifier 'cidr'"),
        (rule_text("sel:\n  eventName: x\ntimeframe: 5m\ncondition: sel"), "timeframe"),
        (rule_text("sel:\n  eventName: x\ncondition: sel | count() > 5"), "aggregations"),
        (rule_text("sel:\n  eventName: x\ncondition: sel and other"), "does not define"),
        (rule_text("sel:\n  eventName: x\ncondition: any of sel*"), "'any of' is not Sigma"),
        (rule_text("sel:\n  eventName: x\ncondition: 2 of sel*"), "only '1 of' and 'all of'"),
        (rule_text("sel:\n  eventName: x\ncondition: (sel"), "ends too early"),
        (rule_text("sel:\n  eventName|exists: yes-please\ncondition: sel"), "exists takes true or false"),
        (rule_text("sel:\n  eventName|re: '('\ncondition: sel"), "invalid regular expression"),
        (rule_text("sel:\n  eventName|i: x\ncondition: sel"), "only go with re"),
        (rule_text("sel:\n  eventName: x\ncondition: sel").replace("cloudtrail", "s3"), "logsource"),
        (rule_text("sel:\n  eventName: x\ncondition: sel").replace("id: bad-rule\n", ""), "no id"),
        (rule_text("sel:\n  eventName: x\ncondition: sel", level="urgent"), "unknown level"),
    ],
)
def test_an_unsupported_rule_is_refused_with_its_reason(tmp_path, text, reason):
    (tmp_path / "rule.yml").write_text(text)
    loaded = load_folder(str(tmp_path))
    assert loaded.rules == []
    ((path, why),) = loaded.refused
    assert path == "rule.yml" and reason in why, why


def test_a_malformed_file_is_reported_and_the_other_rules_still_run(tmp_path):
    shutil.copytree(SIGMA, tmp_path / "rules")
    (tmp_path / "rules" / "broken.yml").write_text("title: broken\ndetection: [unclosed\n")
    (tmp_path / "rules" / "two.yml").write_text(rule_text("sel: {eventName: x}\ncondition: sel") + "---\ntitle: b\n")
    (tmp_path / "rules" / "notes.txt").write_text("not a rule")
    duplicate = (SIGMA / "all_of_them.yml").read_text()
    (tmp_path / "rules" / "zz_duplicate.yml").write_text(duplicate)
    loaded = load_folder(str(tmp_path / "rules"))
    assert len(loaded.rules) == 6
    reasons = dict(loaded.refused)
    assert set(reasons) == {"broken.yml", "two.yml", "zz_duplicate.yml"}
    assert reasons["broken.yml"].startswith("malformed YAML at line")
    assert "several YAML documents" in reasons["two.yml"] and "same id" in reasons["zz_duplicate.yml"]
    assert sigma_hits(loaded, [rec("iam", "CreateUser")]).keys() == {"1"}
    assert load_folder(str(tmp_path / "missing")).refused == [(str(tmp_path / "missing"), "not a folder")]
    assert load_folder("").rules == [] and load_folder("").refused == []


def test_a_logsource_definition_is_a_note_not_a_condition():
    rule = compile_rule(
        {
            "title": "t",
            "id": "with-definition",
            "logsource": {"product": "AWS", "service": "cloudtrail", "definition": "management events"},
            "detection": {"sel": {"eventName": "StopLogging"}, "condition": "sel"},
        }
    )
    assert rule.match(rec("cloudtrail", "StopLogging")) and not rule.match(rec("cloudtrail", "StartLogging"))
    with pytest.raises(Unsupported, match="logsource"):
        compile_rule(
            {"title": "t", "id": "x", "logsource": {"product": "aws", "service": "cloudtrail", "category": "x"}}
        )


def test_compile_rule_refuses_what_is_not_a_rule():
    with pytest.raises(Unsupported, match="YAML mapping"):
        compile_rule(["a"])
    with pytest.raises(Unsupported, match="correlation"):
        compile_rule({"title": "t", "correlation": {}})


def test_the_cli_runs_sigma_rules_beside_the_table(capsys):
    path = STRATUS / "aws.defense-evasion.cloudtrail-stop.json"
    assert main([str(path), "--sigma", str(SIGMA)]) == 0
    out = capsys.readouterr()
    rules = [line.split(",", 1)[0] for line in out.out.splitlines()[1:]]
    assert "cloudtrail-stopped" in rules and "sigma:0b1c2d3e-0000-4000-8000-000000000004" in rules
    assert f"loaded 6 Sigma rule(s) from {SIGMA}" in out.err


def test_the_cli_lists_the_refused_files(tmp_path, capsys):
    (tmp_path / "broken.yml").write_text(": : :\n")
    assert main([str(STRATUS / "aws.defense-evasion.cloudtrail-stop.json"), "--sigma", str(tmp_path)]) == 0
    assert "refused broken.yml: malformed YAML" in capsys.readouterr().err
