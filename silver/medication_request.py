"""silver.medication_request: FHIR MedicationRequest and HL7 pharmacy orders (the RXE of RDE^O11/O25), coded to
RxNorm.

HL7 order rows: one per RXE of an RDE message (any version, any trigger). The order is identified by the patient
and ORC-2 placer order number (else ORC-3 filler order number): a later message about the same order (a cancel, a
hold) replaces the earlier one, and every message's hash is kept. Without an order number the row is identified by
its message (MSH-3, MSH-4, MSH-10) and segment index. Status: ORC-5 (HL7 table 0038), else ORC-1 (table 0119).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.expressions import code_lookup
from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    fhir_timestamp,
    field,
    first_per_partition,
    flatten,
    local_time,
    patient_key_or_ref,
    record_lineage,
    resolve_references,
    segment_fields,
    with_segment_context,
)
from silver.deid import pseudonym, scrub_text
from silver.encounter import hl7_visit_number
from silver.patient import hl7_patient_identity
from silver.terminology import map_medication_codes

# HL7 table 0038 order status -> FHIR MedicationRequest.status
ORDER_STATUS = {"A": "active", "IP": "active", "SC": "active", "CM": "completed", "CA": "cancelled",
                "DC": "stopped", "RP": "stopped", "HD": "on-hold", "ER": "entered-in-error"}
# HL7 table 0119 order control (when ORC-5 is empty) -> FHIR MedicationRequest.status
ORDER_CONTROL = {"NW": "active", "OK": "active", "SN": "draft", "NA": "active", "RO": "active", "XO": "active",
                 "XR": "active", "RL": "active", "OE": "active", "SC": "active", "RE": "active",
                 "CA": "cancelled", "OC": "cancelled", "CR": "cancelled", "DC": "stopped", "OD": "stopped",
                 "DR": "stopped", "HD": "on-hold", "OH": "on-hold", "HR": "on-hold"}
# CDC immunization guides use this filler order number for records without one (refusals, historical doses)
NO_ORDER_NUMBER = "9999"
RDE = "RDE"


def _previous_of(segs: DataFrame, child: str, kinds: tuple[str, ...]) -> DataFrame:
    """``(content_hash, segment_index, prev_id, prev_index)`` of each ``child`` segment: the closest preceding
    segment among ``kinds`` and ``child``."""
    w = Window.partitionBy("content_hash").orderBy("segment_index")
    return segs.filter(F.col("segment_id").isin(child, *kinds)) \
        .select("content_hash", "segment_index", "segment_id",
                F.lag("segment_id").over(w).alias("prev_id"), F.lag("segment_index").over(w).alias("prev_index")) \
        .filter(F.col("segment_id") == child).drop("segment_id")


def hl7_order_groups(segs: DataFrame, child: str, cols: dict[str, Column]) -> DataFrame:
    """One row per ``child`` segment (RXA, RXE, RXD) with ``cols`` and the group it belongs to.

    Adds ``mrn`` (PID), ``visit`` (PV1-19), ``msh_app``/``msh_facility``, the ORC of its order group (``orc_*``
    columns: the ORC immediately before it, no other ``child`` in between; NULL when the group has no ORC) and
    ``route`` (the first RXR that follows it). Any number of patients and order groups per message.
    """
    # only the messages that carry the segment: the windows below then run over a small part of a large feed
    segs = segs.join(segs.filter(F.col("segment_id") == child).select("content_hash").distinct(), "content_hash",
                     "left_semi")
    ctx = with_segment_context(with_segment_context(segs, "PID", "pid"), "PV1", "pv1")
    rows = segment_fields(ctx, child, cols).join(
        ctx.filter(F.col("segment_id") == child).select("content_hash", "segment_index", "pid_index", "pv1_index"),
        ["content_hash", "segment_index"])
    msh = segment_fields(segs, "MSH", {"msh_app": field(3, 1, decode=False),
                                       "msh_facility": field(4, 1, decode=False)}) \
        .select("content_hash", "msh_app", "msh_facility")
    pid = segment_fields(segs, "PID", {"mrn": hl7_patient_identity()}) \
        .select("content_hash", F.col("segment_index").alias("pid_index"), "mrn")
    pv1 = segment_fields(segs, "PV1", {"visit": hl7_visit_number()}) \
        .select("content_hash", F.col("segment_index").alias("pv1_index"), "visit")
    orc = segment_fields(segs, "ORC", {
        "orc_control": field(1, decode=False), "orc_placer": field(2, 1, decode=False),
        "orc_placer_ns": field(2, 2, decode=False), "orc_filler": field(3, 1, decode=False),
        "orc_filler_ns": field(3, 2, decode=False), "orc_status": field(5, decode=False),
        "orc_time": field(9, 1, decode=False), "orc_provider": field(12, 1, decode=False),
    }).select("content_hash", F.col("segment_index").alias("orc_index"), "orc_control", "orc_placer",
              "orc_placer_ns", "orc_filler", "orc_filler_ns", "orc_status", "orc_time", "orc_provider")
    own_orc = _previous_of(segs, child, ("ORC",)).filter(F.col("prev_id") == "ORC") \
        .select("content_hash", "segment_index", F.col("prev_index").alias("orc_index"))
    rxr = segment_fields(segs, "RXR", {"route_code": field(1, 1, decode=False), "route_text": field(1, 2)}) \
        .select("content_hash", F.col("segment_index").alias("rxr_index"),
                F.coalesce("route_text", "route_code").alias("route"))
    first_rxr = _previous_of(segs, "RXR", ("ORC", "RXO", "RXE", "RXD", "RXA", "RXG")) \
        .filter(F.col("prev_id") == child) \
        .select("content_hash", F.col("segment_index").alias("rxr_index"), F.col("prev_index").alias("segment_index"))
    rows = rows.join(msh, "content_hash", "left").join(pid, ["content_hash", "pid_index"], "left") \
        .join(pv1, ["content_hash", "pv1_index"], "left") \
        .withColumn("visit", F.when(F.col("pv1_index") > F.coalesce("pid_index", F.lit(-1)), F.col("visit"))) \
        .join(own_orc, ["content_hash", "segment_index"], "left").join(orc, ["content_hash", "orc_index"], "left") \
        .join(first_rxr, ["content_hash", "segment_index"], "left").join(rxr, ["content_hash", "rxr_index"], "left")
    return rows.drop("pid_index", "pv1_index", "rxr_index")


def order_number(number: str, namespace: str) -> Column:
    """EI (entity id ^ namespace) as one text, NULL when there is no id or it is the "no number" 9999."""
    n = F.trim(F.col(number))
    return F.when(n.isNotNull() & (n != "") & (n != NO_ORDER_NUMBER),
                  F.concat_ws("^", n, F.coalesce(F.trim(F.col(namespace)), F.lit(""))))


def hl7_order_identity() -> Column:
    """The natural identity of an HL7 pharmacy order: patient MRN and the placer (else filler) order number."""
    number = F.coalesce(F.concat(F.lit("P|"), order_number("orc_placer", "orc_placer_ns")),
                        F.concat(F.lit("F|"), order_number("orc_filler", "orc_filler_ns")))
    return F.when(number.isNotNull(), F.concat_ws("|", F.lit("order"), F.coalesce("mrn", F.lit("")), number))


def message_identity(kind: str) -> Column:
    """Identity of a segment without an order number: its message (MSH-3, MSH-4, MSH-10) and position."""
    return F.concat_ws("|", F.lit(kind), F.coalesce("msh_app", F.lit("")), F.coalesce("msh_facility", F.lit("")),
                       "message_control_id", F.col("segment_index").cast("string"))


def latest_per_identity(rows: DataFrame) -> DataFrame:
    """One row per ``_ident``: the latest message wins; ``sources``/``bronze_hashes`` of all of them."""
    hashes = rows.groupBy("_ident").agg(F.collect_set("content_hash").alias("bronze_hashes"))
    latest = Window.partitionBy("_ident").orderBy(F.col("message_ts").desc_nulls_last(), F.col("content_hash").desc(),
                                                  F.col("segment_index").desc())
    return first_per_partition(rows, latest).join(hashes, "_ident") \
        .withColumn("sources", F.array(F.lit(HL7V2)))


def fhir_medication_requests(resources: DataFrame, patients: DataFrame, encounters: DataFrame,
                             practitioners: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    m = resolve_references(flatten(resources, "medication_request"), patients, encounters, practitioners)
    m = m.join(known, "patient_key", "left")
    rows = m.select(
        pseudonym(F.col("id"), deid.key, "medication_request").alias("medication_request_key"),
        patient_key_or_ref(deid),
        "encounter_key", F.col("code_code").alias("code"), F.col("code_system"),
        F.coalesce("code_display", "code_text").alias("display"), "status", "intent",
        fhir_timestamp("authored").alias("authored_at"), "practitioner_key",
        scrub_text(F.col("dosage_text"), F.col("known")).alias("dosage_text"),
        F.lit(None).cast("string").alias("route"),
        *record_lineage(FHIR))
    return _coded(rows)


def hl7_rxe_count(segs: DataFrame) -> DataFrame:
    """The RXE segments HL7 medication requests are made from (for the reconciliation count)."""
    return segs.filter((F.col("message_type") == RDE) & (F.col("segment_id") == "RXE"))


def hl7_medication_requests(segs: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    """One row per order (see the module docstring) among the RXE segments of RDE messages.

    Also returns one row per RXE (``_ident`` shared by the RXEs of one order); :func:`latest_orders` collapses them.
    """
    instructions = [field(7, 2, r) for r in range(1, 4)] + [field(7, 1, r) for r in range(1, 4)]
    rxe = hl7_order_groups(segs.filter(F.col("message_type") == RDE), "RXE", {
        "code": field(2, 1, decode=False), "code_display": field(2, 2), "code_system": field(2, 3, decode=False),
        "alt_code": field(2, 4, decode=False), "alt_system": field(2, 6, decode=False),
        "instr1": instructions[0], "instr2": instructions[1], "instr3": instructions[2],
        "instr1_code": instructions[3], "instr2_code": instructions[4], "instr3_code": instructions[5],
        "original_time": field(32, 1, decode=False),
    })
    # CWE text, else its identifier (free-text instructions are often sent in the first component)
    text = F.concat_ws("; ", *[F.coalesce(f"instr{i}", f"instr{i}_code") for i in (1, 2, 3)])
    status = F.coalesce(code_lookup(F.col("orc_status"), ORDER_STATUS),
                        code_lookup(F.col("orc_control"), ORDER_CONTROL), F.lit("unknown"))
    return rxe.select(
        F.coalesce(hl7_order_identity(), message_identity("rxe")).alias("_ident"), "content_hash", "message_ts",
        "segment_index",
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"),
        pseudonym(F.col("visit"), deid.key, "encounter").alias("encounter_key"),
        F.coalesce("code", "alt_code").alias("code"),
        F.when(F.col("code").isNotNull(), F.col("code_system")).otherwise(F.col("alt_system")).alias("code_system"),
        F.col("code_display").alias("display"), status.alias("status"), F.lit("order").alias("intent"),
        F.coalesce(local_time(F.col("original_time")),
                   local_time(F.col("orc_time"))).alias("authored_at"),
        pseudonym(F.col("orc_provider"), deid.key, "practitioner").alias("practitioner_key"),
        F.nullif(text, F.lit("")).alias("_dosage_raw"), "route")


def latest_orders(rxe_rows: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    """One medication_request row per HL7 order from the per-RXE rows of :func:`hl7_medication_requests`."""
    one = latest_per_identity(rxe_rows).join(known, "patient_key", "left")
    rows = one.select(
        pseudonym(F.col("_ident"), deid.key, "medication_request").alias("medication_request_key"),
        "patient_key", "encounter_key", "code", "code_system", "display", "status", "intent", "authored_at",
        "practitioner_key", scrub_text(F.col("_dosage_raw"), F.col("known")).alias("dosage_text"), "route",
        "sources", "bronze_hashes")
    return _coded(rows)


def _coded(rows: DataFrame) -> DataFrame:
    mapped_rows = map_medication_codes(rows, "code", "code_system")
    return mapped_rows.withColumn("display", F.coalesce("rxnorm_display", "display"))
