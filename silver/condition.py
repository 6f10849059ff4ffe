"""silver.condition: FHIR Condition and HL7 DG1, coded to ICD-10-CM / SNOMED CT, harmonized.

A DG1 repeats in every ADT message of a visit: HL7 conditions are one per (patient, code, onset). A FHIR Condition
and an HL7 diagnosis with the same patient_key, ICD-10-CM code and onset are one row (FHIR key, both sources).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    collect_lineage,
    fhir_timestamp,
    field,
    first_per_partition,
    flatten,
    local_time,
    merge_lineage,
    patient_key_or_ref,
    resolve_references,
    segment_fields,
    source_lineage,
)
from silver.deid import pseudonym
from silver.encounter import hl7_visit_number
from silver.patient import hl7_patient_identity
from silver.terminology import map_condition_codes, normalize_icd10cm, valid_icd10cm
from silver.terminology.seeds import ICD10CM


def fhir_conditions(resources: DataFrame, patients: DataFrame, encounters: DataFrame, deid: Deid) -> DataFrame:
    c = resolve_references(flatten(resources, "condition"), patients, encounters)
    # the ICD-10-CM coding when there is one (the analysis vocabulary), else the first coding with a code; the
    # view selects each coding as a whole (code, system and display of the same element)
    icd = F.col("icd10cm_code").isNotNull()
    code = F.when(icd, F.col("icd10cm_code")).otherwise(F.col("code_code"))
    system = F.when(icd, F.lit(ICD10CM)).otherwise(F.col("code_system"))
    display = F.when(icd, F.col("icd10cm_display")).otherwise(F.col("code_display"))
    return c.select(
        pseudonym(F.col("id"), deid.key, "condition").alias("condition_key"), patient_key_or_ref(deid),
        "encounter_key", code.alias("code"), system.alias("code_system"),
        F.coalesce(display, "code_text").alias("display"), F.col("snomed_code").alias("snomed_coding"),
        "category", "clinical_status", "verification_status", fhir_timestamp("onset").alias("onset_at"),
        fhir_timestamp("abatement").alias("abatement_at"), fhir_timestamp("recorded").alias("recorded_at"),
        *source_lineage(FHIR))


def hl7_conditions(segs: DataFrame, deid: Deid) -> DataFrame:
    """One row per distinct (patient, code, onset) among the DG1 segments of ADT messages."""
    adt = segs.filter(F.col("message_type") == "ADT")
    pid = segment_fields(adt, "PID", {"mrn": hl7_patient_identity()}).select("content_hash", "mrn")
    pv1 = segment_fields(adt, "PV1", {"visit": hl7_visit_number()}).select("content_hash", "visit")
    dg1 = segment_fields(adt, "DG1", {
        "code": field(3, 1, decode=False), "code_system_raw": field(3, 3, decode=False),
        "coding_method": field(2, decode=False), "display_raw": field(3, 2), "description": field(4),
        "onset_raw": field(5, 1, decode=False), "dg1_type_raw": field(6, decode=False),
    }).filter(F.col("code").isNotNull()).join(pid, "content_hash", "left").join(pv1, "content_hash", "left")
    dtype = F.upper(F.col("dg1_type_raw"))
    rows = dg1.select(
        "mrn", "code", F.coalesce("code_system_raw", "coding_method").alias("code_system"),
        F.coalesce("display_raw", "description").alias("display"),
        local_time(F.col("onset_raw")).alias("onset_at"), "message_ts", "visit", "content_hash",
        F.when(dtype == "A", "admitting").when(dtype == "W", "working").when(dtype == "F", "final").alias("dg1_type"))
    ident = F.concat_ws("|", "mrn", F.upper(F.trim("code")), F.coalesce(F.col("onset_at").cast("string"), F.lit("")))
    latest = Window.partitionBy("_ident").orderBy(F.col("message_ts").desc(), F.col("content_hash"))
    rows = rows.withColumn("_ident", ident)
    hashes = rows.groupBy("_ident").agg(F.collect_set("content_hash").alias("_hashes"),
                                        F.min("message_ts").alias("recorded_at"))
    first = first_per_partition(rows, latest).join(hashes, "_ident")
    return first.select(
        pseudonym(F.col("_ident"), deid.key, "condition").alias("condition_key"),
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"),
        pseudonym(F.col("visit"), deid.key, "encounter").alias("encounter_key"),
        "code", "code_system", "display", F.lit(None).cast("string").alias("snomed_coding"),
        F.lit("encounter-diagnosis").alias("category"), F.lit(None).cast("string").alias("clinical_status"),
        F.when(F.col("dg1_type") == "final", "confirmed").when(F.col("dg1_type").isNotNull(), "provisional")
         .alias("verification_status"),
        "onset_at", F.lit(None).cast("timestamp").alias("abatement_at"), "recorded_at",
        F.lit(HL7V2).alias("source"), F.explode(F.col("_hashes")).alias("content_hash"))


def standardize(rows: DataFrame) -> DataFrame:
    mapped = map_condition_codes(rows, "code", "code_system")
    mapped = mapped.withColumn("snomed_code", F.coalesce("snomed_code", "snomed_coding"))
    return valid_icd10cm(mapped, "icd10cm_code")


def harmonize(rows: DataFrame) -> tuple[DataFrame, int]:
    """One row per condition_key; a FHIR and an HL7 row with the same patient, ICD-10-CM code and onset merge."""
    lineage = rows.groupBy("condition_key").agg(*collect_lineage())
    one = first_per_partition(rows, Window.partitionBy("condition_key").orderBy("content_hash")) \
        .drop("content_hash", "source").join(lineage, "condition_key")
    match = F.concat_ws("|", "patient_key", F.coalesce(normalize_icd10cm(F.col("icd10cm_code")), F.col("code")),
                        F.coalesce(F.col("onset_at").cast("string"), F.lit("")))
    one = one.withColumn("_match", match)
    fhir_first = Window.partitionBy("_match").orderBy(F.array_contains("sources", FHIR).desc(), "condition_key")
    merged_lineage = one.groupBy("_match").agg(*merge_lineage("_s", "_h"), F.count(F.lit(1)).alias("_n"))
    best = first_per_partition(one, fhir_first).join(merged_lineage, "_match")
    merged = int(best.filter("_n > 1").agg(F.coalesce(F.sum(F.col("_n") - 1), F.lit(0))).first()[0])
    out = best.withColumn("sources", F.col("_s")).withColumn("bronze_hashes", F.col("_h"))
    return out.drop("_match", "_s", "_h", "_n"), merged
