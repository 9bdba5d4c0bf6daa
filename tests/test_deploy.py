"""The deployment files: the EventBridge template passes cfn-lint and routes what the app
expects; the IAM policy grants the queue's three actions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cfnlint.decode import decode_str

DEPLOY = Path(__file__).parent.parent / "deploy"
TEMPLATE = DEPLOY / "eventbridge.yaml"


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--regions", "us-east-1", "eu-west-1", "--", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_eventbridge_template_passes_cfn_lint():
    result = lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_fails_a_template_with_a_rule_state_that_does_not_exist(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", "ENABLED_ALL", 1))
    assert lint(broken).returncode != 0  # the test above can fail


def test_every_rule_takes_read_only_calls_too_and_the_queue_has_a_dead_letter_queue():
    template, problems = decode_str(TEMPLATE.read_text())
    assert not problems
    resources = template["Resources"]
    rules = [r for r in resources.values() if r["Type"] == "AWS::Events::Rule"]
    assert len(rules) == 2  # the home region's, and the forwarding one of the others
    for rule in rules:
        assert rule["Properties"]["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
        assert set(rule["Properties"]["EventPattern"]["detail-type"]) == {
            "AWS API Call via CloudTrail",
            "AWS Console Sign In via CloudTrail",
            "AWS Service Event via CloudTrail",
        }
    assert "deadLetterTargetArn" in resources["Queue"]["Properties"]["RedrivePolicy"]
    assert resources["Queue"]["Properties"]["VisibilityTimeout"] == {"Ref": "VisibilityTimeout"}
    assert template["Parameters"]["VisibilityTimeout"]["Default"] >= 5 * 60 + 60  # the save interval and a margin
    assert resources["OrganizationBusPolicy"]["Properties"]["Statement"]["Condition"]["StringEquals"]


def test_the_iam_policy_lets_the_app_read_and_delete_from_the_queue():
    statements = json.loads((DEPLOY / "iam-policy.json").read_text())["Statement"]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"} <= actions
    assert not [a for a in actions if a.endswith("*")]
