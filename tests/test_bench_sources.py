import subprocess
import sys


def test_the_sources_benchmark_runs_both_paths_on_a_few_records(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench.sources", "--events", "300", "--folder", str(tmp_path), "--kinds", "none"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    lines = [line for line in out.splitlines() if "records/s" in line and "DuckDB" not in line]
    assert len(lines) == 6  # files (trail folder, JSON Lines) and S3, each by both paths
    anchor = [line for line in out.splitlines() if line.startswith("DuckDB read_json")]
    assert len(anchor) == 2 and all("(300 rows" in line for line in anchor)
    assert all("rejects none" in line and "(300 events" in line for line in lines)
    assert "isal/zlib" in out
