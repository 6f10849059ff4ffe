"""silver.allergy: FHIR AllergyIntolerance and HL7 AL1 segments (one per patient and allergen code)."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.expressions import code_lookup
from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    fhir_timestamp,
    field,
    first_per_partition,
    flatten,
    local_time,
    patient_key_or_ref,
    record_lineage,
    resolve_references,
    segment_fields,
)
from silver.deid import pseudonym
from silver.patient import hl7_patient_identity
from silver.terminology import normalize_system

# HL7 table 0127 allergen type -> FHIR AllergyIntolerance.category; table 0128 severity -> criticality
AL1_CATEGORY = {"DA": "medication", "MA": "medication", "FA": "food", "EA": "environment", "PA": "environment",
                "AA": "environment", "LA": "environment"}
AL1_CRITICALITY = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}


def fhir_allergies(resources: DataFrame, patients: DataFrame, deid: Deid) -> DataFrame:
    a = resolve_references(flatten(resources, "allergy"), patients)
    return a.select(
        pseudonym(F.col("id"), deid.key, "allergy").alias("allergy_key"), patient_key_or_ref(deid),
        F.col("code_code").alias("code"), normalize_system(F.col("code_system")).alias("code_system"),
        F.col("code_display").alias("display"), "category", "criticality", "clinical_status",
        fhir_timestamp("recorded").alias("recorded_at"),
        *record_lineage(FHIR))


def hl7_allergies(segs: DataFrame, deid: Deid) -> DataFrame:
    """One row per (patient, allergen code) among AL1 segments; the latest message wins, all hashes kept."""
    pid = segment_fields(segs, "PID", {"mrn": hl7_patient_identity()}).select("content_hash", "mrn")
    al1 = segment_fields(segs, "AL1", {
        "code_raw": field(3, 1, decode=False), "display": field(3, 2), "system_raw": field(3, 3, decode=False),
        "type_raw": field(2, 1, decode=False), "severity_raw": field(4, 1, decode=False),
        "identified_raw": field(6, 1, decode=False),
    }).withColumn("code", F.coalesce("code_raw", "display")).filter(F.col("code").isNotNull()).join(pid, "content_hash")
    rows = al1.select(
        "mrn", "content_hash", "message_ts", "code", normalize_system(F.col("system_raw")).alias("code_system"),
        "display", code_lookup(F.col("type_raw"), AL1_CATEGORY).alias("category"),
        code_lookup(F.col("severity_raw"), AL1_CRITICALITY).alias("criticality"),
        local_time(F.col("identified_raw")).alias("recorded_at"),
        F.concat_ws("|", "mrn", F.upper("code")).alias("_ident"))
    hashes = rows.groupBy("_ident").agg(F.collect_set("content_hash").alias("bronze_hashes"))
    latest = Window.partitionBy("_ident").orderBy(F.col("message_ts").desc(), "content_hash")
    one = first_per_partition(rows, latest).join(hashes, "_ident")
    return one.select(
        pseudonym(F.col("_ident"), deid.key, "allergy").alias("allergy_key"),
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"), "code", "code_system", "display",
        "category", "criticality", F.lit("active").alias("clinical_status"), "recorded_at",
        F.array(F.lit(HL7V2)).alias("sources"), "bronze_hashes")
