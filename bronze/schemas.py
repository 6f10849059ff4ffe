"""Bronze and quarantine table names and schemas (public contract: keep names and columns, add columns at the end)."""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

HL7V2_TABLE = "bronze.hl7v2_messages"
FHIR_TABLE = "bronze.fhir_resources"
DICOM_TABLE = "bronze.dicom_instances"
MANIFEST_TABLE = "_system.landing_manifest"
QUARANTINE_TABLES = {
    "hl7v2": "quarantine.hl7v2",
    "fhir": "quarantine.fhir",
    "dicom": "quarantine.dicom",
    "unknown": "quarantine.landing",
}


def _s(name: str) -> StructField:
    return StructField(name, StringType())


def _l(name: str) -> StructField:
    return StructField(name, LongType())


def _ts(name: str) -> StructField:
    return StructField(name, TimestampType())


HL7V2_SCHEMA = StructType([
    _s("message_control_id"), _s("message_type"), _s("trigger_event"), _s("message_structure"), _s("version"),
    _s("sending_application"), _s("sending_facility"), _s("receiving_application"), _s("receiving_facility"),
    _s("message_datetime"), _ts("message_ts"), _s("processing_id"), _s("encoding_characters"),
    _s("field_separator"), _s("raw"), _s("source_file"), _l("position"), _l("byte_offset"), _s("charset"),
    _s("content_hash"), _s("ingest_run_id"), _ts("ingested_at"),
])

FHIR_SCHEMA = StructType([
    _s("resource_type"), _s("resource_id"), _s("last_updated"), _s("raw"), _s("source_file"), _s("bundle_type"),
    _s("bundle_id"), _s("full_url"), _l("entry_index"), _s("entry_path"), _l("position"), _s("content_hash"),
    _s("ingest_run_id"), _ts("ingested_at"),
])

DICOM_SCHEMA = StructType([
    _s("sop_instance_uid"), _s("sop_class_uid"), _s("series_instance_uid"), _s("study_instance_uid"),
    _s("modality"), _s("patient_id"), _s("study_date"), _s("transfer_syntax_uid"), StructField("rows", IntegerType()),
    StructField("columns", IntegerType()), StructField("number_of_frames", IntegerType()), _s("header_json"),
    _s("source_file"), _l("file_size"), _s("content_hash"), _s("ingest_run_id"), _ts("ingested_at"),
])

QUARANTINE_SCHEMA = StructType([
    _s("reason"), _s("source_file"), _l("position"), _s("raw"), _s("raw_encoding"), _l("raw_size"),
    StructField("raw_truncated", BooleanType()), _s("content_hash"), _s("ingest_run_id"), _ts("quarantined_at"),
])

MANIFEST_SCHEMA = StructType([
    _s("path"), _l("size"), _ts("mtime"), _l("mtime_ns"), _s("sha256"), _s("format"), _s("charset"),
    _s("ingest_run_id"), _ts("processed_at"),
])

# raw text/bytes kept in quarantine rows are capped; the landing file keeps the full original
QUARANTINE_RAW_LIMIT = 1 << 20
