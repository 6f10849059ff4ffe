"""silver.imaging_study / imaging_series / imaging_instance from DICOM headers and FHIR ImagingStudy.

Both sources are linked by the DICOM UIDs: ``imaging_*_key = pseudonym(UID, key, "dicom-uid")`` for the Study,
Series and SOP Instance UIDs (FHIR ImagingStudy.identifier ``urn:dicom:uid``, ``series.uid``). A study or series
known to both is one row (FHIR values first, counts the larger of declared and seen). Instance headers keep the
PS3.15 Basic Profile de-identified DICOM JSON; a header that cannot be de-identified is rejected with the reason.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.hl7v2 import hl7_time
from silver.common import (
    DICOM,
    FHIR,
    Deid,
    fhir_timestamp,
    first_per_partition,
    flatten,
    latest_value,
    merge_lineage,
    patient_key_or_ref,
    record_lineage,
    resolve_references,
)
from silver.deid import date_shift_days, deidentify_dicom_column, pseudonym, scrub_text
from silver.identity import canonical_authority, identity

UID_NS = "dicom-uid"


def tag(name: str, tag_hex: str) -> Column:
    """First value of a DICOM JSON attribute of ``header_json`` as a string."""
    return F.get_json_object(F.col("header_json"), f"$.{tag_hex}.Value[0]").alias(name)


def dicom_time(date: Column, time: Column, offset: Column, zone: str) -> Column:
    """DICOM DA + TM -> UTC timestamp. With Timezone Offset From UTC (0008,0201, ``+HHMM``/``-HHMM``) the local time
    is exact; without it, it is the facility's local wall time in the IANA ``zone`` (the rule of HL7 times:
    :func:`lakehouse.hl7v2.hl7_time`). TM may carry fractions (``HHMMSS.FFFFFF``), be truncated (``HHMM``, ``HH``)
    or use the ACR-NEMA colons (``HH:MM:SS``); no time is local midnight."""
    tm = F.regexp_replace(F.coalesce(F.trim(time), F.lit("")), ":", "")
    off = F.coalesce(F.regexp_extract(F.trim(offset), r"^([+-][0-9]{4})$", 1), F.lit(""))
    value = F.when(F.trim(date).rlike(r"^[0-9]{8}$"), F.concat(F.trim(date), tm, off))
    return hl7_time(value, zone)


def dicom_patient_identity() -> Column:
    """The identity of an instance's patient: Patient ID qualified by Issuer of Patient ID (0010,0021), as HL7
    PID-3 by CX.4 (:mod:`silver.identity`); NULL without a Patient ID."""
    return identity(canonical_authority(tag("i", "00100021")), F.col("patient_id"))


def dicom_instances(instances: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    """One row per SOP Instance UID (most complete, then latest copy), with study/series attributes and the
    de-identified header (``deid_error`` set when it cannot be de-identified)."""
    # a resent or partial copy of an instance shares its SOP Instance UID: keep the most complete copy
    complete = F.col("study_instance_uid").isNotNull() & F.col("series_instance_uid").isNotNull()
    latest = Window.partitionBy("sop_instance_uid").orderBy(complete.desc(), F.col("file_size").desc_nulls_last(),
                                                            F.col("ingested_at").desc(), "content_hash")
    hashes = instances.groupBy("sop_instance_uid").agg(F.collect_set("content_hash").alias("bronze_hashes"))
    # descriptions are read from the header before the window, so that scrubbing (which mentions its text many
    # times) reads a column rather than re-parsing the header JSON each time
    d = instances.filter(F.col("sop_instance_uid").isNotNull()) \
                 .withColumn("_series_description", tag("sd", "0008103E")) \
                 .withColumn("_study_description", tag("st", "00081030"))
    d = first_per_partition(d, latest).join(hashes, "sop_instance_uid")
    d = d.withColumn("patient_key", pseudonym(dicom_patient_identity(), deid.key, "patient")) \
         .join(known, "patient_key", "left")
    shift = date_shift_days(F.col("patient_key"), deid.key, deid.max_shift_days) \
        if deid.shifts_dates else None
    header = deidentify_dicom_column(F.col("header_json"), deid.key, F.col("patient_key"), shift)
    study_time = dicom_time(tag("d", "00080020"), tag("t", "00080030"), tag("o", "00080201"), deid.facility_timezone)
    return d.select(
        pseudonym(F.col("sop_instance_uid"), deid.key, UID_NS).alias("imaging_instance_key"),
        pseudonym(F.col("series_instance_uid"), deid.key, UID_NS).alias("imaging_series_key"),
        pseudonym(F.col("study_instance_uid"), deid.key, UID_NS).alias("imaging_study_key"),
        "patient_key", "sop_class_uid", tag("n", "00200013").try_cast("int").alias("instance_number"),
        F.col("rows"), F.col("columns"), "number_of_frames", "transfer_syntax_uid",
        F.col("modality"), tag("b", "00180015").alias("body_site"),
        tag("s", "00200011").try_cast("int").alias("series_number"),
        scrub_text(F.col("_series_description"), F.col("known")).alias("series_description"),
        scrub_text(F.col("_study_description"), F.col("known")).alias("study_description"),
        study_time.alias("started_at"),
        header.alias("dicom_deid"), F.array(F.lit(DICOM)).alias("sources"), "bronze_hashes",
    ).withColumn("header_json", F.col("dicom_deid.header_json")) \
     .withColumn("deid_error", F.col("dicom_deid.deid_error")).drop("dicom_deid")


def _study_uid() -> Column:
    """The Study Instance UID: the identifier of system urn:dicom:uid (selected per identifier in the views)."""
    return F.regexp_replace(F.col("study_uid"), "^urn:oid:", "")


def fhir_studies(resources: DataFrame, patients: DataFrame, encounters: DataFrame, known: DataFrame,
                 deid: Deid) -> DataFrame:
    s = resolve_references(flatten(resources, "imaging_study"), patients, encounters)
    s = s.join(known, "patient_key", "left")
    return s.select(
        pseudonym(F.coalesce(_study_uid(), F.col("id")), deid.key, UID_NS).alias("imaging_study_key"),
        patient_key_or_ref(deid), "encounter_key", "modalities", fhir_timestamp("started").alias("started_at"),
        scrub_text(F.col("description"), F.col("known")).alias("description"), "series_count", "instance_count",
        *record_lineage(FHIR))


def fhir_series(resources: DataFrame, patients: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    s = resolve_references(flatten(resources, "imaging_series"), patients)
    s = s.join(known, "patient_key", "left")
    return s.select(
        pseudonym(F.col("series_uid"), deid.key, UID_NS).alias("imaging_series_key"),
        pseudonym(F.coalesce(_study_uid(), F.col("id")), deid.key, UID_NS).alias("imaging_study_key"),
        patient_key_or_ref(deid), "modality", "body_site", "series_number",
        scrub_text(F.col("description"), F.col("known")).alias("description"), "instance_count",
        *record_lineage(FHIR))


def _merge(rows: DataFrame, key: str, fields: list[str], counts: list[str]) -> DataFrame:
    """One row per key: FHIR values first (then DICOM), the larger count, all sources and hashes."""
    fhir_first = F.timestamp_seconds(F.when(F.array_contains("sources", FHIR), 1).otherwise(0))
    return rows.groupBy(key).agg(
        *[latest_value(f, fhir_first, F.lit("")).alias(f) for f in fields], *[F.max(c).alias(c) for c in counts],
        *merge_lineage())


def studies(fhir: DataFrame, instances: DataFrame) -> DataFrame:
    seen = instances.groupBy("imaging_study_key").agg(
        F.first("patient_key", ignorenulls=True).alias("patient_key"),
        F.array_sort(F.collect_set("modality")).alias("modalities"), F.min("started_at").alias("started_at"),
        F.first("study_description", ignorenulls=True).alias("description"),
        F.countDistinct("imaging_series_key").cast("int").alias("series_count"),
        F.count(F.lit(1)).cast("int").alias("instance_count"), *merge_lineage())
    rows = fhir.unionByName(seen, allowMissingColumns=True)
    return _merge(rows, "imaging_study_key", ["patient_key", "encounter_key", "modalities", "started_at",
                                              "description"], ["series_count", "instance_count"])


def series(fhir: DataFrame, instances: DataFrame) -> DataFrame:
    seen = instances.groupBy("imaging_series_key").agg(
        F.first("imaging_study_key").alias("imaging_study_key"), F.first("patient_key", ignorenulls=True)
        .alias("patient_key"), F.first("modality", ignorenulls=True).alias("modality"),
        F.first("body_site", ignorenulls=True).alias("body_site"),
        F.first("series_number", ignorenulls=True).alias("series_number"),
        F.first("series_description", ignorenulls=True).alias("description"),
        F.count(F.lit(1)).cast("int").alias("instance_count"), *merge_lineage())
    rows = fhir.unionByName(seen, allowMissingColumns=True)
    return _merge(rows, "imaging_series_key", ["imaging_study_key", "patient_key", "modality", "body_site",
                                               "series_number", "description"], ["instance_count"])
