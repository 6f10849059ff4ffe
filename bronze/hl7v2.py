"""HL7 v2: split landed files into messages and parse segments/fields, all engine-side (Spark SQL functions).

Splitting: a marker is put before every segment that starts a message or a batch envelope (MSH, FHS, BHS, BTS,
FTS at the start of the text or after CR/LF/MLLP bytes/BOM); the text is split on the marker, so the chunks
concatenate back to the original and byte offsets are running sums of chunk lengths.
Segments are then normalised to CR-separated, MLLP framing bytes and BOM removed.

Field numbering: ``fields[n]`` is field n for every segment. For MSH, ``fields[1]`` is the field separator
itself (MSH-1) and ``fields[2]`` the encoding characters (MSH-2), as the standard numbers them.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from bronze.quarantine import conform, quarantine_text

MARK = "\ue000"  # private-use character, never in HL7 text
ENVELOPES = ("FHS", "BHS", "BTS", "FTS")
DEFAULT_ENCODING = "^~\\&"
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


def hl7_timestamp(value: Column) -> Column:
    """HL7 DTM/TS (YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ], first component) -> UTC timestamp; null if invalid.
    Without an offset the value is taken as UTC (the original string is kept next to it)."""
    digits = F.regexp_extract(value, r"^(\d{4,14})", 1)
    frac = F.regexp_extract(value, r"^\d{14}(\.\d{1,6})", 1)
    offset = F.regexp_extract(value, r"^[\d.]+([+-]\d{4})", 1)
    padded = F.concat(digits, F.substring(F.lit("0101000000"), F.length(digits) - 3, 10))
    local = F.try_to_timestamp(padded, F.lit("yyyyMMddHHmmss"))
    sign = F.when(F.substring(offset, 1, 1) == "-", -1).otherwise(1)
    offset_s = F.when(offset != "", sign * (F.substring(offset, 2, 2).try_cast("int") * 3600
                                             + F.substring(offset, 4, 2).try_cast("int") * 60))
    micros = ((F.unix_timestamp(local) - F.coalesce(offset_s, F.lit(0))) * 1_000_000
              + F.coalesce((F.concat(F.lit("0"), frac).try_cast("double") * 1_000_000).cast("bigint"), F.lit(0)))
    valid = (F.length(digits).isin(4, 6, 8, 10, 12, 14)) & local.isNotNull()
    return F.when(valid, F.timestamp_micros(micros))


def parse_messages(chunks: DataFrame, run_id: str) -> DataFrame:
    """Message chunks -> Bronze columns plus ``reason`` (null when the message is good)."""
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
        hl7_timestamp(F.split_part(F.coalesce(dt, F.lit("")), comp, F.lit(1))).alias("message_ts"),
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


def split_messages(files: DataFrame, run_id: str) -> tuple[DataFrame, DataFrame]:
    """binaryFile rows (+source_file, charset) -> (messages with ``reason`` column, quarantine rows for
    non-message content: orphan segments after a batch header, text before the first header).

    ``position`` is the message number within the file (0-based, counting messages only).
    """
    chunks = split_chunks(decode_files(files))
    w = Window.partitionBy("source_file").orderBy("chunk_index")
    msgs = (chunks.filter(F.col("kind") == "message")
            .withColumn("position", F.row_number().over(w) - 1))
    messages = parse_messages(msgs, run_id)
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
                                                  F.col("orphan"), run_id)))
    return messages, bad


# -- parsing the body: segments, fields, components (for Silver) --------------------------------------------
def explode_segments(messages: DataFrame) -> DataFrame:
    """Messages (content_hash, message_control_id, raw, field_separator, encoding_characters) -> one row per
    segment: content_hash, message_control_id, segment_index, segment_id, fields (array<string>, fields[n] is
    field n; for MSH fields[1] is MSH-1), field_separator, encoding_characters."""
    seg = F.col("segment")
    sep = F.col("field_separator")
    parts = F.split(F.replace(seg, sep, F.lit("\u0001")), "\u0001")
    msh_fields = F.concat(F.array(F.lit("MSH"), sep), F.slice(parts, 2, F.greatest(F.size(parts) - 1, F.lit(1))))
    exploded = messages.select(
        "content_hash", "message_control_id", "field_separator", "encoding_characters",
        F.posexplode(F.split("raw", "\r")).alias("segment_index", "segment"))
    return exploded.select(
        "content_hash", "message_control_id", "segment_index",
        F.substring(seg, 1, 3).alias("segment_id"),
        F.when(F.substring(seg, 1, 3) == "MSH", msh_fields).otherwise(parts).alias("fields"),
        "field_separator", "encoding_characters",
    )


def _enc(encoding: Column | str, i: int) -> Column:
    col = F.lit(encoding) if isinstance(encoding, str) else encoding
    return F.substring(col, i, 1)


def unescape(value: Column, field_separator: Column | str = "|", encoding: Column | str = DEFAULT_ENCODING) -> Column:
    """Decode HL7 escape sequences: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ (delimiters), \\.br\\ and \\.sp\\ (line breaks),
    \\Xhh..\\ (hex bytes, UTF-8 if valid else ISO-8859-1), \\H\\ \\N\\ and other formatting commands (dropped).
    Unknown sequences (\\Z..\\, \\C..\\, \\M..\\) are kept as sent. Works for any escape character."""
    fsep = F.lit(field_separator) if isinstance(field_separator, str) else field_separator
    comp, rep, esc, sub = _enc(encoding, 1), _enc(encoding, 2), _enc(encoding, 3), _enc(encoding, 4)
    # map the message's escape character onto a backslash; literal backslashes are parked on a private char
    normalized = F.when(esc == "\\", value).otherwise(F.replace(F.replace(value, F.lit("\\"), F.lit("\ue001")),
                                                                esc, F.lit("\\")))
    tokens = F.regexp_extract_all(normalized, F.lit(r"(\\[^\\]*\\|[^\\]+|\\)"), F.lit(1))

    def decode(t: Column) -> Column:
        body = F.substring(t, 2, F.greatest(F.length(t) - 2, F.lit(0)))
        hexbytes = F.unhex(F.substring(body, 2, 10_000_000))
        as_hex = F.when(F.is_valid_utf8(hexbytes), F.decode(F.make_valid_utf8(hexbytes), "UTF-8")).otherwise(
            F.decode(hexbytes, "ISO-8859-1"))
        return (F.when(F.length(t) < 2, t).when(F.substring(t, -1, 1) != "\\", t)
                .when(body == "F", fsep).when(body == "S", comp).when(body == "T", sub)
                .when(body == "R", rep).when(body == "E", esc)
                .when(body.isin(".br", ".sp"), F.lit("\n"))
                .when(body.isin("H", "N") | body.rlike(r"^\.(in|ti|sk|ce|fi|nf)"), F.lit(""))
                .when(body.rlike(r"^X([0-9A-Fa-f]{2})+$"), as_hex)
                .otherwise(t))

    decoded = F.array_join(F.transform(tokens, decode), "")
    decoded = F.when(esc == "\\", decoded).otherwise(F.replace(decoded, F.lit("\ue001"), F.lit("\\")))
    return F.when(value.isNull(), F.lit(None).cast("string")).when(F.instr(value, esc) == 0, value).otherwise(decoded)


def hl7_field(fields: Column, field: int, component: int | None = None, subcomponent: int | None = None,
              repetition: int | None = None, encoding: Column | str = DEFAULT_ENCODING,
              field_separator: Column | str = "|", decode: bool = True) -> Column:
    """The value at SEG-field[repetition].component.subcomponent (1-based, HL7 numbering) of a ``fields`` array
    from :func:`explode_segments`; null when absent or empty. With a component and no repetition, the first
    repetition is used. Escape sequences are decoded unless ``decode=False``. Pass
    ``encoding=F.col("encoding_characters"), field_separator=F.col("field_separator")`` for messages that
    declare non-standard delimiters."""
    value = F.get(fields, field)
    comp, rep, sub = _enc(encoding, 1), _enc(encoding, 2), _enc(encoding, 4)
    if repetition is not None or component is not None:
        value = F.split_part(value, rep, F.lit(repetition or 1))
    if component is not None:
        value = F.split_part(value, comp, F.lit(component))
    if subcomponent is not None:
        value = F.split_part(value, sub, F.lit(subcomponent))
    value = F.nullif(value, F.lit(""))
    if decode:
        is_msh_delims = (F.get(fields, 0) == "MSH") & F.lit(field in (1, 2))
        value = F.when(is_msh_delims, value).otherwise(unescape(value, field_separator, encoding))
    return value
