"""silver.diagnostic_report: FHIR DiagnosticReport (conclusion scrubbed; attachments never loaded)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.common import FHIR, Deid, fhir_timestamp, flatten, patient_key_or_ref, record_lineage, resolve_references
from silver.deid import pseudonym, scrub_text
from silver.terminology import normalize_system


def fhir_diagnostic_reports(resources: DataFrame, patients: DataFrame, encounters: DataFrame, known: DataFrame,
                            deid: Deid) -> DataFrame:
    d = resolve_references(flatten(resources, "diagnostic_report"), patients, encounters)
    d = d.join(known, "patient_key", "left")
    return d.select(
        pseudonym(F.col("id"), deid.key, "diagnostic_report").alias("diagnostic_report_key"),
        patient_key_or_ref(deid),
        "encounter_key", F.col("code_code").alias("code"), normalize_system(F.col("code_system")).alias("code_system"),
        F.col("code_display").alias("display"), "category", "status",
        fhir_timestamp("effective").alias("effective_at"), fhir_timestamp("issued").alias("issued_at"),
        F.coalesce(F.col("result_count"), F.lit(0)).alias("result_count"),
        scrub_text(F.col("conclusion"), F.col("known")).alias("conclusion"),
        *record_lineage(FHIR))
