"""Shared pieces of the Silver transforms: source dedup, time parsing, HL7 segment context, reference resolution,
lineage, contract shape.

Everything here is a pure ``DataFrame -> DataFrame`` (or Column) function; reading and writing live in
``silver.job``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from lakehouse.catalog import conform
from lakehouse.hl7v2 import explode_segments, facility_zone, hl7_field, hl7_time
from silver.deid import EngineKey, pseudonym
from silver.schemas import columns, ddl
from silver.views import load_view, run_view

FHIR, HL7V2, DICOM = "fhir", "hl7v2", "dicom"


@dataclass(frozen=True)
class Deid:
    """What the de-identifying transforms need: where the engine reads the pseudonym key, and the de-identification
    profile (``expert_determination``: dates shifted per patient; ``safe_harbor``: dates reduced to the year)."""

    key: EngineKey
    deid_profile: Literal["expert_determination", "safe_harbor"] = "expert_determination"
    max_shift_days: int = 365
    # HL7 v2 timestamps without an offset are the facility's local time in this IANA zone, or in the zone of the
    # sending facility (MSH-4, upper-cased) listed here
    facility_timezone: str = "UTC"
    facility_timezones: tuple[tuple[str, str], ...] = ()
    # clinical document text: "deidentified" (scrubbed) or "exclude" (NULL)
    documents_text: Literal["deidentified", "exclude"] = "deidentified"

    @property
    def shifts_dates(self) -> bool:
        """Dates keep their day (shifted per patient): Expert Determination. Safe Harbor keeps the year only."""
        return self.deid_profile == "expert_determination"


def first_per_partition(df: DataFrame, window: WindowSpec) -> DataFrame:
    """The first row of each partition of ``window`` in its order (order it fully: ties pick any row)."""
    return df.withColumn("_rank", F.row_number().over(window)).filter("_rank = 1").drop("_rank")


# -- FHIR -------------------------------------------------------------------------------------------------------
def latest_fhir(resources: DataFrame) -> DataFrame:
    """One row per (resource_type, resource_id) of ``bronze.fhir_resources``: the newest ``meta.lastUpdated`` wins
    (Bronze keeps the history). The one rule for "the latest version" (Silver and ``lakehouse view run``).

    Ties and resources without lastUpdated fall back to the latest ingestion, then the content hash (deterministic);
    resources without an id are left out.
    """
    updated = F.coalesce(F.col("last_updated").cast("timestamp"), F.lit("0001-01-01").cast("timestamp"))
    w = Window.partitionBy("resource_type", "resource_id").orderBy(
        updated.desc(), F.col("ingested_at").desc(), F.col("content_hash").desc())
    return first_per_partition(resources.filter(F.col("resource_id").isNotNull()), w)


def flatten(resources: DataFrame, view: str) -> DataFrame:
    """Run one of the project's ViewDefinitions, carrying the Bronze lineage columns.

    Rows are narrowed to the view's resource type by the Bronze ``resource_type`` column first, so the engine
    parses only the JSON the view can match.
    """
    definition = load_view(view)
    if "resource_type" in resources.columns:
        resources = resources.filter(F.col("resource_type") == definition["resource"])
    return run_view(resources.sparkSession, definition, resources, keep=["content_hash", "source_file"])


# FHIR date/dateTime/instant: a four-digit year (0001-9999), optionally month, day and time with offset
FHIR_DATE_TIME = (r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
                  r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$")


def fhir_timestamp(col: Column | str) -> Column:
    """FHIR date/dateTime/instant text (partial dates allowed, offsets honoured) -> UTC timestamp; NULL if invalid.

    Text that is not FHIR date syntax (``12345``, a year of five digits) is NULL rather than a date the engine
    cannot hold as a timestamp.
    """
    c = F.col(col) if isinstance(col, str) else col
    text = F.trim(c.cast("string"))
    return F.when(text.rlike(FHIR_DATE_TIME), F.try_to_timestamp(text))


def invalid_values(**sent_but_untyped: Column) -> Column:
    """``invalid``: the FHIR element names whose value was sent but cannot be typed (the job quarantines the row).

    ``invalid_values(birthDate=<raw is not null and typed is null>, ...)``; an empty array when all are fine.
    """
    flags = [F.when(bad, F.lit(name)) for name, bad in sent_but_untyped.items()]
    return F.array_compact(F.array(*flags)).alias("invalid")


def fhir_date(col: Column | str) -> Column:
    """FHIR date text (YYYY, YYYY-MM or YYYY-MM-DD) -> DATE (partial dates at the first day)."""
    return F.to_date(fhir_timestamp(F.substring(F.trim((F.col(col) if isinstance(col, str) else col)
                                                        .cast("string")), 1, 10)))


# -- HL7 v2 -----------------------------------------------------------------------------------------------------
def latest_messages(messages: DataFrame) -> DataFrame:
    """One row per message, with ``message_key``: the message's identity across the feed.

    A message is identified by its sender (MSH-3 application, MSH-4 facility), its control id (MSH-10), its type
    (MSH-9) and its body (every segment after MSH): a resend after a lost ACK repeats all of them and counts once,
    the latest sent one winning. Senders that reuse control ids (counter resets, test systems, samples) for different
    messages keep each message, since their bodies differ; keys of Silver rows derive from ``message_key``.
    """
    body = F.sha2(F.regexp_replace(F.col("raw"), r"^[^\r\n]*", ""), 256)
    key = F.concat_ws("|", *[F.coalesce(c, F.lit("")) for c in (
        "sending_application", "sending_facility", "message_control_id", "message_type", "trigger_event")],
        F.substring(body, 1, 32))
    w = Window.partitionBy("message_key").orderBy(
        F.col("message_ts").desc_nulls_last(), F.col("ingested_at").desc(), F.col("content_hash").desc())
    return first_per_partition(messages.withColumn("message_key", key), w)


def segments(messages: DataFrame, deid: Deid | None = None) -> DataFrame:
    """Parsed segments of each message with the message header columns used downstream, and ``facility_zone``: the
    IANA zone of the message's times sent without an offset (:func:`local_time`)."""
    zone = F.lit("UTC") if deid is None else facility_zone(
        F.col("sending_facility"), F.substring("encoding_characters", 1, 1), deid.facility_timezone,
        dict(deid.facility_timezones))
    header = messages.select("content_hash", "message_key", "message_type", "trigger_event", "message_ts",
                             "source_file", "ingested_at", zone.alias("facility_zone"))
    return explode_segments(messages).join(header, "content_hash")


