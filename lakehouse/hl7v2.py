"""HL7 v2 field-level parsing, engine-side (Spark SQL functions), shared by Bronze (MSH) and Silver (segments).

Field numbering: ``fields[n]`` is field n for every segment. For MSH, ``fields[1]`` is the field separator
itself (MSH-1) and ``fields[2]`` the encoding characters (MSH-2), as the standard numbers them.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.expressions import let

DEFAULT_ENCODING = "^~\\&"


def hl7_timestamp(value: Column) -> Column:
    """HL7 DTM/TS (YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ], first component) -> UTC timestamp; null if invalid.
    Without an offset the value is taken as UTC (the original string is kept next to it)."""
    return let(value, _hl7_timestamp)


def _hl7_timestamp(value: Column) -> Column:
    frac = F.regexp_extract(value, r"^\d{14}(\.\d{1,6})", 1)
    offset = F.regexp_extract(value, r"^[\d.]+([+-]\d{4})", 1)
    sign = F.when(F.substring(offset, 1, 1) == "-", -1).otherwise(1)
    offset_s = F.when(offset != "", sign * (F.substring(offset, 2, 2).try_cast("int") * 3600
                                             + F.substring(offset, 4, 2).try_cast("int") * 60))

    def from_digits(digits: Column) -> Column:
        padded = F.concat(digits, F.substring(F.lit("0101000000"), F.length(digits) - 3, 10))

        def from_local(local: Column) -> Column:
            micros = ((F.unix_timestamp(local) - F.coalesce(offset_s, F.lit(0))) * 1_000_000
                      + F.coalesce((F.concat(F.lit("0"), frac).try_cast("double") * 1_000_000).cast("bigint"),
                                   F.lit(0)))
            valid = (F.length(digits).isin(4, 6, 8, 10, 12, 14)) & local.isNotNull()
            return F.when(valid, F.timestamp_micros(micros))

        return let(F.try_to_timestamp(padded, F.lit("yyyyMMddHHmmss")), from_local)

    return let(F.regexp_extract(value, r"^(\d{4,14})", 1), from_digits)


def hl7_time(value: Column, zone: str | Column) -> Column:
    """HL7 DTM -> UTC timestamp: a value with its own offset is exact; one without is the facility's local wall
    time in the IANA ``zone`` (daylight saving included). The one rule for Bronze (MSH-7) and Silver."""
    zone_col = zone if isinstance(zone, Column) else F.lit(zone)
    return let(value, lambda v: let(hl7_timestamp(v), lambda t: F.when(
        v.rlike(r"^[0-9.]+[+-][0-9]{4}$"), t).otherwise(F.to_utc_timestamp(t, zone_col))))


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
    field n; for MSH fields[1] is MSH-1), decoded (the fields with escape sequences decoded except those of the
    delimiters, see :func:`hl7_field`), field_separator, encoding_characters."""
    seg = F.col("segment")
    sep = F.col("field_separator")
    parts = F.split(F.replace(seg, sep, F.lit("\u0001")), "\u0001")
    msh_fields = F.concat(F.array(F.lit("MSH"), sep), F.slice(parts, 2, F.greatest(F.size(parts) - 1, F.lit(1))))
    exploded = messages.select(
        "content_hash", "message_control_id", "field_separator", "encoding_characters",
        F.posexplode(F.split("raw", "\r")).alias("segment_index", "segment"))
    rows = exploded.select(
        "content_hash", "message_control_id", "segment_index",
        F.substring(seg, 1, 3).alias("segment_id"),
        F.when(F.substring(seg, 1, 3) == "MSH", msh_fields).otherwise(parts).alias("fields"),
        "field_separator", "encoding_characters",
    )
    # decoded once per field here, so that a field read later is a small expression (see lakehouse.expressions)
    decoded = F.transform("fields", lambda f, i: F.when((F.col("segment_id") == "MSH") & i.isin(1, 2), f).otherwise(
        _unescape(f, F.col("field_separator"), F.col("encoding_characters"), delimiters=False)))
    return rows.select("content_hash", "message_control_id", "segment_index", "segment_id", "fields",
                       decoded.alias("decoded"), "field_separator", "encoding_characters")


def _enc(encoding: Column | str, i: int) -> Column:
    col = F.lit(encoding) if isinstance(encoding, str) else encoding
    return F.substring(col, i, 1)


def unescape(value: Column, field_separator: Column | str = "|", encoding: Column | str = DEFAULT_ENCODING) -> Column:
    """Decode HL7 escape sequences: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ (delimiters), \\.br\\ and \\.sp\\ (line breaks),
    \\Xhh..\\ (hex bytes, UTF-8 if valid else ISO-8859-1), \\H\\ \\N\\ and other formatting commands (dropped).
    Unknown sequences (\\Z..\\, \\C..\\, \\M..\\) are kept as sent. Works for any escape character."""
    return let(value, lambda v: _unescape(v, field_separator, encoding))


# private-use characters that stand for the delimiters escaped in pre-decoded fields (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\)
DELIMITER_STAND_INS = ("\ue010", "\ue011", "\ue012", "\ue013", "\ue014")
# the component, subcomponent and repetition separators of a value while it is decoded whole
HELD_DELIMITERS = ("\ue020", "\ue021", "\ue022")


def _delimiters(field_separator: Column | str, encoding: Column | str) -> tuple[Column, ...]:
    """The field separator, component, subcomponent, repetition and escape characters, in stand-in order."""
    fsep = F.lit(field_separator) if isinstance(field_separator, str) else field_separator
    return fsep, _enc(encoding, 1), _enc(encoding, 4), _enc(encoding, 2), _enc(encoding, 3)


