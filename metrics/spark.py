"""A Spark session for the generated query, and the ``trail`` view it reads.

pyspark is optional (requirements-spark.txt): only ``--engine spark`` and the Spark job
import this module.
"""

from __future__ import annotations

from pyspark import SparkConf
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

# A trail file is one JSON document {"Records": [...]}; an array file is the records; anything
# else is read as JSON Lines. Each record stays JSON text: from_json keeps an object that meets
# a STRING field as its raw text, so the query sees every value's own type.
_RECORDS = """CASE
  WHEN ltrim(value) LIKE '[%' THEN from_json(value, 'ARRAY<STRING>')
  WHEN trail_records IS NOT NULL THEN trail_records
  ELSE filter(split(value, '\\n'), line -> trim(line) <> '')
END"""


def session(master: str | None = None, app_name: str = "account-activity-insights") -> SparkSession:
    """A session in UTC (a naive eventTime means UTC, as in the normaliser): on ``master``,
    else spark-submit's, else ``local[*]``."""
    builder = SparkSession.builder.appName(app_name)
    if master or not SparkConf().contains("spark.master"):  # spark-submit sets its own
        builder = builder.master(master or "local[*]")
    return (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )


def trail_view(spark: SparkSession, paths: list[str], name: str = "trail") -> None:
    """Register ``name`` with one ``record`` column over the record files ``paths``
    (local paths or s3a:// URLs; folders are read recursively, gzip by extension)."""
    documents = spark.read.option("recursiveFileLookup", "true").text(paths, wholetext=True)
    records_of(documents).createOrReplaceTempView(name)


def records_of(documents: DataFrame) -> DataFrame:
    """One ``record`` row per record of a frame of whole files (a ``value`` column each)."""
    documents = documents.withColumn("trail_records", F.expr("from_json(value, 'Records ARRAY<STRING>').Records"))
    return documents.select(F.explode(F.expr(_RECORDS)).alias("record"))
