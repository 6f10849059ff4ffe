"""Scratch Delta tables for the intermediates a job reuses.

Over Spark Connect on Sail ``DataFrame.cache()`` does nothing: every action re-plans and recomputes the whole
lineage, and the plans of FHIRPath views and HL7 field decoding are large. A job writes an intermediate it
reuses once to ``<root>/_system/staging/<run>/<label>`` and continues from the written rows; the data stays on
the engine (nothing is pulled through the client) and the folder is removed when the job ends.

The read-back is repartitioned: a plan barrier, because Sail 0.7 pushes filters on columns computed with lambda
functions (FHIRPath views, HL7 field decoding) down into the Delta scan and then cannot resolve them
("No field named ?table?.raw"); see tests/test_sail_rules.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import DataFrame, SparkSession

from lakehouse.config import Settings


class Staging:
    """Scratch tables of one run; :meth:`stage` computes a DataFrame once and returns one reading the result."""

    def __init__(self, spark: SparkSession, settings: Settings, run_id: str) -> None:
        self.spark = spark
        self.folder = settings.system_dir / "staging" / run_id.replace("-", "")[:16]
        self.labels: set[str] = set()

    def stage(self, df: DataFrame, label: str) -> DataFrame:
        if label in self.labels:
            raise ValueError(f"staging label {label!r} used twice in one run")
        self.labels.add(label)
        location = self.folder / label
        shutil.rmtree(location, ignore_errors=True)
        df.write.format("delta").mode("overwrite").save(str(location))
        return self.spark.read.format("delta").load(str(location)).repartition(self._partitions())

    def _partitions(self) -> int:
        try:
            return max(int(self.spark.conf.get("spark.sql.shuffle.partitions") or 2), 1)
        except (ValueError, TypeError):
            return 2

    def drop_all(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.labels.clear()


@contextmanager
def staging(spark: SparkSession, settings: Settings, run_id: str) -> Iterator[Staging]:
    """A :class:`Staging` whose folder is removed when the block ends, also on error."""
    scratch = Staging(spark, settings, run_id)
    try:
        yield scratch
    finally:
        scratch.drop_all()
