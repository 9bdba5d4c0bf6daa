"""What the command lines say when they cannot do their work: one line and a clear exit
status, never a traceback; and help text without reStructuredText markup."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import STRATUS

ROOT = Path(__file__).parent.parent
NO_AWS = {
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_MAX_ATTEMPTS": "1",
}


def run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **NO_AWS, **env},
    )


@pytest.mark.parametrize(
    ("env", "args", "reason"),
    [
        ({}, (), "NoCredentialsError: Unable to locate credentials"),
        ({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}, ("--role-arn", "not-an-arn"), "is not a role ARN"),
        (
            {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9"},
            (),
            "EndpointConnectionError",
        ),
    ],
)
def test_the_cloudtrail_command_that_cannot_start_says_why_in_one_line_and_exits_2(tmp_path, env, args, reason):
    result = run("collectors", "cloudtrail", "--regions", "us-east-1", "--out", str(tmp_path / "o.jsonl"), *args, **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("python -m collectors cloudtrail: cannot start: ")
    assert reason in lines[0]


def test_detections_on_a_missing_file_names_it_as_unreadable_and_fails():
    result = run("metrics.detections", "/nope", str(STRATUS / "aws.defense-evasion.cloudtrail-stop.json"))
    assert result.returncode == 1
    assert "could not read 1 file(s): /nope (No such file or directory)" in result.stderr
    assert "rejected" not in result.stderr  # a file that is not there is no rejected record
    assert result.stdout.count("\n") > 1  # the readable file's hits are still written


def test_removing_the_last_active_user_asks_for_force(tmp_path):
    from auth import users

    path = str(tmp_path / "users.yaml")

    def only_alice(config):
        entry = users.new_user("alice", users.new_password())
        entry["must_change_password"] = False
        config["credentials"]["usernames"] = {"alice": entry}

    users.update(path, only_alice, create=True)
    refused = run("auth", "users", "remove", "alice", "--file", path)
    assert refused.returncode == 2
    assert "alice is the last active user" in refused.stderr and "--force" in refused.stderr
    assert "alice" in users.read(path)["credentials"]["usernames"]
    forced = run("auth", "users", "remove", "alice", "--file", path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert users.read(path)["credentials"]["usernames"] == {}


@pytest.mark.parametrize(
    "command",
    [
        ("metrics",),
        ("metrics.detections",),
        ("collectors",),
        ("collectors", "cloudtrail"),
        ("auth",),
        ("auth", "users", "remove"),
    ],
)
def test_help_has_no_rst_markup(command):
    result = run(command[0], *command[1:], "--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and ":func:" not in result.stdout


def test_sparse_metrics_leave_out_the_zero_rows_of_records_a_day_apart(tmp_path):
    import json

    from tests.conftest import make_record

    path = tmp_path / "apart.jsonl"
    records = [make_record("d1", "2024-08-02T08:30:00Z"), make_record("d2", "2024-08-03T08:30:05Z")]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    dense = run("metrics", str(path)).stdout.splitlines()
    sparse = run("metrics", str(path), "--sparse").stdout.splitlines()
    assert sum(line.startswith("TotalCalls,") for line in dense) == 8641  # a day of 10-second windows
    assert [line for line in sparse if line.startswith(("TotalCalls,", "NumberOfSuccessfulCalls,"))] == [
        "NumberOfSuccessfulCalls,2024-08-02T08:30:00Z,,,1",
        "NumberOfSuccessfulCalls,2024-08-03T08:30:00Z,,,1",
        "TotalCalls,2024-08-02T08:30:00Z,,,1",
        "TotalCalls,2024-08-03T08:30:00Z,,,1",
    ]
    assert all(not line.endswith(",0.0") for line in sparse if line.startswith("AnomalyScore,"))
    non_dense = ("CallsPerAPI", "CallsPerServiceType", "CallsPerUniqueIp", "CallsPerUser")
    assert [x for x in sparse if x.startswith(non_dense)] == [x for x in dense if x.startswith(non_dense)]