def field(n: int, component: int | None = None, repetition: int | None = None,
          subcomponent: int | None = None, decode: bool = True) -> Column:
    """SEG-n[.component] of the ``fields`` column, with the message's own delimiters.

    ``decode=False`` for identifiers, codes and timestamps (no escape sequences expected). Decoded values are read
    from the segments' ``decoded`` column (:func:`lakehouse.hl7v2.explode_segments`), decoded once per field.
    """
    return hl7_field(F.col("fields"), n, component, subcomponent, repetition,
                     encoding=F.col("encoding_characters"), field_separator=F.col("field_separator"), decode=decode,
                     decoded=F.col("decoded"))


def local_time(value: Column) -> Column:
    """An HL7 DTM of a segment row (:func:`segment_fields`) -> UTC: without an offset it is local time in the zone of
    the message's sending facility (``facility_zone``)."""
    return hl7_time(value, F.col("facility_zone"))


def segment_fields(segs: DataFrame, segment_id: str, cols: dict[str, Column]) -> DataFrame:
    """Rows of one segment type with the message columns and ``cols`` (raw field values) as plain columns."""
    base = ("content_hash", "message_key", "message_control_id", "segment_index", "message_type", "trigger_event",
            "message_ts", "source_file", "facility_zone")
    return segs.filter(F.col("segment_id") == segment_id).select(*base, *[c.alias(n) for n, c in cols.items()])


def cx_typed(n: int, type_code: str, max_repetitions: int = 6) -> Column:
    """ID (CX.1) of the first repetition of field n whose identifier type (CX.5) is ``type_code``."""
    picks = [F.when(F.upper(field(n, 5, r, decode=False)) == type_code, field(n, 1, r, decode=False))
             for r in range(1, max_repetitions + 1)]
    return F.coalesce(*picks)


def with_segment_context(segs: DataFrame, parent: str, alias: str) -> DataFrame:
    """Add ``<alias>_index``: the segment index of the closest preceding ``parent`` segment in the same message."""
    w = Window.partitionBy("content_hash").orderBy("segment_index").rowsBetween(Window.unboundedPreceding, 0)
    parent_index = F.when(F.col("segment_id") == parent, F.col("segment_index"))
    return segs.withColumn(f"{alias}_index", F.max(parent_index).over(w))


