"""The pumps of a trail as it grows, with Spark Structured Streaming: each micro-batch of new log
files is counted with the generated query and its windows written as a delta of their own.

    spark-submit jobs/spark_stream.py --trail s3a://BUCKET/AWSLogs/o-xxx --out s3a://BUCKET/insights/stream \\
        --checkpoint s3a://BUCKET/insights/stream-checkpoint [--every 60] [--once]

Spark's file source remembers (in ``--checkpoint``) which files it has read, so each log file is
counted once, whenever it arrives: an event delivered late adds to its own window. Batch N is
written to ``OUT/batch=N/`` (overwritten if Spark runs the batch again after a failure, so a
replay does not count twice). The deltas add up: the ``files`` source and ``python -m metrics
--windows OUT`` sum every part file under ``OUT``. Duplicates by eventID are removed within a
batch, not across batches (CloudTrail delivers each event in one file). ``--once`` reads what is
there and stops (``availableNow``), for a scheduled job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metrics.engines import latest_seconds
from metrics.spark import records_of, session
from metrics.sql import trail_sql, transpile


def log_file_glob(trail: str) -> str:
    """Every log file under the trail's ``AWSLogs/<account>`` or ``AWSLogs/<o-org>`` prefix."""
    trail = trail.rstrip("/")
    accounts = "*/" if trail.rsplit("/", 1)[-1].startswith("o-") else ""
    return f"{trail}/{accounts}CloudTrail/*/*/*/*/*.json.gz"


def batch_writer(out: str):
    def write(batch, batch_id: int) -> None:
        spark = batch.sparkSession
        records_of(batch).createOrReplaceTempView("trail")
        windows = spark.sql(transpile(trail_sql(latest_seconds()), "spark"))
        windows.coalesce(1).write.mode("overwrite").parquet(f"{out.rstrip('/')}/batch={batch_id:08d}")

    return write


def start(spark, trail: str, out: str, checkpoint: str, *, every: float = 60.0, once: bool = False, files=1000):
    """The running query (``awaitTermination`` to wait for it)."""
    documents = spark.readStream.option("maxFilesPerTrigger", files).text(log_file_glob(trail), wholetext=True)
    writer = documents.writeStream.foreachBatch(batch_writer(out)).option("checkpointLocation", checkpoint)
    writer = writer.trigger(availableNow=True) if once else writer.trigger(processingTime=f"{every:g} seconds")
    return writer.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark_stream.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trail", required=True, help="s3a://BUCKET/AWSLogs/<account or o-org>, or a local folder")
    parser.add_argument("--out", required=True, help="where the batches' windows go")
    parser.add_argument("--checkpoint", required=True, help="Spark's record of the files read and batches done")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between micro-batches (default 60)")
    parser.add_argument("--files", type=int, default=1000, help="most log files per micro-batch (default 1000)")
    parser.add_argument("--once", action="store_true", help="read the files there now, then stop")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    args = parser.parse_args(argv)
    spark = session(args.master, app_name="insights-spark-stream")
    try:
        start(spark, args.trail, args.out, args.checkpoint, every=args.every, once=args.once, files=args.files)
        spark.streams.awaitAnyTermination()
        return 0
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
