"""silver.immunization: FHIR Immunization and HL7 RXA (VXU^V04, RSP^K11 history, any message with RXA), with the
CVX code (lot numbers are not loaded).

HL7 rows: one per vaccination record. A record is identified by the patient and its ORC-3 filler order number (the
IIS "vaccination id"; 9999 means none): an update or a deletion (RXA-21 = D) of the same record in a later message
replaces it. Without a filler number, by its message (MSH-3, MSH-4, MSH-10) and segment index.

Status (FHIR ImmunizationStatusCodes) from RXA-20 completion status (HL7 table 0322): CP complete and PA partially
administered -> completed (a partial dose was still given), RE refused and NA not administered -> not-done; an
empty RXA-20 is CP (the CDC guide's default). RXA-21 action code D (delete) -> entered-in-error.

A FHIR and an HL7 row with the same patient, CVX code and occurrence instant are one row (FHIR key, both sources).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from silver.common import (
    FHIR,
    Deid,
    fhir_timestamp,
    field,
    first_per_partition,
    flatten,
    local_time,
    merge_lineage,
    patient_key_or_ref,
    record_lineage,
    resolve_references,
)
from silver.deid import pseudonym
from silver.medication_request import NO_ORDER_NUMBER, hl7_order_groups, latest_per_identity, message_identity
from silver.terminology import normalize_system

CVX = "http://hl7.org/fhir/sid/cvx"
# RXA-5 coding systems that are CVX: the HL7 v2 mnemonic, HL7 table 0292 and the FHIR URI
CVX_SYSTEMS = ("CVX", "HL70292", "HL7 0292", CVX.upper())
COMPLETION_STATUS = {"CP": "completed", "PA": "completed", "RE": "not-done", "NA": "not-done"}
# CDC guide: RXA-6 = 999 means the administered amount is unknown (historical doses)
UNKNOWN_AMOUNT = 999.0


def fhir_immunizations(resources: DataFrame, patients: DataFrame, encounters: DataFrame, deid: Deid) -> DataFrame:
    i = resolve_references(flatten(resources, "immunization"), patients, encounters)
    return i.select(
        pseudonym(F.col("id"), deid.key, "immunization").alias("immunization_key"), patient_key_or_ref(deid),
        "encounter_key", F.when(F.col("vaccine_system") == CVX, F.col("cvx_code")).alias("cvx_code"), "display",
        F.col("cvx_code").alias("code_original"), F.col("vaccine_system").alias("code_system_original"),
        "status", fhir_timestamp("occurrence").alias("occurrence_at"),
        F.lit(None).cast("double").alias("dose_quantity"), F.lit(None).cast("string").alias("dose_unit"),
        F.lit(None).cast("string").alias("route"),
        *record_lineage(FHIR))


def _is_cvx(system: Column) -> Column:
    return F.upper(F.trim(system)).isin(*CVX_SYSTEMS)


def hl7_rxa(segs: DataFrame) -> DataFrame:
    """The RXA segments immunizations are made from (for the reconciliation count)."""
    return segs.filter(F.col("segment_id") == "RXA")


def hl7_immunizations(segs: DataFrame, deid: Deid) -> DataFrame:
    """One row per RXA segment; rows of the same vaccination record share ``immunization_key`` (see harmonize)."""
    rxa = hl7_order_groups(segs, "RXA", {
        "start": field(3, 1, decode=False), "code": field(5, 1, decode=False), "code_display": field(5, 2),
        "code_system": field(5, 3, decode=False), "alt_code": field(5, 4, decode=False),
        "alt_display": field(5, 5), "alt_system": field(5, 6, decode=False), "amount": field(6, decode=False),
        "unit_code": field(7, 1, decode=False), "unit_text": field(7, 2), "completion": field(20, decode=False),
        "action": field(21, decode=False),
    })
    filler = F.trim(F.col("orc_filler"))
    record = F.when(filler.isNotNull() & (filler != NO_ORDER_NUMBER),
                    F.concat_ws("|", F.lit("vaccination"), F.coalesce("mrn", F.lit("")), filler,
                                F.coalesce(F.trim("orc_filler_ns"), F.lit(""))))
    primary_cvx, alt_cvx = _is_cvx(F.col("code_system")), _is_cvx(F.col("alt_system"))
    amount = F.col("amount").try_cast("double")
    status = F.when(F.upper(F.trim("action")) == "D", F.lit("entered-in-error")).otherwise(
        F.coalesce(_status(F.col("completion")), F.lit("completed")))
    return rxa.select(
        F.coalesce(record, message_identity("rxa")).alias("_ident"), "content_hash", "message_ts", "segment_index",
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"),
        pseudonym(F.col("visit"), deid.key, "encounter").alias("encounter_key"),
        F.when(primary_cvx, F.trim("code")).when(alt_cvx, F.trim("alt_code")).alias("cvx_code"),
        F.when(primary_cvx, F.col("code_display")).when(alt_cvx, F.coalesce("alt_display", "code_display"))
         .otherwise(F.coalesce("code_display", "alt_display")).alias("display"),
        F.col("code").alias("code_original"),
        F.when(primary_cvx, F.lit(CVX)).otherwise(normalize_system(F.col("code_system"))).alias("code_system_original"),
        status.alias("status"), local_time(F.col("start")).alias("occurrence_at"),
        F.when(amount != UNKNOWN_AMOUNT, amount).alias("dose_quantity"),
        F.when(amount != UNKNOWN_AMOUNT, F.coalesce("unit_code", "unit_text")).alias("dose_unit"), "route")


def _status(completion: Column) -> Column:
    key = F.upper(F.trim(completion))
    out: Column | None = None
    for k, v in COMPLETION_STATUS.items():
        out = F.when(key == k, F.lit(v)) if out is None else out.when(key == k, F.lit(v))
    assert out is not None
    return out


def harmonize(fhir_rows: DataFrame, hl7_rows: DataFrame, deid: Deid) -> tuple[DataFrame, DataFrame]:
    """One row per vaccination: HL7 records (latest message wins), HL7 records folded into the one FHIR row with
    the same patient, CVX code and occurrence instant (FHIR rows are never merged with each other).

    Returns the rows and ``_n`` rows: how many source rows each merge folded away (for the reconciliation).
    """
    hl7_one = latest_per_identity(hl7_rows).withColumn(
        "immunization_key", pseudonym(F.col("_ident"), deid.key, "immunization"))
    hl7_folded = hl7_rows.groupBy("_ident").agg((F.count(F.lit(1)) - 1).alias("_n"))
    rows = fhir_rows.unionByName(hl7_one.select(*fhir_rows.columns))
    match = F.when(F.col("cvx_code").isNotNull() & F.col("occurrence_at").isNotNull(),
                   F.concat_ws("|", "patient_key", "cvx_code", F.col("occurrence_at").cast("string")))
    is_fhir = F.array_contains("sources", FHIR)
    n_fhir = F.sum(is_fhir.cast("int")).over(Window.partitionBy("_m"))
    rows = rows.withColumn("_m", match).withColumn(
        "_match", F.when(F.col("_m").isNotNull() & (n_fhir == 1), F.col("_m"))
                   .otherwise(F.concat(F.lit("key|"), F.col("immunization_key")))).drop("_m")
    fhir_first = Window.partitionBy("_match").orderBy(is_fhir.desc(), "immunization_key")
    lineage = rows.groupBy("_match").agg(*merge_lineage("_s", "_h"), (F.count(F.lit(1)) - 1).alias("_n"))
    best = first_per_partition(rows, fhir_first).join(lineage, "_match")
    out = best.withColumn("sources", F.col("_s")).withColumn("bronze_hashes", F.col("_h"))
    folded = lineage.select("_n").unionByName(hl7_folded.select("_n")).filter("_n > 0")
    return out.drop("_match", "_s", "_h", "_n"), folded
