"""HL7 v2 into Bronze: split landed files into messages and parse their MSH, engine-side (Spark SQL functions).

Splitting: a marker is put before every segment that starts a message or a batch envelope (MSH, FHS, BHS, BTS,
FTS at the start of the text or after CR/LF/MLLP bytes/BOM); the text is split on the marker, so the chunks
concatenate back to the original and byte offsets are running sums of chunk lengths.
Segments are then normalised to CR-separated, MLLP framing bytes and BOM removed.

Field-level parsing shared with Silver (timestamps, segments, fields, escapes) is in ``lakehouse.hl7v2``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from bronze.quarantine import quarantine_text
from bronze.schemas import QUARANTINE_SCHEMA
from lakehouse.catalog import conform
from lakehouse.hl7v2 import facility_zone, hl7_time

MARK = "\ue000"  # private-use character, never in HL7 text
ENVELOPES = ("FHS", "BHS", "BTS", "FTS")
_HEADER_RE = r"(^|[\r\n\x0b\x1c\ufeff])((?:MSH|FHS|BHS|BTS|FTS)[^A-Za-z0-9\r\n])"
_FRAMING_RE = "[\x0b\x1c\ufeff]"


def decode_files(files: DataFrame) -> DataFrame:
    """binaryFile rows (path, content) + source_file, charset -> (source_file, charset, text). Charset is a
    per-file literal decided at landing: UTF-8 if valid, else ISO-8859-1 (lossless, byte = char)."""
    utf8 = files.filter(F.col("charset") == "utf-8").select(
        "source_file", "charset", F.decode("content", "UTF-8").alias("text"))
    latin = files.filter(F.col("charset") != "utf-8").select(
        "source_file", "charset", F.decode("content", "ISO-8859-1").alias("text"))
    return utf8.unionByName(latin)


def split_chunks(texts: DataFrame) -> DataFrame:
    """(source_file, charset, text) -> one row per chunk: (source_file, chunk_index, byte_offset, kind, raw).

    kind is ``message`` (starts with MSH), ``envelope`` (FHS/BHS/BTS/FTS segment plus anything up to the next
    header) or ``preamble`` (text before the first header). raw has CR-separated segments, no framing bytes.
    """
    marked = F.regexp_replace("text", _HEADER_RE, f"$1{MARK}$2")
    exploded = texts.select("source_file", "charset", F.posexplode(F.split(marked, MARK)).alias("chunk_index", "chunk"))
    nbytes = F.when(F.col("charset") == "utf-8", F.octet_length("chunk")).otherwise(F.length("chunk"))
    w = Window.partitionBy("source_file").orderBy("chunk_index").rowsBetween(Window.unboundedPreceding, -1)
    normalized = F.regexp_replace(F.regexp_replace("chunk", _FRAMING_RE, ""), "\r\n|\n", "\r")
    segments = F.filter(F.split(normalized, "\r"), lambda s: F.trim(s) != "")
    raw = F.array_join(segments, "\r")
    head = F.substring(F.col("raw"), 1, 3)
    kind = (F.when(head == "MSH", "message").when(head.isin(*ENVELOPES), "envelope").otherwise("preamble"))
    return (exploded
            .withColumn("byte_offset", F.coalesce(F.sum(nbytes).over(w), F.lit(0)).cast("bigint"))
            .select("source_file", "charset", "chunk_index", "byte_offset", raw.alias("raw"))
            .withColumn("kind", kind))


def _msh(raw: Column) -> tuple[Column, Column, Column]:
    msh = F.substring_index(raw, "\r", 1)
    sep = F.substring(msh, 4, 1)
    parts = F.split(F.replace(msh, sep, F.lit("\u0001")), "\u0001")  # split on a literal, whatever the separator
    return msh, sep, parts


def _component(value: Column, comp_sep: Column, n: int) -> Column:
    return F.nullif(F.split_part(F.coalesce(value, F.lit("")), comp_sep, F.lit(n)), F.lit(""))


def parse_messages(chunks: DataFrame, run_id: str, zone: str = "UTC",
                   zones_by_facility: Mapping[str, str] | None = None) -> DataFrame:
    """Message chunks -> Bronze columns plus ``reason`` (null when the message is good). MSH-7 without an offset is
    local time in the sending facility's zone (``zones_by_facility``, see :func:`facility_zone`), else ``zone``."""
    msh, sep, parts = _msh(F.col("raw"))
    enc = F.get(parts, 1)

    def field(n: int) -> Column:  # MSH-n, as sent (MSH-1 is the separator, so MSH-n is parts[n-1])
        return F.nullif(F.get(parts, n - 1), F.lit(""))

    comp = F.substring(enc, 1, 1)
    msg_type = field(9)
    version = F.split_part(F.coalesce(field(12), F.lit("")), comp, F.lit(1))
    chars = F.array_distinct(F.regexp_extract_all(enc, F.lit("(.)"), F.lit(1)))
    reason = (
        F.when(F.length(enc) == 0, "MSH-2 encoding characters are missing")
        .when(~F.length(enc).between(4, 5), F.concat(F.lit("MSH-2 must hold 4 or 5 encoding characters, got "),
                                                     F.length(enc).cast("string"), F.lit(": "), enc))
        .when(F.size(chars) != F.length(enc), F.concat(F.lit("MSH-2 encoding characters repeat: "), enc))
        .when(enc.rlike("[A-Za-z0-9 ]") | (F.instr(enc, sep) > 0),
              F.concat(F.lit("MSH-2 encoding characters are invalid: "), enc))
        .when(F.nullif(F.split_part(F.coalesce(msg_type, F.lit("")), comp, F.lit(1)), F.lit("")).isNull(),
              "MSH-9 message type is missing")
        .when(field(10).isNull(), "MSH-10 message control id is missing")
        .when(F.nullif(version, F.lit("")).isNull(), "MSH-12 version id is missing")
    )
    dt = field(7)
    return chunks.select(
        field(10).alias("message_control_id"),
        _component(msg_type, comp, 1).alias("message_type"),
        _component(msg_type, comp, 2).alias("trigger_event"),
        _component(msg_type, comp, 3).alias("message_structure"),
        F.nullif(version, F.lit("")).alias("version"),
        field(3).alias("sending_application"),
        field(4).alias("sending_facility"),
        field(5).alias("receiving_application"),
        field(6).alias("receiving_facility"),
        dt.alias("message_datetime"),
        hl7_time(F.split_part(F.coalesce(dt, F.lit("")), comp, F.lit(1)),
                 facility_zone(field(4), comp, zone, zones_by_facility or {})).alias("message_ts"),
        field(11).alias("processing_id"),
        enc.alias("encoding_characters"),
        sep.alias("field_separator"),
        F.col("raw"),
        F.col("source_file"),
        F.col("position").cast("bigint"),
        F.col("byte_offset"),
        F.col("charset"),
        F.sha2(F.col("raw"), 256).alias("content_hash"),
        F.lit(run_id).alias("ingest_run_id"),
        F.current_timestamp().alias("ingested_at"),
        reason.alias("reason"),
    )


