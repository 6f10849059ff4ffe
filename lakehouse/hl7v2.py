"""HL7 v2 field-level parsing, engine-side (Spark SQL functions), shared by Bronze (MSH) and Silver (segments).

Field numbering: ``fields[n]`` is field n for every segment. For MSH, ``fields[1]`` is the field separator
itself (MSH-1) and ``fields[2]`` the encoding characters (MSH-2), as the standard numbers them.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

DEFAULT_ENCODING = "^~\\&"


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


def hl7_time(value: Column, zone: str | Column) -> Column:
    """HL7 DTM -> UTC timestamp: a value with its own offset is exact; one without is the facility's local wall
    time in the IANA ``zone`` (daylight saving included). The one rule for Bronze (MSH-7) and Silver."""
    has_offset = value.rlike(r"^[0-9.]+[+-][0-9]{4}$")
    return F.when(has_offset, hl7_timestamp(value)).otherwise(
        F.to_utc_timestamp(hl7_timestamp(value), zone if isinstance(zone, Column) else F.lit(zone)))


def facility_zone(sending_facility: Column, component_separator: Column, default: str,
                  by_facility: Mapping[str, str]) -> Column:
    """The IANA zone of a message's local times: its sending facility's (MSH-4 namespace id, else universal id, as
    upper-cased keys of ``by_facility``), else ``default``."""
    hd = F.coalesce(sending_facility, F.lit(""))
    zone = F.lit(default)
    for part in (2, 1):  # the namespace id wins over the universal id
        name = F.upper(F.trim(F.split_part(hd, component_separator, F.lit(part))))
        for facility, facility_zone_name in sorted(by_facility.items()):
            zone = F.when(name == facility, F.lit(facility_zone_name)).otherwise(zone)
    return zone


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
