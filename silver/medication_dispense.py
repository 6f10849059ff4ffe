"""silver.medication_dispense: FHIR MedicationDispense and HL7 RXD (RDS^O13 and any message with RXD), coded to
RxNorm and linked to the order.

HL7 rows: one per dispense, identified by the patient, RXD-7 prescription number, RXD-1 dispense counter and RXD-2
code (a re-sent dispense replaces the earlier one); without a prescription number by its message (MSH-3, MSH-4,
MSH-10) and segment index. ``medication_request_key`` is the key the order's RDE row gets (patient and ORC placer,
else filler, order number; see silver.medication_request). Status: completed (the message reports a dispense),
unless ORC-5/ORC-1 say cancelled, stopped, on hold or entered in error.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.expressions import code_lookup
from silver.common import (
    FHIR,
    Deid,
    fhir_timestamp,
    field,
    flatten,
    local_time,
    patient_key_or_ref,
    record_lineage,
    resolve_references,
)
from silver.deid import pseudonym
from silver.medication_request import (
    hl7_order_groups,
    hl7_order_identity,
    latest_per_identity,
    message_identity,
)
from silver.terminology import map_medication_codes

# HL7 table 0038 order status / table 0119 order control that change a dispense's FHIR status
DISPENSE_ORDER_STATUS = {"CA": "cancelled", "DC": "stopped", "HD": "on-hold", "ER": "entered-in-error"}
DISPENSE_ORDER_CONTROL = {"CA": "cancelled", "OC": "cancelled", "CR": "cancelled", "DC": "stopped",
                          "OD": "stopped", "HD": "on-hold", "OH": "on-hold"}


def fhir_medication_dispenses(resources: DataFrame, patients: DataFrame, encounters: DataFrame,
                              deid: Deid) -> DataFrame:
    d = resolve_references(flatten(resources, "medication_dispense"), patients, encounters)
    rows = d.select(
        pseudonym(F.col("id"), deid.key, "medication_dispense").alias("medication_dispense_key"),
        patient_key_or_ref(deid), "encounter_key",
        pseudonym(F.col("request_ref"), deid.key, "medication_request").alias("medication_request_key"),
        F.col("code_code").alias("code"), "code_system", F.coalesce("code_display", "code_text").alias("display"),
        "status", F.coalesce(fhir_timestamp("when_handed_over"), fhir_timestamp("when_prepared")).alias("dispensed_at"),
        F.col("quantity_value").try_cast("double").alias("quantity"),
        F.coalesce("quantity_unit", "quantity_code").alias("quantity_unit"),
        *record_lineage(FHIR))
    return _coded(rows)


def hl7_rxd(segs: DataFrame) -> DataFrame:
    """The RXD segments dispenses are made from (for the reconciliation count)."""
    return segs.filter(F.col("segment_id") == "RXD")


def hl7_medication_dispenses(segs: DataFrame, deid: Deid) -> DataFrame:
    """One row per dispense (see the module docstring) among the RXD segments of every message."""
    rxd = hl7_order_groups(segs, "RXD", {
        "counter": field(1, decode=False), "code": field(2, 1, decode=False), "code_display": field(2, 2),
        "code_system": field(2, 3, decode=False), "alt_code": field(2, 4, decode=False),
        "alt_system": field(2, 6, decode=False), "dispensed": field(3, 1, decode=False),
        "amount": field(4, decode=False), "unit_code": field(5, 1, decode=False), "unit_text": field(5, 2),
        "rx_number": field(7, decode=False),
    })
    rx = F.trim("rx_number")
    dispense = F.when(rx.isNotNull() & (rx != ""), F.concat_ws(
        "|", F.lit("dispense"), F.coalesce("mrn", F.lit("")), rx, F.coalesce(F.trim("counter"), F.lit("")),
        F.coalesce(F.upper(F.trim("code")), F.lit(""))))
    status = F.coalesce(code_lookup(F.col("orc_status"), DISPENSE_ORDER_STATUS),
                        code_lookup(F.col("orc_control"), DISPENSE_ORDER_CONTROL), F.lit("completed"))
    rows = rxd.select(
        F.coalesce(dispense, message_identity("rxd")).alias("_ident"), "content_hash", "message_ts", "segment_index",
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"),
        pseudonym(F.col("visit"), deid.key, "encounter").alias("encounter_key"),
        pseudonym(hl7_order_identity(), deid.key, "medication_request").alias("medication_request_key"),
        F.coalesce("code", "alt_code").alias("code"),
        F.when(F.col("code").isNotNull(), F.col("code_system")).otherwise(F.col("alt_system")).alias("code_system"),
        F.col("code_display").alias("display"), status.alias("status"),
        local_time(F.col("dispensed")).alias("dispensed_at"),
        F.col("amount").try_cast("double").alias("quantity"),
        F.coalesce("unit_text", "unit_code").alias("quantity_unit"))
    return rows


def latest_dispenses(rxd_rows: DataFrame, deid: Deid) -> DataFrame:
    """One medication_dispense row per HL7 dispense from the per-RXD rows of :func:`hl7_medication_dispenses`."""
    one = latest_per_identity(rxd_rows).withColumn(
        "medication_dispense_key", pseudonym(F.col("_ident"), deid.key, "medication_dispense"))
    return _coded(one.drop("_ident", "content_hash", "message_ts", "segment_index"))


def _coded(rows: DataFrame) -> DataFrame:
    mapped_rows = map_medication_codes(rows, "code", "code_system")
    return mapped_rows.withColumn("display", F.coalesce("rxnorm_display", "display"))
