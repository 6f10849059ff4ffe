"""The engine-neutral benchmark stages, run the same way on Sail (Spark Connect) and on classic local Spark (JVM).

A Spark Connect session switches pyspark into remote mode for the whole process, so the classic side runs in its
own process: ``python -m benchmarks.classic <plan.json> <out.json>``. Both sides call
:func:`run_neutral_stages` on the same landing files and write Parquet (the Delta jars cannot be downloaded on
these machines), so the ratio compares the engines on identical work.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from bronze import dicom, fhir, hl7v2
from lakehouse.hl7v2 import explode_segments, hl7_field

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

RUN_ID = "bench-neutral"


@dataclass(frozen=True)
class NeutralInput:
    """Landing files of one scale, as the Bronze job sees them (paths absolute)."""

    hl7v2: list[tuple[str, str, str]]  # (abs path, source_file, charset)
    fhir: list[tuple[str, str, str]]
    dicom: list[tuple[str, str, int, str]]  # (abs path, source_file, size, sha256)

    def to_json(self) -> dict[str, Any]:
        return {"hl7v2": self.hl7v2, "fhir": self.fhir, "dicom": self.dicom}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NeutralInput:
        return cls([tuple(x) for x in data["hl7v2"]], [tuple(x) for x in data["fhir"]],  # type: ignore[misc]
                   [tuple(x) for x in data["dicom"]])  # type: ignore[misc]


def _files(spark: SparkSession, files: list[tuple[str, str, str]]) -> DataFrame:

    lookup = spark.createDataFrame([(p.lstrip("/"), rel, charset) for p, rel, charset in files],
                                   "key string, source_file string, charset string")
    raw = spark.read.format("binaryFile").load([p for p, _, _ in files]).dropDuplicates(["path"])
    raw = raw.withColumn("key", F.regexp_replace("path", "^(file:)?/*", ""))
    return raw.join(lookup, "key").select("source_file", "charset", "content")


def _write(df: DataFrame, path: Path) -> int:
    df.write.mode("overwrite").parquet(str(path))
    return int(df.sparkSession.read.parquet(str(path)).count())


def run_neutral_stages(spark: SparkSession, inputs: NeutralInput, out: Path) -> dict[str, dict[str, Any]]:
    """Bronze parsing (split + parse + quarantine split) per source, written as Parquet; then the HL7 body parse
    (segments and fields) that Silver starts from. Returns {stage: {seconds, rows, quarantined}}."""


    results: dict[str, dict[str, Any]] = {}

    def timed(stage: str, good: DataFrame, bad: DataFrame) -> None:
        start = time.perf_counter()
        rows = _write(good, out / stage / "good")
        quarantined = _write(bad, out / stage / "bad")
        results[stage] = {"seconds": round(time.perf_counter() - start, 3), "rows": rows, "quarantined": quarantined}

    if inputs.hl7v2:
        messages, other = hl7v2.split_messages(_files(spark, inputs.hl7v2), RUN_ID)
        good = messages.filter(F.col("reason").isNull()).drop("reason")
        bad = messages.filter(F.col("reason").isNotNull()).select("reason", "source_file", "position")
        timed("bronze_hl7v2", good, bad.unionByName(other.select("reason", "source_file", "position")))
        start = time.perf_counter()
        parsed = spark.read.parquet(str(out / "bronze_hl7v2" / "good"))
        segments = explode_segments(parsed).select(
            "content_hash", "segment_index", "segment_id",
            hl7_field(F.col("fields"), 3, 1, encoding=F.col("encoding_characters"),
                            field_separator=F.col("field_separator")).alias("field3_1"),
            hl7_field(F.col("fields"), 5, encoding=F.col("encoding_characters"),
                            field_separator=F.col("field_separator")).alias("field5"))
        rows = _write(segments, out / "hl7v2_segments")
        results["hl7v2_segments"] = {"seconds": round(time.perf_counter() - start, 3), "rows": rows,
                                     "quarantined": 0}
    if inputs.fhir:
        resources, bad = fhir.split_resources(_files(spark, inputs.fhir), RUN_ID)
        timed("bronze_fhir", resources, bad)
    if inputs.dicom:
        files = spark.createDataFrame([list(x) for x in inputs.dicom],
                                      "abs_path string, source_file string, file_size bigint, content_hash string")
        instances, bad = dicom.read_instances(files, RUN_ID)
        timed("bronze_dicom", instances, bad)
    return results


def classic_session() -> SparkSession:
    os.environ.pop("SPARK_REMOTE", None)
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
    from pyspark.sql import SparkSession  # deferred: after SPARK_REMOTE is gone, so the session is classic

    return (SparkSession.builder.master("local[*]").appName("lakehouse-bench-classic")
            .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", str(os.cpu_count() or 2)).getOrCreate())


def main(argv: list[str]) -> int:
    """``python -m benchmarks.classic plan.json out.json``: plan = {inputs, out_dir}."""
    plan = json.loads(Path(argv[0]).read_text())
    start = time.perf_counter()
    spark = classic_session()
    startup = time.perf_counter() - start
    results = run_neutral_stages(spark, NeutralInput.from_json(plan["inputs"]), Path(plan["out_dir"]))
    Path(argv[1]).write_text(json.dumps({"startup_seconds": round(startup, 3), "stages": results}))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
