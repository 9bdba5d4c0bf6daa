import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import DATA, STRATUS

ROOT = Path(__file__).parent.parent
FIXTURE = [str(STRATUS / "aws.defense-evasion.organizations-leave.json"), str(DATA / "cli" / "extra.jsonl")]

EXPECTED_CSV = """\
metric,window_start,category,subcategory,value
AnomalyScore,2024-08-02T08:29:50Z,,,0.0
AnomalyScore,2024-08-02T08:30:00Z,,,0.0
CallsPerAPI,2024-08-02T08:29:50Z,sts.amazonaws.com,AssumeRole,1
CallsPerAPI,2024-08-02T08:30:00Z,ec2.amazonaws.com,RunInstances,1
CallsPerAPI,2024-08-02T08:30:00Z,organizations.amazonaws.com,LeaveOrganization,1
CallsPerAPI,2024-08-02T08:30:00Z,sts.amazonaws.com,AssumeRole,1
CallsPerServiceType,2024-08-02T08:29:50Z,sts.amazonaws.com,,1
CallsPerServiceType,2024-08-02T08:30:00Z,organizations.amazonaws.com,,1
CallsPerServiceType,2024-08-02T08:30:00Z,sts.amazonaws.com,,1
CallsPerUniqueIp,2024-08-02T08:29:00Z,252.5.222.230,,1
CallsPerUniqueIp,2024-08-02T08:30:00Z,06.237.252.245,,1
CallsPerUniqueIp,2024-08-02T08:30:00Z,252.5.222.230,,2
CallsPerUser,2024-08-02T08:29:50Z,christophe,,1
CallsPerUser,2024-08-02T08:30:00Z,christophe,,1
CallsPerUser,2024-08-02T08:30:00Z,stratus-red-team-ec2lui-role-idtzskbvtd,aws-go-sdk-1722511821294449000,1
CallsPerUser,2024-08-02T08:30:00Z,stratus-red-team-leave-org-role,aws-go-sdk-1722587398902687000,1
EC2Calls,2024-08-02T08:30:00Z,ec2.amazonaws.com,Client.UnauthorizedOperation,1
NumberOfSuccessfulCalls,2024-08-02T08:29:50Z,,,1
NumberOfSuccessfulCalls,2024-08-02T08:30:00Z,,,1
TotalCalls,2024-08-02T08:29:50Z,,,1
TotalCalls,2024-08-02T08:30:00Z,,,3
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "metrics", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_csv_output_is_exactly_the_hand_computed_table():
    result = run(*FIXTURE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED_CSV


def test_json_output_has_the_same_rows_with_typed_values():
    result = run(*FIXTURE, "--format", "json")
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    lines = EXPECTED_CSV.splitlines()[1:]
    assert len(rows) == len(lines)
    assert rows[0] == {
        "metric": "AnomalyScore",
        "window_start": "2024-08-02T08:29:50Z",
        "category": "",
        "subcategory": "",
        "value": 0.0,
    }
    assert rows[-1]["value"] == 3 and isinstance(rows[-1]["value"], int)
    assert [",".join(str(v) for v in row.values()) for row in rows[2:]] == lines[2:]


def test_rejects_and_duplicates_are_reported_on_stderr():
    result = run(*FIXTURE)
    assert "read 4 events from 2 file(s); 1 duplicate(s) counted once" in result.stderr
    assert "rejected 2 record(s):" in result.stderr
    assert "1  invalid JSON" in result.stderr
    assert "1  missing eventTime" in result.stderr


def test_nothing_readable_exits_with_status_1(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    result = run(str(tmp_path / "bad.json"), str(tmp_path / "absent.json"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "nothing could be read" in result.stderr
    assert "invalid JSON" in result.stderr and "unreadable file" in result.stderr


def test_a_folder_is_read_recursively(tmp_path):
    (tmp_path / "nested").mkdir()
    source = Path(FIXTURE[0])
    (tmp_path / "nested" / source.name).write_bytes(source.read_bytes())
    result = run(str(tmp_path))
    assert result.returncode == 0
    assert "TotalCalls,2024-08-02T08:30:00Z,,,2" in result.stdout


def test_help_describes_the_command():
    result = run("--help")
    assert result.returncode == 0
    assert "--format" in result.stdout


def test_a_record_dated_2300_is_rejected_with_its_reason_and_the_rest_is_kept(tmp_path):
    future = json.loads((DATA / "cli" / "extra.jsonl").read_text().splitlines()[0])
    future["eventID"], future["eventTime"] = "from-2300", "2300-01-01T00:00:00Z"
    path = tmp_path / "future.jsonl"
    path.write_text(json.dumps(future) + "\n")
    result = run(*FIXTURE, str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED_CSV
    assert "eventTime out of range" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_record_over_256_kib_is_rejected_whether_in_a_trail_file_or_in_json_lines(tmp_path):
    import gzip

    from tests.conftest import make_record

    records = [
        make_record(f"big-{i}", "2024-08-02T08:30:00Z", requestParameters={"p": "x" * 300_000}) for i in range(3)
    ]
    records += [make_record(f"small-{i}", "2024-08-02T08:30:00Z") for i in range(2)]
    trail = tmp_path / "111122223333_CloudTrail_us-east-1_20240802T0830Z_a.json.gz"
    trail.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    lines = tmp_path / "records.jsonl"
    lines.write_text("".join(json.dumps(record) + "\n" for record in records))
    for path in (trail, lines):
        result = run(str(path))
        assert result.returncode == 0, result.stderr
        assert "TotalCalls,2024-08-02T08:30:00Z,,,2\n" in result.stdout, path.name
        assert "3  record too large" in result.stderr, path.name