def _unescape(value: Column, field_separator: Column | str, encoding: Column | str,
              delimiters: bool = True) -> Column:
    """``delimiters=False``: escaped delimiters become :data:`DELIMITER_STAND_INS` (the value can still be split at
    its delimiters; :func:`_restore_delimiters` finishes the decoding)."""
    fsep, comp, sub, rep, esc = _delimiters(field_separator, encoding) if delimiters else \
        tuple(F.lit(c) for c in DELIMITER_STAND_INS)
    esc_char = _enc(encoding, 3)
    # map the message's escape character onto a backslash; literal backslashes are parked on a private char
    normalized = F.when(esc_char == "\\", value).otherwise(
        F.replace(F.replace(value, F.lit("\\"), F.lit("\ue001")), esc_char, F.lit("\\")))
    if delimiters:
        tokens = F.regexp_extract_all(normalized, F.lit(r"(\\[^\\]*\\|[^\\]+|\\)"), F.lit(1))
    else:  # the value still holds its delimiters: an escape sequence never spans one (as if decoded after a split)
        real = _delimiters(field_separator, encoding)[1:4]
        for held, delimiter in zip(HELD_DELIMITERS, real, strict=True):
            normalized = F.replace(normalized, delimiter, F.lit(held))
        tokens = F.regexp_extract_all(normalized, F.lit(rf"(\\[^\\{''.join(HELD_DELIMITERS)}]*\\|[^\\]+|\\)"),
                                      F.lit(1))

    def decode(t: Column) -> Column:
        body = F.substring(t, 2, F.greatest(F.length(t) - 2, F.lit(0)))
        hexbytes = F.unhex(F.substring(body, 2, 10_000_000))
        as_hex = F.when(F.is_valid_utf8(hexbytes), F.decode(F.make_valid_utf8(hexbytes), "UTF-8")).otherwise(
            F.decode(hexbytes, "ISO-8859-1"))
        if not delimiters:  # a delimiter spelled in hex is text, not a delimiter: its stand-in until the split
            for stand_in, delimiter in zip(DELIMITER_STAND_INS, _delimiters(field_separator, encoding), strict=True):
                as_hex = F.replace(as_hex, delimiter, F.lit(stand_in))
        return (F.when(F.length(t) < 2, t).when(F.substring(t, -1, 1) != "\\", t)
                .when(body == "F", fsep).when(body == "S", comp).when(body == "T", sub)
                .when(body == "R", rep).when(body == "E", esc)
                .when(body.isin(".br", ".sp"), F.lit("\n"))
                .when(body.isin("H", "N") | body.rlike(r"^\.(in|ti|sk|ce|fi|nf)"), F.lit(""))
                .when(body.rlike(r"^X([0-9A-Fa-f]{2})+$"), as_hex)
                .otherwise(t))

    decoded = F.array_join(F.transform(tokens, decode), "")
    if not delimiters:
        for held, delimiter in zip(HELD_DELIMITERS, real, strict=True):
            decoded = F.replace(decoded, F.lit(held), delimiter)
    decoded = F.when(esc_char == "\\", decoded).otherwise(F.replace(decoded, F.lit("\ue001"), F.lit("\\")))
    return F.when(value.isNull(), F.lit(None).cast("string")).when(F.instr(value, esc_char) == 0, value) \
        .otherwise(decoded)


def _restore_delimiters(value: Column, field_separator: Column | str, encoding: Column | str) -> Column:
    for stand_in, delimiter in zip(DELIMITER_STAND_INS, _delimiters(field_separator, encoding), strict=True):
        value = F.replace(value, F.lit(stand_in), delimiter)
    return value


def hl7_field(fields: Column, field: int, component: int | None = None, subcomponent: int | None = None,
              repetition: int | None = None, encoding: Column | str = DEFAULT_ENCODING,
              field_separator: Column | str = "|", decode: bool = True, decoded: Column | None = None) -> Column:
    """The value at SEG-field[repetition].component.subcomponent (1-based, HL7 numbering) of a ``fields`` array
    from :func:`explode_segments`; null when absent or empty. With a component and no repetition, the first
    repetition is used. Escape sequences are decoded unless ``decode=False``; pass the ``decoded`` column of
    :func:`explode_segments` to read from the fields decoded there (a far smaller expression). Pass
    ``encoding=F.col("encoding_characters"), field_separator=F.col("field_separator")`` for messages that
    declare non-standard delimiters."""
    comp, rep, sub = _enc(encoding, 1), _enc(encoding, 2), _enc(encoding, 4)

    def at(array: Column) -> Column:
        value = F.get(array, field)
        if repetition is not None or component is not None:
            value = F.split_part(value, rep, F.lit(repetition or 1))
        if component is not None:
            value = F.split_part(value, comp, F.lit(component))
        if subcomponent is not None:
            value = F.split_part(value, sub, F.lit(subcomponent))
        return F.nullif(value, F.lit(""))

    value = at(fields)
    if not decode:
        return value
    if field in (1, 2):  # MSH-1 and MSH-2 are the delimiters themselves: never decoded
        return let(value, lambda v: F.when(F.get(fields, 0) == "MSH", v).otherwise(
            unescape(v, field_separator, encoding)))
    if decoded is not None:  # the escaped delimiters are restored only after the split
        return F.when(value.isNotNull(), _restore_delimiters(at(decoded), field_separator, encoding))
    return unescape(value, field_separator, encoding)
