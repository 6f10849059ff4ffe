"""silver.observation: FHIR Observation (and its components) and HL7 ORU OBX in one table, harmonized.

Codes are mapped to LOINC (``map_lab_codes``), values converted to the canonical UCUM unit of the LOINC code
(``normalize_units``, reference ranges too) and flagged against their range (``flag_abnormal``). Text results
(FHIR valueString, HL7 TX/ST/FT OBX-5) and the NTE comments that follow an OBX are scrubbed of PHI.

Harmonization: a FHIR row and an HL7 row of the same patient_key and LOINC code (after mapping; SI/conventional
variants of one analyte share a code, see ``PREFERRED_LOINC``) with the same canonical value (within
``TOLERANCE``) are one result when they belong to the same order (an HL7 placer or filler number, OBR-2/3 else
ORC-2/3, equal to an identifier of the FHIR Observation, of a DiagnosticReport listing it as a result, or of a
ServiceRequest either is basedOn), or, failing that, when their effective times are at most
``TIME_TOLERANCE_SECONDS`` apart. The merged row is the FHIR key, both sources, both Bronze hashes, and the value
of the source that was reported in the canonical unit (no rounding from a conversion), else the FHIR one. Order
numbers are compared as keyed pseudonyms (namespace ``order``) and never written to Silver.

HL7 results (OBX of ORU and OUL messages, v2.3-2.8), by OBX-2 value type:
- NM: ``value`` (first repetition); a comparator sent in the number (``<5``) goes to ``value_comparator``.
- SN (comparator^num1^separator^num2): ``<^5`` -> value 5, comparator ``<``; ``^10^+`` -> value 10, comparator
  ``>=``; a range ``^1^-^5`` -> ``value_low``/``value_high`` (no single value) and text ``1-5``; a ratio or
  fraction ``^1^:^128`` -> text ``1:128`` (no single value).
- ST, TX, FT and types not listed here: scrubbed ``value_text``, repetitions one per line.
- CE, CWE, CNE: ``value_code``, ``value_code_system`` and ``value_display`` (first repetition).
- DT, TS, DTM: ``value_time`` (shifted by the date policy like every date); never copied as text.
- ED, RP: a marker only; embedded data and pointers (URLs can carry identifiers) are never loaded.
- PN, XPN, AD, XAD, TN, XTN, CX, XCN (a person's name, address, phone, identifier): a marker only.
OBX-11 becomes a FHIR ObservationStatus (``HL7_STATUS``; without OBX-11, the OBR-25 result status of its order,
``ORDER_RESULT_STATUS``; an order cancelled in OBR-25 cancels its results), OBX-8 flags are kept comma-separated in
``interpretation``, OBX-7 in ``ref_text`` with its numeric bounds in ``ref_low``/``ref_high``, OBX-23 (else
OBX-15) in ``performing_organization`` (an organization's name, not PHI), the specimen type (SPM-4, else the
OBR-15 of v2.3-2.4) in ``specimen_type``/``specimen_display``. ``value_low``/``value_high`` stay in
``unit_original``.

Result status (HL7): the preliminary, final, corrected, cancelled, ... versions of one result are one row holding
the latest version (its status, value, flags: a cancelled or deleted result keeps its row with status
``cancelled`` / ``entered-in-error`` and what that message sent, never the earlier value). "One result" is
:func:`result_identity`: the sender (MSH-3, MSH-4), the order number (placer OBR-2/ORC-2 with its namespace, else
filler OBR-3/ORC-3), OBX-3 code, OBX-4 sub-id and, for OBX repeating that triple in one message (a text report
sent line by line), its occurrence in the message; without an order number, the message and OBX position. The
latest version: latest message time (MSH-7), then observation time, then arrival (Bronze ``ingested_at``), then
the more definitive status (``STATUS_PRECEDENCE``). The row's ``bronze_hashes`` hold every version's message.
FHIR Observations are versioned by resource id already (the latest version is read, see
``silver.common.latest_fhir``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.hl7v2 import hl7_timestamp, unescape
from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    fhir_timestamp,
    field,
    first_per_partition,
    flatten,
    invalid_values,
    local_time,
    merge_lineage,
    patient_key_or_ref,
    resolve_references,
    segment_fields,
    source_lineage,
)
from silver.deid import pseudonym, scrub_text
from silver.deid.pseudonym import pseudonym_array
from silver.encounter import hl7_visit_number
from silver.patient import hl7_patient_identity
from silver.service_request import order_identity
from silver.terminology import map_lab_codes
from silver.terminology.seeds import LOINC
from silver.units import normalize_units

# SI-unit LOINC variant -> the conventional code of the same analyte, so that one analyte has one canonical unit
# (glucose mmol/L 15074-8 -> mg/dL 2345-7; creatinine umol/L 14682-9 -> mg/dL 2160-0); the original code is kept
# in code_original. TODO(terminology): move to a seed of silver/terminology.
PREFERRED_LOINC = {"15074-8": "2345-7", "14682-9": "2160-0"}
TOLERANCE = 0.02  # relative difference of canonical values still taken as the same result
# the same result without a shared order number: effective times this close (one feed sends minutes, the other
# seconds); not wider, or two readings of a monitor minutes apart with close values would merge
TIME_TOLERANCE_SECONDS = 120
VITAL_LOINC = ("8867-4", "9279-1", "8480-6", "8462-4", "8310-5", "59408-5", "2708-6", "29463-7", "8302-2",
               "39156-5", "85354-9")
LAB_MESSAGES = ("ORU", "OUL")
TEXT_TYPES = ("TX", "ST", "FT")
CODED_TYPES = ("CE", "CWE", "CNE")
# OBX-5 types that name, locate, reach or number a person: never copied, not even scrubbed
IDENTIFYING_TYPES = ("PN", "XPN", "AD", "XAD", "TN", "XTN", "CX", "XCN")
EMBEDDED_MARKER = "[embedded data not loaded]"
REFERENCE_MARKER = "[external reference not loaded]"
IDENTIFYING_MARKER = "[identifying value not loaded]"
# segments that may stand between an OBX and its NTE comments (participation, timing/calibration, substance)
OBX_TRAILERS = ("NTE", "PRT", "TCD", "SID")
OBSERVATION_STATUSES = ("registered", "preliminary", "final", "amended", "corrected", "cancelled",
                        "entered-in-error", "unknown")
# HL7 table 0085 (OBX-11) -> FHIR ObservationStatus. N (not asked) and X (cannot be obtained): no result will come,
# cancelled; I, R (no verified result yet) and O (order detail only): registered; S (partial): preliminary;
# U (made final without retransmitting): final; D (delete) and W (posted to the wrong patient): entered-in-error.
HL7_STATUS = {"F": "final", "P": "preliminary", "C": "corrected", "A": "amended", "X": "cancelled",
              "N": "cancelled", "R": "registered", "I": "registered", "O": "registered", "S": "preliminary",
              "U": "final", "D": "entered-in-error", "W": "entered-in-error"}
# HL7 table 0123 (OBR-25 result status of the order) -> the ObservationStatus of its results when OBX-11 is empty:
# O (order received), I (no result yet), S (scheduled) registered; A (some results), R (stored, not verified)
# and P preliminary; Y (no order on record) and Z (no patient on record) are unknown
ORDER_RESULT_STATUS = {"O": "registered", "I": "registered", "S": "registered", "A": "preliminary",
                       "R": "preliminary", "P": "preliminary", "F": "final", "C": "corrected", "X": "cancelled"}
# among versions of one result sent at the same time: the more definitive status wins
STATUS_PRECEDENCE = ("unknown", "registered", "preliminary", "final", "amended", "corrected", "cancelled",
                     "entered-in-error")
NUMBER = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
NUMERIC = rf"^\s*(<=|>=|<>|<|>|=)?\s*({NUMBER})\s*$"  # an NM value, optionally with a comparator
# reference ranges: a number may be followed by a unit or words, not by a ratio (a titer '<1:16' has no bound)
_TAIL = r"\s*(?:[^0-9.:/\s].*)?$"
RANGE_BOTH = rf"^\s*\(?\s*({NUMBER})\s*(?:-|to|TO|\.\.)\s*({NUMBER})\s*\)?{_TAIL}"
RANGE_LOW = rf"^\s*(?:>=|=>|>)\s*({NUMBER}){_TAIL}"
RANGE_HIGH = rf"^\s*(?:<=|=<|<)\s*({NUMBER}){_TAIL}"

# columns of a source row before conversion
ROW = ("observation_key", "patient_key", "encounter_key", "category", "code", "code_system", "alt_code",
       "alt_system", "display", "value", "unit_in", "value_text", "value_code", "effective_at", "status",
       "interpretation", "ref_low", "ref_high", "source", "content_hash", "value_comparator", "value_low",
       "value_high", "value_code_system", "value_display", "value_time", "ref_text", "performing_organization",
       "specimen_type", "specimen_display")



def flag_abnormal(df: DataFrame, value_col: str = "value_num", low_col: str = "ref_low", high_col: str = "ref_high",
                  flag_col: str = "abnormal_flag", comparator_col: str = "value_comparator") -> DataFrame:
    """``abnormal_flag``: H above ``ref_high``, L below ``ref_low``, N within; NULL without a value or any bound.

    Values and bounds must be in the same unit (convert the bounds with ``normalize_units(convert_also=...)``).
    A value with a comparator (``<5``) is flagged only when the flag is certain (``<5`` with low 5 is L, with only
    a high bound of 10 is N), else NULL.
    """
    value, low, high = F.col(value_col), F.col(low_col), F.col(high_col)
    flag = F.when(value.isNull() | (low.isNull() & high.isNull()), F.lit(None).cast("string")) \
            .when(high.isNotNull() & (value > high), F.lit("H")) \
            .when(low.isNotNull() & (value < low), F.lit("L")) \
            .otherwise(F.lit("N"))
    if comparator_col in df.columns:
        cmp = F.col(comparator_col)
        below, above = cmp.isin("<", "<="), cmp.isin(">", ">=")
        bounded = F.when(value.isNull() | (low.isNull() & high.isNull()), F.lit(None).cast("string")) \
                   .when(((cmp == "<") & (value <= low)) | ((cmp == "<=") & (value < low)), F.lit("L")) \
                   .when(((cmp == ">") & (value >= high)) | ((cmp == ">=") & (value > high)), F.lit("H")) \
                   .when(below & low.isNull() & (value <= high), F.lit("N")) \
                   .when(above & high.isNull() & (value >= low), F.lit("N"))
        flag = F.when(cmp.isNull(), flag).when(below | above, bounded)
    return df.withColumn(flag_col, flag)


def fhir_observations(resources: DataFrame, patients: DataFrame, encounters: DataFrame, known: DataFrame,
                      deid: Deid) -> DataFrame:
    """One row per FHIR Observation value: the resource (component_index 0) and each component (1..n)."""
    parents = flatten(resources, "observation").withColumn("component_index", F.lit(0))
    o = resolve_references(parents.unionByName(flatten(resources, "observation_component")), patients, encounters)
    # a panel whose values are all in components has no value of its own: its components are the rows
    has_value = F.col("value_quantity").isNotNull() | F.col("value_string").isNotNull() \
        | F.col("value_code").isNotNull()
    # a window, not a grouped self-join: Sail would flatten the JSON twice (no sub-plan reuse)
    o = o.withColumn("_components", F.max("component_index").over(Window.partitionBy("id"))) \
         .filter(has_value | (F.col("component_index") > 0) | (F.col("_components") == 0))
    key = F.when(F.col("component_index") > 0, F.concat_ws("#", "id", F.col("component_index").cast("string"))) \
           .otherwise(F.col("id"))
    o = fhir_order_ids(resources, o.join(known, "patient_key", "left"))
    # the LOINC coding when there is one, else the first coding with a code: each coding taken whole in the views
    loinc = F.col("loinc_code").isNotNull()
    code = F.when(loinc, F.col("loinc_code")).otherwise(F.col("code_code"))
    system = F.when(loinc, F.lit(LOINC)).otherwise(F.col("code_system"))
    display = F.when(loinc, F.col("loinc_display")).otherwise(F.col("code_display"))
    return o.select(
        pseudonym(key, deid.key, "observation").alias("observation_key"), patient_key_or_ref(deid),
        "encounter_key", "category", code.alias("code"), system.alias("code_system"),
        F.lit(None).cast("string").alias("alt_code"), F.lit(None).cast("string").alias("alt_system"),
        display.alias("display"), F.col("value_quantity").cast("double").alias("value"),
        F.coalesce("value_unit", "value_unit_text").alias("unit_in"),
        scrub_text(F.col("value_string"), F.col("known")).alias("value_text"), "value_code",
        fhir_timestamp(F.coalesce("effective", "effective_period_start", "issued")).alias("effective_at"),
        fhir_observation_status(F.col("status")).alias("status"), "interpretation",
        F.col("ref_low").cast("double").alias("ref_low"), F.col("ref_high").cast("double").alias("ref_high"),
        *source_lineage(FHIR), pseudonym_array(F.col("order_ids"), deid.key, "order").alias("_order_ids"),
        invalid_values(
            value=F.col("value_quantity_text").isNotNull() & F.col("value_quantity_text").try_cast("double").isNull(),
            effectiveDateTime=F.col("effective").isNotNull() & fhir_timestamp("effective").isNull(),
            issued=F.col("issued").isNotNull() & fhir_timestamp("issued").isNull()))


def fhir_order_ids(resources: DataFrame, observations: DataFrame) -> DataFrame:
    """``observations`` (flattened, with ``identifier_values`` and ``based_on_refs``) with ``order_ids``: the
    Observation's own identifiers, those of the DiagnosticReports that list it as a result and of the ServiceRequests
    those reports or the Observation (its first basedOn) are basedOn: the order numbers an HL7 OBR carries.

    Joined per row, never grouped over ``observations``: Sail would flatten the Observation JSON twice."""
    empty = F.array().cast("array<string>")
    requests = flatten(resources, "service_request").select(F.col("id").alias("_request"),
                                                            F.col("identifier_values").alias("_request_ids"))
    reports = flatten(resources, "diagnostic_report_result")
    via_report_requests = reports.select("result_ref", F.explode("based_on_refs").alias("_request")) \
        .join(requests, "_request").select("result_ref", F.col("_request_ids").alias("ids"))
    by_result = reports.select("result_ref", F.col("identifier_values").alias("ids")).unionByName(via_report_requests) \
        .select(F.col("result_ref").alias("id"), F.explode("ids").alias("order_id")) \
        .groupBy("id").agg(F.collect_set("order_id").alias("_report_ids"))
    out = observations.join(by_result, "id", "left") \
        .withColumn("_request", F.get(F.col("based_on_refs"), 0)).join(requests, "_request", "left")
    ids = F.array_distinct(F.filter(
        F.transform(F.concat(F.coalesce("identifier_values", empty), F.coalesce("_report_ids", empty),
                             F.coalesce("_request_ids", empty)), lambda x: F.trim(x)),
        lambda x: x.isNotNull() & (x != "")))
    return out.withColumn("order_ids", F.array_sort(ids)).drop("_report_ids", "_request", "_request_ids")


def hl7_observation_status(status: Column) -> Column:
    """HL7 OBX-11 (table 0085) -> FHIR ObservationStatus; an unknown code is ``unknown``, none is NULL."""
    code = F.upper(F.trim(status))
    out = F.when(code.isNull() | (code == ""), F.lit(None).cast("string"))
    for v2, fhir in HL7_STATUS.items():
        out = out.when(code == v2, F.lit(fhir))
    return out.otherwise(F.lit("unknown"))


def hl7_result_status(obx_status: Column, order_status: Column) -> Column:
    """The ObservationStatus of an OBX: OBX-11, else its order's OBR-25 (table 0123); an order cancelled in OBR-25
    (X) cancels every result of it."""
    order = F.upper(F.trim(order_status))
    mapped = F.when(order.isNull() | (order == ""), F.lit(None).cast("string"))
    for v2, fhir in ORDER_RESULT_STATUS.items():
        mapped = mapped.when(order == v2, F.lit(fhir))
    mapped = mapped.otherwise(F.lit("unknown"))
    return F.when(order == "X", F.lit("cancelled")).otherwise(F.coalesce(hl7_observation_status(obx_status), mapped))


def fhir_observation_status(status: Column) -> Column:
    """FHIR Observation.status, lower-cased; a code outside the ObservationStatus value set is ``unknown``."""
    code = F.lower(F.trim(status))
    return F.when(code.isNull() | (code == ""), F.lit(None).cast("string")) \
            .when(code.isin(*OBSERVATION_STATUSES), code).otherwise(F.lit("unknown"))


def _range_bound(text: Column, low: bool) -> Column:
    """HL7 OBX-7 reference range ('70-99', '70 - 99', '3.5-5.0 mmol/L', '<5', '>=60') -> low or high bound."""
    both = F.regexp_extract(text, RANGE_BOTH, 1 if low else 2)
    one = F.regexp_extract(text, RANGE_LOW if low else RANGE_HIGH, 1)
    return F.coalesce(F.nullif(both, F.lit("")), F.nullif(one, F.lit(""))).try_cast("double")


def _message_context(lab: DataFrame) -> DataFrame:
    """Segments of lab messages with the structure around each one: ``obr_index`` (closest preceding OBR),
    ``pid_index`` (closest preceding PID, else the message's first), ``spm_index`` (its specimen, see below) and
    ``anchor`` (index and id of the closest preceding segment that is not an OBX trailer: an NTE belongs to an OBX
    when its anchor is that OBX).

    Specimen: the closest preceding SPM of the same OBR group (observations of a specimen follow their SPM); else,
    in ORU^R01 (OBR, {OBX}, {SPM} per order) the group's first SPM, and in OUL (SPM, {OBX}, {OBR, {OBX}} per
    specimen) the closest preceding SPM of the message.
    """
    sid, idx = F.col("segment_id"), F.col("segment_index")
    upto = Window.partitionBy("content_hash").orderBy("segment_index").rowsBetween(Window.unboundedPreceding, 0)
    lab = lab.select(
        "*", F.max(F.when(sid == "OBR", idx)).over(upto).alias("obr_index"),
        F.coalesce(F.max(F.when(sid == "PID", idx)).over(upto),
                   F.min(F.when(sid == "PID", idx)).over(Window.partitionBy("content_hash"))).alias("pid_index"),
        F.max(F.when(sid == "SPM", idx)).over(upto).alias("spm_before"),
        F.max(F.when(~sid.isin(*OBX_TRAILERS), F.struct(idx.alias("i"), sid.alias("s")))).over(upto)
         .alias("anchor"))
    group_spm = F.min(F.when(sid == "SPM", idx)).over(Window.partitionBy("content_hash", "obr_index"))
    in_group = F.col("spm_before") > F.coalesce(F.col("obr_index"), F.lit(-1))
    return lab.withColumn("spm_index", F.when(in_group, F.col("spm_before"))
                          .when(F.col("message_type") == "ORU", group_spm).otherwise(F.col("spm_before")))


def _order_numbers(lab: DataFrame) -> DataFrame:
    """(content_hash, obr_index, order_number, order_result_status) per OBR: ``order_number`` is the placer number
    with its namespace (OBR-2, else ORC-2), else the filler number (OBR-3, else ORC-3), NULL when none is sent.
    The ORC of an OBR precedes it in ORU (``[ORC] OBR {OBX}``) and follows it in OUL (``OBR [ORC] {OBX}``)."""
    sid, idx = F.col("segment_id"), F.col("segment_index")
    by_message = Window.partitionBy("content_hash").orderBy("segment_index")
    ctx = lab.filter(sid.isin("ORC", "OBR")).select(
        "*", F.max(F.when(sid == "OBR", idx)).over(by_message.rowsBetween(Window.unboundedPreceding, -1))
        .alias("obr_before"),
        F.min(F.when(sid == "OBR", idx)).over(by_message.rowsBetween(1, Window.unboundedFollowing))
        .alias("obr_after"))

    def number(n: int, prefix: str) -> list[Column]:
        return [field(n, 1, decode=False).alias(f"{prefix}_n"),
                F.coalesce(field(n, 2, decode=False), field(n, 3, decode=False)).alias(f"{prefix}_ns")]

    orc = ctx.filter(sid == "ORC").select(
        "content_hash", F.when(F.col("message_type") == "OUL", F.col("obr_before")).otherwise(F.col("obr_after"))
        .alias("obr_index"), F.struct(idx.alias("i"), *number(2, "placer"), *number(3, "filler")).alias("orc")) \
        .groupBy("content_hash", "obr_index").agg(F.min("orc").alias("orc"))
    obr = ctx.filter(sid == "OBR").select("content_hash", idx.alias("obr_index"), *number(2, "placer"),
                                          *number(3, "filler"), field(25, decode=False).alias("order_result_status"))
    o = obr.join(orc, ["content_hash", "obr_index"], "left")
    placer_obr, filler_obr = F.col("placer_n").isNotNull(), F.col("filler_n").isNotNull()
    number_col = order_identity(
        F.when(placer_obr, F.col("placer_n")).otherwise(F.col("orc.placer_n")),
        F.when(placer_obr, F.col("placer_ns")).otherwise(F.col("orc.placer_ns")),
        F.when(filler_obr, F.col("filler_n")).otherwise(F.col("orc.filler_n")),
        F.when(filler_obr, F.col("filler_ns")).otherwise(F.col("orc.filler_ns")),
        F.lit(None).cast("string"))
    # the order numbers without their namespaces, compared with the identifiers of FHIR orders and reports
    order_ids = F.array_compact(F.array(
        F.nullif(F.trim(F.when(placer_obr, F.col("placer_n")).otherwise(F.col("orc.placer_n"))), F.lit("")),
        F.nullif(F.trim(F.when(filler_obr, F.col("filler_n")).otherwise(F.col("orc.filler_n"))), F.lit(""))))
    return o.select("content_hash", "obr_index", number_col.alias("order_number"), "order_result_status",
                    order_ids.alias("order_ids"))


def result_identity(sending_application: Column, sending_facility: Column, order_number: Column, code: Column,
                    sub_id: Column, occurrence: Column, message: Column, segment_index: Column) -> Column:
    """What makes two OBX the same result (versions of it): sender, order number, OBX-3 code, OBX-4 sub-id and
    the occurrence of that triple in its message; without an order number, the message and the OBX position."""
    def text(c: Column) -> Column:
        return F.coalesce(F.upper(F.trim(c)), F.lit(""))

    return F.when(order_number.isNotNull(), F.concat_ws(
        "|", F.lit("result"), text(sending_application), text(sending_facility), order_number, text(code),
        text(sub_id), occurrence.cast("string"))) \
        .otherwise(F.concat_ws("|", message, segment_index.cast("string")))


def _result_identities(lab: DataFrame) -> DataFrame:
    """(content_hash, segment_index, result_identity, order_result_status) of every OBX of ``lab`` (segments
    with :func:`_message_context`)."""
    msh = segment_fields(lab, "MSH", {"sending_application": field(3, decode=False),
                                      "sending_facility": field(4, decode=False)}) \
        .select("content_hash", "sending_application", "sending_facility")
    obx = lab.filter(F.col("segment_id") == "OBX").select(
        "content_hash", "message_control_id", *[c for c in ("message_key",) if c in lab.columns], "segment_index",
        "obr_index", F.coalesce(field(3, 1, decode=False), field(3, 4, decode=False)).alias("_code"),
        field(4, decode=False).alias("_sub_id"))
    obx = obx.join(msh, "content_hash", "left").join(_order_numbers(lab), ["content_hash", "obr_index"], "left")
    same = Window.partitionBy("content_hash", "order_number", F.upper(F.trim("_code")), F.trim("_sub_id")) \
                 .orderBy("segment_index")
    identity = result_identity(F.col("sending_application"), F.col("sending_facility"), F.col("order_number"),
                               F.col("_code"), F.col("_sub_id"), F.row_number().over(same), _message_identity(obx),
                               F.col("segment_index"))
    return obx.select("content_hash", "segment_index", identity.alias("result_identity"), "order_result_status",
                      "order_ids")


def hl7_result_identities(segs: DataFrame) -> DataFrame:
    """``result_identity`` of every OBX of the ORU/OUL messages, one row per OBX (the reconciliation counts the
    distinct ones: versions of a result are one Silver row)."""
    lab = _message_context(segs.filter(F.col("message_type").isin(*LAB_MESSAGES)))
    return _result_identities(lab).select("result_identity")


def latest_versions(rows: DataFrame) -> DataFrame:
    """One row per ``observation_key`` of HL7 result rows: the latest version (see the module docstring), with
    ``bronze_hashes`` of every version. ``_message_ts``, ``_arrived`` and ``content_hash`` order the versions."""
    precedence = F.array_position(F.array(*[F.lit(s) for s in STATUS_PRECEDENCE]), F.col("status"))
    latest = Window.partitionBy("observation_key").orderBy(
        F.col("_message_ts").desc_nulls_last(), F.col("effective_at").desc_nulls_last(),
        F.col("_arrived").desc_nulls_last(), precedence.desc(), F.col("content_hash").desc())
    versions = rows.groupBy("observation_key").agg(F.collect_set("content_hash").alias("bronze_hashes"))
    return first_per_partition(rows, latest).join(versions, "observation_key").drop("_message_ts", "_arrived")


def hl7_observations(segs: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    """One row per result of the ORU/OUL messages (any number of patient, order, specimen and result groups): the
    latest version of each :func:`result_identity` (:func:`latest_versions`).

    Without an order number, the key is the message (MSH-3 sending application, MSH-4 sending facility, MSH-10
    and, when the message dedup provides it, the message body: see :func:`_message_identity`) and the OBX's
    segment index: OBX-1 set ids restart per OBR group or are missing, so they cannot key a result. NTE comments
    after an OBX are appended to its (scrubbed) text. See the module docstring for the value types.
    """
    lab = _message_context(segs.filter(F.col("message_type").isin(*LAB_MESSAGES)))
    msh = segment_fields(lab, "MSH", {"sending_application": field(3, decode=False),
                                      "sending_facility": field(4, decode=False)}) \
        .select("content_hash", "sending_application", "sending_facility")
    identities = _result_identities(lab)
    pid = segment_fields(lab, "PID", {"mrn": hl7_patient_identity()}).select("content_hash",
                                                                 F.col("segment_index").alias("pid_index"), "mrn")
    # the visit of a patient group: its first PV1 with a visit number
    pv1 = segment_fields(lab, "PV1", {"visit_number": hl7_visit_number(), "pid_index": F.col("pid_index")}) \
        .groupBy("content_hash", "pid_index") \
        .agg(F.min(F.when(F.col("visit_number").isNotNull(), F.struct("segment_index", "visit_number")))
             ["visit_number"].alias("visit_number"))
    obr = segment_fields(lab, "OBR", {
        "obr_time_raw": field(7, 1, decode=False),
        # OBR-15 specimen source (v2.3-2.4; SPM from v2.5): its first component is a CE in subcomponents
        "obr_specimen_type": field(15, 1, subcomponent=1, decode=False),
        "obr_specimen_display": field(15, 1, subcomponent=2)}) \
        .select("content_hash", F.col("segment_index").alias("obr_index"), "obr_time_raw", "obr_specimen_type",
                "obr_specimen_display")
    spm = segment_fields(lab, "SPM", {"spm_type": field(4, 1, decode=False),
                                      "spm_display": F.coalesce(field(4, 2), field(4, 9)),
                                      "spm_time_raw": field(17, 1, decode=False)}) \
        .select("content_hash", F.col("segment_index").alias("spm_index"), "spm_type", "spm_display", "spm_time_raw")
    nte = lab.filter((F.col("segment_id") == "NTE") & (F.col("anchor")["s"] == "OBX")) \
             .select("content_hash", F.col("anchor")["i"].alias("obx_index"),
                     F.struct(F.col("segment_index").alias("i"), field(3).alias("t")).alias("n")) \
             .groupBy("content_hash", F.col("obx_index").alias("segment_index")) \
             .agg(F.concat_ws("\n", F.transform(F.array_sort(F.collect_list("n")), lambda x: x["t"])).alias("nte"))
    # step one: raw fields as columns (decoding only the text ones)
    obx = lab.filter(F.col("segment_id") == "OBX").select(
        "content_hash", "message_control_id", *[c for c in ("message_key",) if c in lab.columns], "message_type",
        F.col("message_ts").alias("_message_ts"), "facility_zone",
        (F.col("ingested_at") if "ingested_at" in lab.columns else F.lit(None).cast("timestamp")).alias("_arrived"),
        "segment_index", "obr_index", "pid_index",
        "spm_index", "field_separator", "encoding_characters",
        F.upper(F.trim(field(2, decode=False))).alias("vtype"),
        field(3, 1, decode=False).alias("code"), field(3, 2).alias("display"),
        field(3, 3, decode=False).alias("code_system"), field(3, 4, decode=False).alias("alt_code"),
        field(3, 6, decode=False).alias("alt_system"), field(5, decode=False).alias("raw_value"),
        field(5, 1, 1, decode=False).alias("v1"), field(5, 2, 1, decode=False).alias("v2"),
        field(5, 3, 1, decode=False).alias("v3"), field(5, 4, 1, decode=False).alias("v4"),
        F.coalesce(field(5, 2, 1), field(5, 9, 1)).alias("coded_display"),
        F.coalesce(field(6, 1), field(6, 2)).alias("unit_in"), field(7).alias("ref_text"),
        field(8, decode=False).alias("flags_raw"), field(11, decode=False).alias("result_status"),
        field(14, 1, decode=False).alias("obs_time_raw"),
        # OBX-23 performing organization (v2.5+), else OBX-15 producer's ID (v2.3-2.4)
        F.coalesce(field(23, 1), field(15, 2), field(15, 1)).alias("performing_organization"))
    obx = obx.join(msh, "content_hash", "left").join(pid, ["content_hash", "pid_index"], "left") \
             .join(pv1, ["content_hash", "pid_index"], "left").join(obr, ["content_hash", "obr_index"], "left") \
             .join(spm, ["content_hash", "spm_index"], "left").join(nte, ["content_hash", "segment_index"], "left") \
             .join(identities, ["content_hash", "segment_index"], "left")
    obx = obx.withColumn("patient_key", pseudonym(F.col("mrn"), deid.key, "patient")).join(known, "patient_key",
                                                                                              "left")
    return latest_versions(_hl7_values(obx, deid))


def _message_identity(obx: DataFrame) -> Column:
    """The message an OBX is in: ``message_key`` of :func:`silver.common.latest_messages` when it has one (sender,
    control id and body), else MSH-3, MSH-4 and MSH-10."""
    if "message_key" in obx.columns:
        return F.col("message_key")
    return F.concat_ws("|", F.coalesce("sending_application", F.lit("")), F.coalesce("sending_facility", F.lit("")),
                       F.coalesce("message_control_id", F.lit("")))


def _hl7_values(obx: DataFrame, deid: Deid) -> DataFrame:
    """Steps two to four: typed values from the raw OBX columns of :func:`hl7_observations`.

    Each step refers to the columns of the one before: nested expressions this large exceed the depth a Spark
    Connect plan may have.
    """
    vtype, v1, v2, v3, v4 = (F.col(c) for c in ("vtype", "v1", "v2", "v3", "v4"))
    enc, rep, comp = F.col("encoding_characters"), F.substring("encoding_characters", 2, 1), \
        F.substring("encoding_characters", 1, 1)
    numeric_type = vtype.isNull() | (vtype == "NM")
    # SN: comparator ^ num1 ^ separator/suffix ^ num2
    sn_sep = F.coalesce(F.trim(v3), F.lit(""))
    n1, n2 = v2.try_cast("double"), v4.try_cast("double")
    is_sn = vtype == "SN"
    has_value = F.col("raw_value").isNotNull()
    flags = F.array_compact(F.transform(F.split(F.replace(F.col("flags_raw"), rep, F.lit("\u0001")), "\u0001"),
                                        lambda x: F.nullif(F.split_part(x, comp, F.lit(1)), F.lit(""))))
    step = obx.withColumns({
        # OBX-5 as text: repetitions one per line, escapes decoded
        "_text": unescape(F.replace(F.col("raw_value"), rep, F.lit("\n")), F.col("field_separator"), enc),
        "_nm_cmp": F.when(numeric_type, F.nullif(F.regexp_extract(v1, NUMERIC, 1), F.lit(""))),
        "_nm_value": F.when(numeric_type, F.nullif(F.regexp_extract(v1, NUMERIC, 2), F.lit("")).try_cast("double")),
        "_sn_cmp": F.when(is_sn, F.nullif(F.trim(v1), F.lit(""))), "_sn_sep": F.when(is_sn, sn_sep),
        "_n1": F.when(is_sn, n1), "_n2": F.when(is_sn, n2),
        "_coded": vtype.isin(*CODED_TYPES),
        "value_time": F.when(vtype.isin("TS", "DTM"), local_time(v1))
                       .when(vtype == "DT", hl7_timestamp(v1)),
        "_marker": F.when(has_value & (vtype == "ED"), F.lit(EMBEDDED_MARKER))
                    .when(has_value & (vtype == "RP"), F.lit(REFERENCE_MARKER))
                    .when(has_value & vtype.isin(*IDENTIFYING_TYPES), F.lit(IDENTIFYING_MARKER)),
        "interpretation": F.nullif(F.array_join(flags, ","), F.lit("")),
        "effective_at": F.coalesce(local_time(F.col("obs_time_raw")),
                                   local_time(F.col("obr_time_raw")),
                                   local_time(F.col("spm_time_raw"))),
        "status": hl7_result_status(F.col("result_status"), F.col("order_result_status")),
        "ref_low": _range_bound(F.col("ref_text"), True), "ref_high": _range_bound(F.col("ref_text"), False),
        "_key": F.col("result_identity"),
    })
    sep, n1, n2, sn_cmp = F.col("_sn_sep"), F.col("_n1"), F.col("_n2"), F.col("_sn_cmp")
    sn_range = (sep == "-") & n1.isNotNull() & n2.isNotNull()
    sn_ratio = sep.isin(":", "/") & n2.isNotNull()
    sn_plus = (sep == "+") & n1.isNotNull()
    sn_single = (sep == "") & v4.isNull() & n1.isNotNull()
    step = step.withColumns({
        "value": F.coalesce(F.col("_nm_value"), F.when(sn_single | sn_plus, n1)),
        "value_comparator": F.nullif(F.when(F.col("_nm_value").isNotNull(), F.col("_nm_cmp"))
                                      .when(sn_plus & sn_cmp.isNull(), F.lit(">="))
                                      .when(sn_single | sn_plus | sn_ratio, sn_cmp), F.lit("=")),
        "value_low": F.when(sn_range, n1), "value_high": F.when(sn_range, n2),
        "_sn_text": F.when(sn_range, F.concat(v2, F.lit("-"), v4))
                     .when(sn_ratio, F.concat(F.coalesce(v2, F.lit("1")), sep, v4)),
    })
    # free text: text types, and any value that none of the typed readings took (scrubbed like all free text)
    typed = F.coalesce(F.col("value").cast("string"), F.col("_sn_text"), F.col("value_time").cast("string"),
                       F.when(F.col("_coded"), F.coalesce(v1, F.col("coded_display"))))
    free = F.when(F.col("_marker").isNull() & (vtype.isin(*TEXT_TYPES) | typed.isNull()), F.col("_text"))
    step = step.withColumn("_free", F.nullif(F.concat_ws("\n", free, F.col("nte")), F.lit("")))
    coded = F.col("_coded")
    from_spm = F.col("spm_type").isNotNull() | F.col("spm_display").isNotNull()
    # OBR-15 codes are HL7 table 0070 mnemonics (BLD, SER, UR); senders that shift fields put a provider there
    obr_code = F.col("obr_specimen_type").rlike(r"^[A-Za-z][A-Za-z0-9_]{0,19}$")
    return step.select(
        pseudonym(F.col("_key"), deid.key, "observation").alias("observation_key"),
        "patient_key", pseudonym(F.col("visit_number"), deid.key, "encounter").alias("encounter_key"),
        F.lit("laboratory").alias("category"), "code", "code_system", "alt_code", "alt_system", "display",
        "value", "unit_in",
        F.nullif(F.concat_ws("\n", "_marker", "_sn_text", scrub_text(F.col("_free"), F.col("known"))), F.lit(""))
        .alias("value_text"), F.when(coded, v1).alias("value_code"), "effective_at", "status", "interpretation",
        "ref_low", "ref_high", *source_lineage(HL7V2), "_message_ts", "_arrived", "value_comparator", "value_low",
        "value_high",
        F.when(coded, v3).alias("value_code_system"),
        scrub_text(F.when(coded, F.col("coded_display")), F.col("known")).alias("value_display"),
        "value_time", "ref_text", "performing_organization",
        pseudonym_array(F.col("order_ids"), deid.key, "order").alias("_order_ids"),
        F.when(from_spm, F.col("spm_type")).when(obr_code, F.col("obr_specimen_type")).alias("specimen_type"),
        F.when(from_spm, F.col("spm_display")).when(obr_code, F.col("obr_specimen_display"))
        .alias("specimen_display"))


def standardize(rows: DataFrame) -> DataFrame:
    """Map codes to LOINC, one code per analyte, canonical units (reference range too), abnormal flag."""
    mapped = map_lab_codes(rows, "code", "code_system", "alt_code", "alt_system")
    preferred = F.col("loinc_code")
    for si, conventional in PREFERRED_LOINC.items():
        preferred = F.when(F.col("loinc_code") == si, F.lit(conventional)).otherwise(preferred)
    mapped = mapped.withColumn("loinc_code", preferred) \
                   .withColumn("display", F.coalesce("loinc_display", "display")).drop("loinc_display")
    converted = normalize_units(mapped, "loinc_code", "value", "unit_in", convert_also=("ref_low", "ref_high"))
    category = F.when(F.col("loinc_code").isin(*VITAL_LOINC), F.lit("vital-signs")).otherwise(F.col("category"))
    return flag_abnormal(converted.withColumn("category", category))


def harmonized_pairs(rows: DataFrame) -> DataFrame:
    """The FHIR/HL7 rows that are the same result: (fk, hk) observation keys, each key in at most one pair.

    Same patient, LOINC code and value (see the module docstring), and the same order (``_order_ids``, keyed
    order numbers) or effective times at most ``TIME_TOLERANCE_SECONDS`` apart. A row's best partner: a shared
    order first, then the closest time, then the closest value."""
    fhir = rows.filter(F.col("source") == FHIR).alias("f")
    hl7 = rows.filter(F.col("source") == HL7V2).alias("h")
    # both sources give _order_ids as an array (pseudonym_array: empty, never NULL)
    same_order = F.coalesce(F.arrays_overlap(F.col("f._order_ids"), F.col("h._order_ids")), F.lit(False))
    gap = F.abs(F.unix_micros(F.col("f.effective_at")) - F.unix_micros(F.col("h.effective_at")))
    near = F.coalesce(gap <= TIME_TOLERANCE_SECONDS * 1_000_000, F.lit(False))
    diff = F.abs(F.col("f.value_num") - F.col("h.value_num"))
    scale = F.greatest(F.abs(F.col("f.value_num")), F.abs(F.col("h.value_num")), F.lit(1e-9))
    same_value = (diff <= scale * TOLERANCE) | (F.col("f.value_num").isNull() & F.col("h.value_num").isNull()
                                                 & (F.col("f.value_text") == F.col("h.value_text")))
    keys = (F.col("f.patient_key") == F.col("h.patient_key")) & (F.col("f.loinc_code") == F.col("h.loinc_code"))
    pairs = fhir.join(hl7, keys).filter((same_order | near) & same_value).select(
        F.col("f.observation_key").alias("fk"), F.col("h.observation_key").alias("hk"),
        (~same_order).alias("o"), gap.alias("g"), diff.alias("d"))
    order = ("o", F.col("g").asc_nulls_last(), F.col("d").asc_nulls_last())
    by_h = Window.partitionBy("hk").orderBy(*order, "fk")
    by_f = Window.partitionBy("fk").orderBy(*order, "hk")
    return first_per_partition(first_per_partition(pairs, by_h), by_f).drop("o", "g", "d")


def merge_pairs(rows: DataFrame, pairs: DataFrame) -> DataFrame:
    """One row per result: each pair of :func:`harmonized_pairs` becomes the FHIR key with both sources and both
    Bronze hashes, and the value of the row reported in the canonical unit (else the FHIR one)."""
    # an HL7 row carries the messages of all versions of its result (latest_versions)
    hashes = F.coalesce(F.col("bronze_hashes"), F.array(F.col("content_hash"))) \
        if "bronze_hashes" in rows.columns else F.array(F.col("content_hash"))
    keyed = rows.withColumn("sources", F.array(F.col("source"))).withColumn("bronze_hashes", hashes)
    members = keyed.join(pairs.select(F.col("hk").alias("observation_key"), F.col("fk")), "observation_key", "left")
    group = F.coalesce(F.col("fk"), F.col("observation_key"))
    in_canonical = F.lower(F.trim(F.col("unit_original"))) == F.lower(F.col("unit"))
    # the representative row of a group: reported in the canonical unit first, then FHIR
    rank = Window.partitionBy("_group").orderBy(F.coalesce(in_canonical, F.lit(False)).desc(),
                                                (F.col("source") == FHIR).desc())
    grouped = members.withColumn("_group", group)
    lineage = grouped.groupBy("_group").agg(*merge_lineage("_sources", "_hashes"))
    best = first_per_partition(grouped, rank).join(lineage, "_group")
    out = best.withColumn("observation_key", F.col("_group")).withColumn("sources", F.col("_sources")) \
              .withColumn("bronze_hashes", F.col("_hashes"))
    return out.drop("_group", "_sources", "_hashes", "fk")
