"""The benchmark still runs (on a small size); its figures are for people, not assertions."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_core_benchmark_runs_and_prints_every_figure():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.core",
            "--events",
            "4000",
            "--batch",
            "200",
            "--batches",
            "3",
            "--rcf-points",
            "60",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for label in (
        "ours/DuckDB",
        "DuckDB full / batch",
        "normalising raw JSON",
        "buffer memory per event",
        "RCF krcf",
        "RCF rrcf",
    ):
        assert label in result.stdout, label


def test_the_eventbridge_benchmark_runs_against_moto_and_prints_every_figure():
    result = subprocess.run(
        [sys.executable, "-m", "bench.eventbridge", "--events", "300", "--moto-events", "30", "--depths", "30"]
        + ["--seconds", "2", "--rate", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for label in ("ceiling, bare boto3", "ours/bare", "source ceiling", "arrival - exact send time", "load average"):
        assert label in result.stdout, label
    assert ", 300 held" in result.stdout and ", 30 held" in result.stdout  # each drain ended with every event


def test_the_scale_benchmark_runs_memory_and_duckdb_on_a_small_trail():
    result = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--events", "3000", "--engines", "memory,duckdb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "identical CSV from every engine: yes" in result.stdout
    assert "MiB peak" in result.stdout


def test_the_ingest_benchmark_runs_against_duckdb_and_writes_the_same_csv(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--sizes", "300", "--folder", str(tmp_path), "--parts", "cli,sources"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("same CSV: yes") == 2, result.stdout
    for label in (
        "300 JSON Lines",
        "300 gz trail folder",
        "ours/DuckDB",
        "files source",
        "S3 source (moto)",
        "load after",
    ):
        assert label in result.stdout, label


def test_the_start_up_benchmark_compares_the_read_ahead(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.startup", "--compare-read-ahead", "--events", "3000", "--folder", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("every event in after") == 4
    assert "with the read-ahead against" in result.stdout


def test_the_start_up_benchmark_times_the_sign_in_form_of_a_server_alone(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.startup", "--sign-in-form", "1", "--events", "2000", "--folder", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "start 1, app: health" in result.stdout and "start 1, bare form: health" in result.stdout
    assert "median sign-in form sent: app" in result.stdout and "bare Streamlit form" in result.stdout
    assert "nan" not in result.stdout  # the form reached the websocket client, in both servers
