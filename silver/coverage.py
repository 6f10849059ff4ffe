"""silver.coverage: what became of every Bronze record, per source and message or resource type.

Each Bronze record (an HL7 v2 message, a FHIR resource version, a DICOM file) ends in exactly one outcome:

- ``superseded``: an older version of the same FHIR resource, or a resend of the same HL7 message (same sending
  application, facility and control id); the latest one is used. An earlier status of an HL7 result (a
  preliminary result later made final or corrected, see silver.observation) is superseded within Silver: its message
  stays in the lineage of the row holding the latest version (so the message counts as ``silver``), and the job
  reports the OBX superseded so (``superseded_results`` of the observation report);
- ``silver``: at least one Silver row carries its content hash in ``bronze_hashes``;
- ``quarantined``: no Silver row, but at least one quarantine row does;
- ``not_in_scope``: its type is declared out of scope, with the reason (``hl7v2_scope.csv``, ``fhir_scope.csv``);
- ``no_fact``: its type is in scope, or declared nowhere, yet nothing came of it: an unexpected shape. The job
  quarantines these records with the reason, so that nothing is lost silently.

The scope files are the declaration a data engineer or auditor reads: which Silver tables each HL7 message type
and FHIR resource type feeds, and why the others are left out.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from silver.common import DICOM, FHIR, HL7V2, union_all

SCOPE_DIR = Path(__file__).parent
OUTCOMES = ("superseded", "silver", "quarantined", "not_in_scope", "no_fact")
WILDCARD = "*"


@dataclass(frozen=True)
class ScopeRule:
    """One line of a scope file: ``record_type`` is ``ADT^*`` / ``ADT^A01`` (HL7 v2) or ``Patient`` (FHIR)."""

    source: str
    record_type: str
    silver_tables: tuple[str, ...]
    reason: str

    @property
    def in_scope(self) -> bool:
        return bool(self.silver_tables)


def load_scope(directory: Path = SCOPE_DIR) -> list[ScopeRule]:
    """The declared scope: ``hl7v2_scope.csv`` (message type, trigger event or ``*``) and ``fhir_scope.csv``."""
    rules: list[ScopeRule] = []
    with (directory / "hl7v2_scope.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            rules.append(ScopeRule(HL7V2, f"{row['message_type']}^{row['trigger_event']}",
                                   _tables(row["silver_tables"]), row["reason"].strip()))
    with (directory / "fhir_scope.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            rules.append(ScopeRule(FHIR, row["resource_type"], _tables(row["silver_tables"]), row["reason"].strip()))
    rules.append(ScopeRule(DICOM, WILDCARD, ("imaging_instance", "imaging_series", "imaging_study"), ""))
    return rules


def _tables(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(";") if t.strip())


def bronze_records(fhir: DataFrame, fhir_latest: DataFrame, hl7: DataFrame, hl7_latest: DataFrame,
                   dicom: DataFrame) -> DataFrame:
    """``(source, record_type, content_hash, has_facts, superseded)`` for every Bronze record (``has_facts``: an
    HL7 message has a segment beyond MSH and EVN)."""
    def mark(rows: DataFrame, latest: DataFrame) -> DataFrame:
        used = latest.select("content_hash").distinct().withColumn("_used", F.lit(True))
        return rows.join(used, "content_hash", "left") \
                   .withColumn("superseded", F.col("_used").isNull()).drop("_used")

    hl7_type = F.concat(F.coalesce(F.upper("message_type"), F.lit("?")), F.lit("^"),
                        F.coalesce(F.upper("trigger_event"), F.lit("")))
    # a message of nothing but its header and event segments carries no fact to load
    header = r"(^|[\r\n]+)(MSH|EVN|[BF]HS|[BF]TS)[^\r\n]*"
    beyond_header = F.regexp_replace("raw", header, "").rlike(r"[A-Z][A-Z0-9]{2}\|")
    return union_all([
        mark(fhir.select(F.lit(FHIR).alias("source"), F.coalesce("resource_type", F.lit("?")).alias("record_type"),
                         "content_hash", F.lit(True).alias("has_facts")), fhir_latest),
        mark(hl7.select(F.lit(HL7V2).alias("source"), hl7_type.alias("record_type"), "content_hash",
                        beyond_header.alias("has_facts")), hl7_latest),
        dicom.select(F.lit(DICOM).alias("source"), F.concat(F.lit("DICOM "), F.coalesce("modality", F.lit("?")))
                     .alias("record_type"), "content_hash", F.lit(True).alias("has_facts"),
                     F.lit(False).alias("superseded")),
    ]).dropDuplicates(["source", "content_hash"])


def scope_frame(spark: SparkSession, rules: Sequence[ScopeRule]) -> DataFrame:
    return spark.createDataFrame(
        [(r.source, r.record_type, r.in_scope, ";".join(r.silver_tables), r.reason) for r in rules],
        "source STRING, scope_type STRING, in_scope BOOLEAN, silver_tables STRING, scope_reason STRING")


def classify(records: DataFrame, landed: DataFrame, rejected: DataFrame, scope: DataFrame) -> DataFrame:
    """Records with their ``outcome`` (see the module docstring), the scope declared for their type (the exact
    type first, then ``<message type>^*``, then the source's ``*``) and, for ``no_fact``, the ``reason``.

    ``landed`` and ``rejected`` are ``content_hash`` columns of the Silver and quarantine rows.
    """
    flags = records.join(landed.select("content_hash").distinct().withColumn("_silver", F.lit(True)),
                         "content_hash", "left") \
                   .join(rejected.select("content_hash").distinct().withColumn("_rejected", F.lit(True)),
                         "content_hash", "left")
    candidates = [F.col("record_type"), F.concat(F.split("record_type", r"\^")[0], F.lit("^*")), F.lit(WILDCARD)]
    matched = flags
    for i, candidate in enumerate(candidates):
        s = scope.select("source", F.col("scope_type").alias(f"_t{i}"), F.col("in_scope").alias(f"_in{i}"),
                         F.col("silver_tables").alias(f"_tables{i}"), F.col("scope_reason").alias(f"_reason{i}"))
        matched = matched.withColumn(f"_t{i}", candidate).join(s, ["source", f"_t{i}"], "left")
    pick = [(F.col(f"_in{i}").isNotNull(), i) for i in range(len(candidates))]

    def first(name: str) -> F.Column:
        out = F.lit(None)
        for cond, i in reversed(pick):
            out = F.when(cond, F.col(f"{name}{i}")).otherwise(out)
        return out

    declared = pick[0][0] | pick[1][0] | pick[2][0]
    in_scope = first("_in")
    outcome = F.when(F.col("superseded"), F.lit("superseded")) \
               .when(F.col("_silver").isNotNull(), F.lit("silver")) \
               .when(F.col("_rejected").isNotNull(), F.lit("quarantined")) \
               .when(declared & ~in_scope, F.lit("not_in_scope")) \
               .otherwise(F.lit("no_fact"))
    reason = F.when(~F.col("has_facts"), F.concat(F.lit("this "), F.col("record_type"), F.lit(
        " message has no segment beyond MSH and EVN (and batch headers): no fact to load"))) \
              .when(~declared, F.concat(F.lit("type "), F.col("record_type"), F.lit(
        " is neither modelled nor declared out of scope (silver/hl7v2_scope.csv, silver/fhir_scope.csv)"))) \
              .otherwise(F.concat(F.lit("no Silver row came from this "), F.col("record_type"), F.lit(
                  " record although the type feeds "), F.regexp_replace(first("_tables"), ";", ", "),
                  F.lit(": a shape the transforms do not read")))
    return matched.select("source", "record_type", "content_hash", outcome.alias("outcome"),
                          F.coalesce(declared, F.lit(False)).alias("declared"),
                          first("_tables").alias("silver_tables"), first("_reason").alias("scope_reason"),
                          F.when(outcome == "no_fact", reason).alias("reason"))


def summarize(classified: DataFrame) -> DataFrame:
    """Per (source, record_type): received and the count of each outcome, with the declared scope."""
    counts = [F.count(F.when(F.col("outcome") == o, True)).cast("long").alias(o) for o in OUTCOMES]
    return classified.groupBy("source", "record_type").agg(
        F.count(F.lit(1)).cast("long").alias("received"), *counts,
        F.first("silver_tables", ignorenulls=True).alias("silver_tables"),
        F.first("scope_reason", ignorenulls=True).alias("scope_reason"))
