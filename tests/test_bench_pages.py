"""The page benchmark still runs (on a small size); its figures are for people, not assertions."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_page_benchmark_runs_and_times_every_page():
    result = subprocess.run(
        [sys.executable, "-m", "bench.pages", "--events", "3000", "--days", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for page in ("Overview", "Services", "APIs", "Users", "Source IPs", "EC2", "Events explorer", "Drill: APIs bar"):
        assert page in result.stdout, page
    before = (
        "Explorer: word, 1 s budget",
        "Explorer: word, unindexed",
        "Overview, Altair debug on",
        "Overview, params validated",
    )
    for page in (*before, "search index:"):
        assert page in result.stdout, page
    for scenario in ("day", "months"):
        assert f"slowest page or drill-down ({scenario}):" in result.stdout