def split_messages(files: DataFrame, run_id: str, zone: str = "UTC",
                   zones_by_facility: Mapping[str, str] | None = None) -> tuple[DataFrame, DataFrame]:
    """binaryFile rows (+source_file, charset) -> (messages with ``reason`` column, quarantine rows for
    non-message content: orphan segments after a batch header, text before the first header).

    ``position`` is the message number within the file (0-based, counting messages only).
    """
    chunks = split_chunks(decode_files(files))
    w = Window.partitionBy("source_file").orderBy("chunk_index")
    msgs = (chunks.filter(F.col("kind") == "message")
            .withColumn("position", F.row_number().over(w) - 1))
    messages = parse_messages(msgs, run_id, zone, zones_by_facility)
    # an envelope chunk is one FHS/BHS/BTS/FTS segment; anything after it (before the next MSH) is orphaned
    orphan_raw = F.when(F.col("kind") == "envelope", F.regexp_extract("raw", r"^[^\r]*\r([\s\S]*)$", 1)
                        ).otherwise(F.col("raw"))
    others = (chunks.filter(F.col("kind") != "message")
              .withColumn("orphan", orphan_raw)
              .filter(F.trim(F.regexp_replace("orphan", "\r", "")) != ""))
    reason = F.when(F.col("kind") == "envelope",
                    F.concat(F.lit("segments outside any message (no MSH) after "),
                             F.substring("raw", 1, 3), F.lit(" at byte "), F.col("byte_offset").cast("string")))
    reason = reason.otherwise(F.lit("text before the first MSH segment"))
    bad = conform(others.select(*quarantine_text(reason, F.col("source_file"), F.col("byte_offset"),
                                                  F.col("orphan"), run_id)), QUARANTINE_SCHEMA)
    return messages, bad
