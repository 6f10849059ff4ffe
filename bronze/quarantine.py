"""Quarantine rows: the reason, where the item came from and its raw text (or base64 of bytes), size-capped."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from bronze.schemas import QUARANTINE_RAW_LIMIT

# a quarantined item is the same item again when file, position, reason and content agree
QUARANTINE_KEYS = ("source_file", "position", "reason", "content_hash")


def quarantine_text(reason: Column, source_file: Column, position: Column, raw: Column, run_id: str) -> list[Column]:
    """Columns of a quarantine row for a text item (HL7 message, JSON document)."""
    size = F.octet_length(raw)
    return [
        reason.alias("reason"),
        source_file.alias("source_file"),
        position.cast("bigint").alias("position"),
        F.when(size > QUARANTINE_RAW_LIMIT, F.substring(raw, 1, QUARANTINE_RAW_LIMIT)).otherwise(raw).alias("raw"),
        F.lit("text").alias("raw_encoding"),
        size.cast("bigint").alias("raw_size"),
        (F.coalesce(size, F.lit(0)) > QUARANTINE_RAW_LIMIT).alias("raw_truncated"),
        F.sha2(F.coalesce(raw, F.lit("")), 256).alias("content_hash"),
        F.lit(run_id).alias("ingest_run_id"),
        F.current_timestamp().alias("quarantined_at"),
    ]