# -- references -------------------------------------------------------------------------------------------------
def resolve_references(rows: DataFrame, patients: DataFrame | None = None, encounters: DataFrame | None = None,
                       practitioners: DataFrame | None = None) -> DataFrame:
    """Add ``patient_key``, ``encounter_key``, ``practitioner_key`` for the ``<kind>_ref`` columns of a view.

    Each index is ``(fhir_id, <kind>_key)`` (``fhir_patient_index``, ...): ``Patient/<id>`` -> patient_key. A
    reference to a resource that is not in Bronze gets a NULL key (left join; see :func:`patient_key_or_ref`).
    """
    for kind, index in (("patient", patients), ("encounter", encounters), ("practitioner", practitioners)):
        if index is not None:
            rows = rows.join(index.select(F.col("fhir_id").alias(f"{kind}_ref"), f"{kind}_key"), f"{kind}_ref",
                             "left")
    return rows


def patient_key_or_ref(deid: Deid) -> Column:
    """``patient_key`` after :func:`resolve_references`: the resolved key, else the pseudonym of the reference."""
    return F.coalesce("patient_key", pseudonym(F.col("patient_ref"), deid.key, "patient")).alias("patient_key")


def with_index_key(rows: DataFrame, index: DataFrame) -> DataFrame:
    """Rows of an indexed resource type (Patient, Encounter, Practitioner) with the columns of its index
    (its ``<kind>_key``): the index's ``fhir_id`` is the resource ``id``."""
    return rows.join(index.withColumnRenamed("fhir_id", "id"), "id")


# -- lineage and contract ---------------------------------------------------------------------------------------
def source_lineage(source: str) -> list[Column]:
    """Lineage of a source row before harmonization: its ``source`` and the Bronze ``content_hash``."""
    return [F.lit(source).alias("source"), F.col("content_hash")]


def record_lineage(source: str) -> list[Column]:
    """Lineage of a Silver row made from one Bronze record: ``sources = [source]``, ``bronze_hashes = [hash]``."""
    return [F.array(F.lit(source)).alias("sources"), F.array("content_hash").alias("bronze_hashes")]


def collect_lineage() -> list[Column]:
    """Aggregates: ``sources`` and ``bronze_hashes`` of a group of source rows (:func:`source_lineage`)."""
    return [F.collect_set("source").alias("sources"), F.collect_set("content_hash").alias("bronze_hashes")]


def merge_lineage(sources: str = "sources", bronze_hashes: str = "bronze_hashes") -> list[Column]:
    """Aggregates: all ``sources`` and ``bronze_hashes`` of a group of rows merged into one (named as given)."""
    return [F.flatten(F.collect_list("sources")).alias(sources),
            F.flatten(F.collect_list("bronze_hashes")).alias(bronze_hashes)]


def to_contract(df: DataFrame, table: str, run_id: str, now: Column | None = None,
                extra: Sequence[str] = ()) -> DataFrame:
    """Select the contract columns of ``silver.<table>`` in order and type; lineage run columns are set here.

    ``sources`` and ``bronze_hashes`` must already be there (made sorted and distinct here, so re-runs compare
    equal); ``extra`` columns are carried after the contract columns.
    """
    out = df.withColumn("silver_run_id", F.lit(run_id)) \
            .withColumn("silver_updated_at", now if now is not None else F.current_timestamp()) \
            .withColumn("sources", F.array_sort(F.array_distinct(F.col("sources")))) \
            .withColumn("bronze_hashes", F.array_sort(F.array_distinct(F.col("bronze_hashes"))))
    missing = [c for c in columns(table) if c not in out.columns]
    if missing:
        raise ValueError(f"silver.{table}: transform does not produce {missing}")
    return conform(out, ddl(table), extra)


def union_all(frames: Sequence[DataFrame]) -> DataFrame:
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f, allowMissingColumns=True)
    return out


def latest_value(value: Column | str, at: Column | str, tiebreak: Column | str = "content_hash") -> Column:
    """Aggregate: the non-null value with the latest ``at`` (missing times count as oldest; ties: ``tiebreak``)."""
    v = F.col(value) if isinstance(value, str) else value
    t = F.col(at) if isinstance(at, str) else at
    b = F.col(tiebreak) if isinstance(tiebreak, str) else tiebreak
    oldest = F.lit("0001-01-01 00:00:00").cast("timestamp")
    ordered = F.struct(F.coalesce(t.cast("timestamp"), oldest).alias("t"), F.coalesce(b.cast("string"), F.lit(""))
                       .alias("b"), v.alias("v"))
    return F.max(F.when(v.isNotNull(), ordered))["v"]
