"""Spark runs the generated query on a real standalone master and worker on 127.0.0.1: the
spark-submit job's windows and ``--engine spark`` equal the in-process engine's, hostile
records included. One cluster for the module: a JVM start is the slow part."""

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pyspark = pytest.importorskip("pyspark", reason="pyspark comes with requirements-spark.txt")

from bench.trail_layout import ORG, demo_trail  # noqa: E402
from metrics.__main__ import main  # noqa: E402
from tests.edge_records import write_edge_trail  # noqa: E402

ROOT = Path(__file__).parent.parent
SPARK_HOME = Path(pyspark.__file__).parent
START = 1_722_587_400  # 2024-08-02T08:30:00Z

if shutil.which("java") is None:
    pytest.skip("Spark needs a Java runtime (17)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def spark_env() -> dict:
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master and one worker (1 core, 1 GiB), started from pyspark's scripts."""
    logs = tmp_path_factory.mktemp("spark-logs")
    master_port, worker_port = free_port(), free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    common = dict(env=spark_env(), stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    master = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(master_port)]
        + ["--webui-port", str(free_port())],
        stdout=(logs / "master.log").open("w"),
        **common,
    )
    url = f"spark://127.0.0.1:{master_port}"
    worker = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1"]
        + ["--port", str(worker_port), "--webui-port", str(free_port()), "--cores", "1", "--memory", "1g"],
        stdout=(logs / "worker.log").open("w"),
        **common,
    )
    try:
        wait_for_port(master_port, time.monotonic() + 180)
        wait_for_port(worker_port, time.monotonic() + 180)
        yield url
    finally:
        for process in (worker, master):
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
            if process.poll() is None:
                process.kill()


def cli(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(list(args)) == 0
    return out.getvalue()


def test_spark_job_on_a_cluster_writes_the_windows_of_the_in_process_engine(cluster, tmp_path):
    trail = tmp_path / "bucket"
    demo_trail(trail, START, 900, rate=3)
    write_edge_trail(trail, ORG)  # hostile records and duplicates among the demo's
    out = tmp_path / "windows"
    job = subprocess.run(
        [str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster, "--conf", "spark.ui.enabled=false"]
        + [str(ROOT / "jobs" / "spark_pumps.py"), "--trail", str(trail / "AWSLogs" / ORG)]
        + ["--from", "2024-08-02", "--to", "2024-08-02", "--out", str(out)],
        env=spark_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    assert list(out.glob("part-*.parquet"))
    assert cli("--windows", str(out)) == cli(str(trail / "AWSLogs" / ORG))


def test_engine_spark_on_the_cluster_prints_the_csv_of_the_engine_hostile_records_included(cluster, tmp_path):
    write_edge_trail(tmp_path)
    assert cli(str(tmp_path), "--engine", "spark", "--spark-master", cluster) == cli(str(tmp_path))


def test_top_k_per_minute_through_spark_equals_duckdb(cluster, tmp_path):
    from metrics.engines import duckdb_windows, record_files, spark_windows
    from metrics.sql import top_k_pumps

    demo_trail(tmp_path, START, 600, rate=3)
    files = record_files([tmp_path])

    def rows(frame):
        return sorted(tuple(str(v) for v in row) for row in frame.itertuples(index=False))

    theirs = spark_windows(files, cluster, pumps=top_k_pumps(), top_k=2)
    assert (theirs["category"] == "(other)").any()
    assert rows(theirs) == rows(duckdb_windows(files, pumps=top_k_pumps(), top_k=2))


def test_structured_streaming_counts_each_new_file_once_and_a_late_file_in_its_window(cluster, tmp_path):
    import gzip
    import importlib.util

    import orjson

    from bench.trail_layout import trail_key
    from collectors.window_files import WindowFiles
    from metrics.engine import Engine
    from metrics.spark import session
    from tests.conftest import make_record

    spec = importlib.util.spec_from_file_location("spark_stream", ROOT / "jobs" / "spark_stream.py")
    stream = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stream)

    trail, later = tmp_path / "bucket", tmp_path / "later"
    files = demo_trail(later, START, 600, rate=2)
    first = files[: len(files) // 2]
    for path in first:  # half the files are there at the first batch, the rest arrive after it
        target = trail / path.relative_to(later)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    out, checkpoint = tmp_path / "windows", tmp_path / "checkpoint"
    spark = session(cluster)
    try:
        prefix = str(trail / "AWSLogs" / ORG)
        stream.start(spark, prefix, str(out), str(checkpoint), once=True).awaitTermination()
        for path in sorted(later.rglob("*.json.gz")):
            target = trail / path.relative_to(later)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
        late = trail / trail_key(ORG, "111122223333", "us-east-1", START + 600, salt="late")
        record = make_record("late-1", "2024-08-02T07:31:05Z", recipientAccountId="111122223333")
        late.write_bytes(gzip.compress(orjson.dumps({"Records": [record]})))
        stream.start(spark, prefix, str(out), str(checkpoint), once=True).awaitTermination()
    finally:
        spark.stop()
    assert len(list(out.glob("batch=*"))) == 2
    engine = Engine(retention_seconds=None)
    WindowFiles(out).refresh(engine, START)
    assert engine.totals.total(START - 3600 + 60) == 1  # the late event, in its own window
    assert cli("--windows", str(out)) == cli(str(trail / "AWSLogs" / ORG))
