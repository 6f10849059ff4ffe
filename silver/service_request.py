"""silver.service_request: orders from FHIR ServiceRequest and HL7 v2 order messages, one row per order.

HL7: every ORC of an ORM^O01, OML^O21/O33/O35, OMG^O19 or OMI^O23 message is one order, with the first order
detail segment that follows it (OBR; an OBR that no ORC precedes, as some senders write, is an order on its own).
Orders whose detail is a pharmacy segment (RXO, RXE, ...) are medication orders and belong to
silver.medication_request, not here.

The order key is the pseudonym of the placer order number with its assigning authority (ORC-2, else OBR-2: EI.1
and EI.2 namespace, else EI.3 universal id), else the filler number (ORC-3/OBR-3), else the message and position
(MSH-3|MSH-4|MSH-10|segment index). A later message about the same order (ORC-1 SC status changed, CA cancel,
XO change, ...) updates the same row: per field the value of the latest message wins; ``ordered_at`` is the
earliest transaction time (ORC-9, else OBR-6), i.e. when the order was placed, not when it was last changed.

Status (FHIR RequestStatus) comes from ORC-5 order status (HL7 table 0038) when it is sent, else from what the
order control code ORC-1 (table 0119) implies, as the HL7 v2-to-FHIR mapping does (see ``ORDER_STATUS`` and
``CONTROL_STATUS``); an order with no status in any message is ``unknown``. FHIR ServiceRequests keep their own
status and are keyed by resource id (no cross-source merge: placer numbers of FHIR identifiers rarely carry the
HL7 namespace).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    collect_lineage,
    fhir_timestamp,
    field,
    flatten,
    latest_value,
    local_time,
    patient_key_or_ref,
    resolve_references,
    source_lineage,
    with_segment_context,
)
from silver.deid import pseudonym
from silver.encounter import hl7_visit_number
from silver.patient import hl7_patient_identity
from silver.terminology import normalize_system

ORDER_MESSAGES = ("ORM", "OML", "OMG", "OMI")
# order detail segments of ORM^O01 (v2.3-v2.8) and the OM* messages; the pharmacy ones are medication orders
DETAIL_SEGMENTS = ("OBR", "RQD", "RQ1", "ODS", "ODT", "RXO", "RXE", "RXD", "RXG", "RXA")
PHARMACY_DETAIL = ("RXO", "RXE", "RXD", "RXG", "RXA")
LOINC = "http://loinc.org"

# HL7 table 0038 order status -> FHIR RequestStatus (HL7 v2-to-FHIR ConceptMap OrderStatus)
ORDER_STATUS = {"A": "active", "CA": "revoked", "CM": "completed", "DC": "revoked", "ER": "entered-in-error",
                "HD": "on-hold", "IP": "active", "RP": "revoked", "SC": "active"}
# HL7 table 0119 order control -> the RequestStatus it implies when ORC-5 is empty (SC, RE, UA... imply none)
CONTROL_STATUS = {"NW": "active", "OK": "active", "SN": "draft", "NA": "active", "CH": "active", "PA": "active",
                  "XO": "active", "XX": "active", "XR": "active", "RL": "active", "OR": "active",
                  "CA": "revoked", "OC": "revoked", "CR": "revoked", "DC": "revoked", "OD": "revoked",
                  "DR": "revoked", "HD": "on-hold", "OH": "on-hold", "HR": "on-hold", "OE": "entered-in-error"}
# HL7 table 0485 priority (TQ1-9, TQ.6 of ORC-7/OBR-27, OBR-5) -> FHIR request-priority
PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "urgent", "T": "urgent", "STAT": "stat",
            "ASAP": "asap", "ROUTINE": "routine", "URGENT": "urgent"}

FIELDS = ("patient_key", "encounter_key", "code", "code_system", "display", "status", "intent", "priority",
          "order_control", "practitioner_key", "reason_code", "reason_system")


def mapped_code(col: Column, mapping: dict[str, str]) -> Column:
    """The mapped value of an HL7 code (trimmed, upper-cased); NULL when the code is not in ``mapping``."""
    key = F.upper(F.trim(col))
    out = F.when(F.lit(False), F.lit(None).cast("string"))
    for k, v in mapping.items():
        out = out.when(key == k, F.lit(v))
    return out


def _first_after_anchor(ctx: DataFrame, segment_ids: tuple[str, ...], cols: dict[str, Column]) -> DataFrame:
    """(content_hash, order_index, <cols>) of the first of ``segment_ids`` within each order group."""
    rows = ctx.filter(F.col("segment_id").isin(*segment_ids) & F.col("order_index").isNotNull()).select(
        "content_hash", "order_index", F.struct(F.col("segment_index").alias("_i"),
                                               *[c.alias(n) for n, c in cols.items()]).alias("_s"))
    first = rows.groupBy("content_hash", "order_index").agg(F.min("_s").alias("_s"))
    return first.select("content_hash", "order_index", *[F.col("_s")[n].alias(n) for n in cols])


def _order_context(segs: DataFrame) -> DataFrame:
    """Segments of order messages with ``order_index`` (the ORC, or ORC-less OBR, that opens the order group they
    belong to), ``pid_index`` and ``pv1_index`` (the closest preceding PID and PV1)."""
    s = segs.filter(F.col("message_type").isin(*ORDER_MESSAGES))
    s = with_segment_context(with_segment_context(with_segment_context(s, "ORC", "orc"), "PID", "pid"), "PV1", "pv1")
    anchor = (F.col("segment_id") == "ORC") | ((F.col("segment_id") == "OBR") & F.col("orc_index").isNull())
    w = Window.partitionBy("content_hash").orderBy("segment_index").rowsBetween(Window.unboundedPreceding, 0)
    return s.withColumn("order_index", F.max(F.when(anchor, F.col("segment_index"))).over(w))


def _orders(ctx: DataFrame) -> DataFrame:
    """One row per order group (not a pharmacy one) with its raw ORC, OBR, TQ1, DG1 fields and ``order_identity``."""
    is_orc = F.col("segment_id") == "ORC"

    def orc(n: int, component: int | None = None) -> Column:
        return F.when(is_orc, field(n, component, decode=False))

    anchors = ctx.filter(F.col("segment_index") == F.col("order_index")).select(
        "content_hash", "message_control_id", "message_ts", "facility_zone", "order_index", "pid_index", "pv1_index",
        orc(1).alias("order_control"), orc(2, 1).alias("orc_placer"),
        F.coalesce(orc(2, 2), orc(2, 3)).alias("orc_placer_ns"), orc(3, 1).alias("orc_filler"),
        F.coalesce(orc(3, 2), orc(3, 3)).alias("orc_filler_ns"), orc(5).alias("order_status"),
        orc(7, 6).alias("orc_priority"), orc(9, 1).alias("transaction_time"), orc(12, 1).alias("orc_provider"))
    obr = _first_after_anchor(ctx, ("OBR",), {
        "obr_placer": field(2, 1, decode=False),
        "obr_placer_ns": F.coalesce(field(2, 2, decode=False), field(2, 3, decode=False)),
        "obr_filler": field(3, 1, decode=False),
        "obr_filler_ns": F.coalesce(field(3, 2, decode=False), field(3, 3, decode=False)),
        "code": field(4, 1, decode=False), "display": field(4, 2), "code_system": field(4, 3, decode=False),
        "obr_priority": field(5, decode=False), "requested_time": field(6, 1, decode=False),
        "obr_provider": field(16, 1, decode=False), "obr_tq_priority": field(27, 6, decode=False),
        "obr_reason_code": field(31, 1, decode=False), "obr_reason_system": field(31, 3, decode=False)})
    detail = _first_after_anchor(ctx, DETAIL_SEGMENTS, {"detail_segment": F.col("segment_id")})
    tq1 = _first_after_anchor(ctx, ("TQ1",), {"tq1_priority": field(9, 1, decode=False)})
    dg1 = _first_after_anchor(ctx, ("DG1",), {"dg1_code": field(3, 1, decode=False),
                                               "dg1_system": field(3, 3, decode=False)})
    msh = ctx.filter(F.col("segment_id") == "MSH").select(
        "content_hash", field(3, decode=False).alias("msh3"), field(4, decode=False).alias("msh4"))
    keys = ["content_hash", "order_index"]
    rows = anchors.join(obr, keys, "left").join(detail, keys, "left").join(tq1, keys, "left") \
                  .join(dg1, keys, "left").join(msh, "content_hash", "left")
    rows = rows.filter(~F.coalesce(F.col("detail_segment").isin(*PHARMACY_DETAIL), F.lit(False)))
    return rows.withColumn("order_identity", order_identity(
        F.coalesce("orc_placer", "obr_placer"),
        F.when(F.col("orc_placer").isNotNull(), F.col("orc_placer_ns")).otherwise(F.col("obr_placer_ns")),
        F.coalesce("orc_filler", "obr_filler"),
        F.when(F.col("orc_filler").isNotNull(), F.col("orc_filler_ns")).otherwise(F.col("obr_filler_ns")),
        F.concat_ws("|", F.coalesce("msh3", F.lit("")), F.coalesce("msh4", F.lit("")),
                    F.coalesce("message_control_id", F.lit("")), F.col("order_index").cast("string"))))


def order_identity(placer: Column, placer_ns: Column, filler: Column, filler_ns: Column, fallback: Column) -> Column:
    """What identifies an order: placer number^namespace, else filler number^namespace, else ``fallback``."""
    def ei(kind: str, number: Column, namespace: Column) -> Column:
        return F.concat_ws("^", F.lit(kind), F.trim(number), F.coalesce(F.trim(namespace), F.lit("")))

    return F.when(placer.isNotNull(), ei("placer", placer, placer_ns)) \
            .when(filler.isNotNull(), ei("filler", filler, filler_ns)) \
            .otherwise(F.concat(F.lit("message|"), fallback))


def hl7_order_identities(segs: DataFrame) -> DataFrame:
    """``order_identity`` of every order group of the order messages (the reconciliation's source count)."""
    return _orders(_order_context(segs)).select("order_identity")


def hl7_orders(segs: DataFrame, deid: Deid) -> DataFrame:
    """One row per order group of every (deduplicated) order message; :func:`harmonize` folds them per order."""
    ctx = _order_context(segs)
    pid = ctx.filter(F.col("segment_id") == "PID").select(
        "content_hash", F.col("segment_index").alias("pid_index"), hl7_patient_identity().alias("mrn"))
    pv1 = ctx.filter(F.col("segment_id") == "PV1").select(
        "content_hash", F.col("segment_index").alias("pv1_index"), hl7_visit_number().alias("visit"))
    rows = _orders(ctx).join(pid, ["content_hash", "pid_index"], "left").join(pv1, ["content_hash", "pv1_index"],
                                                                              "left")
    # a PV1 before the order's PID belongs to an earlier patient group of the message
    visit = F.when(F.col("pv1_index") > F.coalesce(F.col("pid_index"), F.lit(-1)), F.col("visit"))
    system = normalize_system(F.col("code_system"))
    reason_from_obr = F.col("obr_reason_code").isNotNull()
    status = F.coalesce(mapped_code(F.col("order_status"), ORDER_STATUS),
                        mapped_code(F.col("order_control"), CONTROL_STATUS))
    priority = F.coalesce(*[mapped_code(F.col(c), PRIORITY)
                            for c in ("tq1_priority", "orc_priority", "obr_tq_priority", "obr_priority")])
    ordered = F.coalesce(local_time(F.col("transaction_time")),
                         local_time(F.col("requested_time")))
    return rows.select(
        pseudonym(F.col("order_identity"), deid.key, "service_request").alias("service_request_key"),
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"),
        pseudonym(visit, deid.key, "encounter").alias("encounter_key"),
        "code", system.alias("code_system"), "display", status.alias("status"), F.lit("order").alias("intent"),
        priority.alias("priority"), F.upper(F.trim("order_control")).alias("order_control"),
        ordered.alias("ordered_at"),
        pseudonym(F.coalesce("orc_provider", "obr_provider"), deid.key, "practitioner").alias("practitioner_key"),
        F.when(reason_from_obr, F.col("obr_reason_code")).otherwise(F.col("dg1_code")).alias("reason_code"),
        normalize_system(F.when(reason_from_obr, F.col("obr_reason_system")).otherwise(F.col("dg1_system")))
         .alias("reason_system"),
        F.col("message_ts").alias("updated_at"), *source_lineage(HL7V2))


def fhir_service_requests(resources: DataFrame, patients: DataFrame, encounters: DataFrame,
                          practitioners: DataFrame, deid: Deid) -> DataFrame:
    s = resolve_references(flatten(resources, "service_request"), patients, encounters, practitioners)
    return s.select(
        pseudonym(F.col("id"), deid.key, "service_request").alias("service_request_key"), patient_key_or_ref(deid),
        "encounter_key", F.col("code_code").alias("code"), normalize_system(F.col("code_system")).alias("code_system"),
        F.coalesce("code_display", "code_text").alias("display"), "status", "intent", "priority",
        F.lit(None).cast("string").alias("order_control"), fhir_timestamp("authored").alias("ordered_at"),
        "practitioner_key", "reason_code", normalize_system(F.col("reason_system")).alias("reason_system"),
        fhir_timestamp("last_updated").alias("updated_at"), *source_lineage(FHIR))


def harmonize(rows: DataFrame) -> DataFrame:
    """Source rows -> one row per service_request_key: latest non-null value per field, earliest order time."""
    out = rows.groupBy("service_request_key").agg(
        *[latest_value(f, "updated_at").alias(f) for f in FIELDS], F.min("ordered_at").alias("ordered_at"),
        *collect_lineage())
    return out.withColumn("status", F.coalesce(F.col("status"), F.lit("unknown"))) \
              .withColumn("loinc_code", F.when(F.col("code_system") == LOINC, F.col("code")))
