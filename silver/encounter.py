"""silver.encounter: FHIR Encounter and HL7 ADT (PV1/EVN) folded into one row per visit.

``encounter_key = pseudonym(visit number, key, "encounter")`` (FHIR Encounter.identifier of type VN, HL7 PV1-19),
falling back to the FHIR Encounter id. ADT events (A01 admit, A02 transfer, A03 discharge, A04 register, A08
update, ...) are folded in: per field the value of the latest message wins; ``last_adt_event`` and
``adt_event_count`` summarise them. FHIR and HL7 rows of one visit merge the same way (latest wins per field).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.hl7v2 import hl7_time
from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    collect_lineage,
    fhir_timestamp,
    field,
    flatten,
    latest_value,
    patient_key_or_ref,
    resolve_references,
    segment_fields,
    source_lineage,
    with_index_key,
)
from silver.deid import pseudonym
from silver.patient import hl7_mrn

FIELDS = ("patient_key", "encounter_class", "type_code", "type_system", "type_display", "status", "admit_at",
          "discharge_at", "department", "organization_key", "practitioner_key", "admit_source",
          "discharge_disposition", "reason_code", "reason_system")

# HL7 PV1-2 and FHIR v3 ActCode class codes -> the class words of silver.encounter
CLASS_WORDS = {"I": "inpatient", "IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient",
               "E": "emergency", "EMER": "emergency", "O": "outpatient", "AMB": "outpatient",
               "OBSENC": "observation", "P": "pre-admission", "PRENC": "pre-admission", "R": "recurring",
               "B": "obstetrics", "VR": "virtual", "HH": "home-health", "SS": "short-stay"}
# ADT trigger -> encounter status it implies (A08 updates and others imply none)
EVENT_STATUS = {"A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "arrived",
                "A05": "planned", "A06": "in-progress", "A07": "in-progress", "A11": "cancelled",
                "A13": "in-progress", "A38": "cancelled"}


def _mapped(col: Column, mapping: dict[str, str]) -> Column:
    key = F.upper(F.trim(col))
    out = None
    for k, v in mapping.items():
        out = F.when(key == k, F.lit(v)) if out is None else out.when(key == k, F.lit(v))
    assert out is not None
    return out.otherwise(F.lower(F.trim(col)))


def encounter_class(col: Column) -> Column:
    return _mapped(col, CLASS_WORDS)


def fhir_encounter_index(resources: DataFrame, deid: Deid) -> DataFrame:
    """(fhir_id, encounter_key) for every FHIR Encounter: resolves ``Encounter/<id>`` references."""
    e = flatten(resources, "encounter")
    visit = F.get(F.filter(F.arrays_zip("identifier_types", "identifier_values"),
                           lambda x: F.upper(x["identifier_types"]) == "VN"), 0)["identifier_values"]
    return e.select(F.col("id").alias("fhir_id"),
                    pseudonym(F.coalesce(visit, F.col("id")), deid.key, "encounter").alias("encounter_key"))


def fhir_encounters(resources: DataFrame, patients: DataFrame, encounters: DataFrame, practitioners: DataFrame,
                    deid: Deid) -> DataFrame:
    """FHIR Encounter rows. ``patients``/``encounters``/``practitioners`` are (fhir_id, <x>_key) indexes."""
    e = with_index_key(flatten(resources, "encounter"), encounters)
    e = resolve_references(e, patients, practitioners=practitioners)
    return e.select(
        "encounter_key", patient_key_or_ref(deid),
        encounter_class(F.col("class_code")).alias("encounter_class"), "type_code", "type_system", "type_display",
        "status", fhir_timestamp("period_start").alias("admit_at"), fhir_timestamp("period_end").alias("discharge_at"),
        "department", pseudonym(F.col("organization_ref"), deid.key, "organization").alias("organization_key"),
        "practitioner_key", "admit_source", "discharge_disposition", "reason_code", "reason_system",
        F.lit(None).cast("string").alias("adt_event"), fhir_timestamp("last_updated").alias("updated_at"),
        *source_lineage(FHIR))


def hl7_visit_number() -> Column:
    return field(19, 1, decode=False)


def hl7_encounters(segs: DataFrame, deid: Deid) -> DataFrame:
    """One row per ADT message with a PV1 visit number (ORU PV1 segments only link results, see observation)."""
    adt = segs.filter(F.col("message_type") == "ADT")
    pid = segment_fields(adt, "PID", {"mrn": hl7_mrn()}).select("content_hash", "mrn")
    evn = segment_fields(adt, "EVN", {"evn_type": field(1, decode=False)}).select("content_hash", "evn_type")
    pv1 = segment_fields(adt, "PV1", {
        "visit": hl7_visit_number(), "class_code": field(2, decode=False), "admit": field(44, 1, decode=False),
        "discharge": field(45, 1, decode=False), "department": field(3, 1), "attending": field(7, 1, decode=False),
        "admit_source": field(14, decode=False), "disposition": field(36, decode=False),
    }).filter(F.col("visit").isNotNull())
    rows = pv1.join(pid, "content_hash", "left").join(evn, "content_hash", "left") \
              .withColumn("adt_event", F.coalesce(F.col("trigger_event"), F.col("evn_type")))
    status = _mapped(F.col("adt_event"), EVENT_STATUS)
    return rows.select(
        pseudonym(F.col("visit"), deid.key, "encounter").alias("encounter_key"),
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"),
        encounter_class(F.col("class_code")).alias("encounter_class"),
        F.lit(None).cast("string").alias("type_code"), F.lit(None).cast("string").alias("type_system"),
        F.lit(None).cast("string").alias("type_display"),
        F.when(status.isin(*EVENT_STATUS.values()), status).alias("status"),
        hl7_time(F.col("admit"), deid.facility_timezone).alias("admit_at"),
        hl7_time(F.col("discharge"), deid.facility_timezone).alias("discharge_at"),
        "department", F.lit(None).cast("string").alias("organization_key"),
        pseudonym(F.col("attending"), deid.key, "practitioner").alias("practitioner_key"),
        "admit_source", F.col("disposition").alias("discharge_disposition"),
        F.lit(None).cast("string").alias("reason_code"), F.lit(None).cast("string").alias("reason_system"),
        "adt_event", F.col("message_ts").alias("updated_at"), *source_lineage(HL7V2))


def harmonize(rows: DataFrame) -> DataFrame:
    """Source rows -> one row per encounter_key, latest non-null value per field, ADT events counted."""
    is_adt = F.col("adt_event").isNotNull()
    return rows.groupBy("encounter_key").agg(
        *[latest_value(f, "updated_at").alias(f) for f in FIELDS],
        latest_value("adt_event", "updated_at").alias("last_adt_event"),
        F.count(F.when(is_adt, F.col("content_hash"))).cast("int").alias("adt_event_count"), *collect_lineage())
