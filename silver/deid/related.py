"""Known identifiers of the people around a patient: next of kin, contacts, guarantors and insured persons.

A note says "daughter Ann Lee called from 617-555-0199": Ann Lee is not the patient, yet her name, phone and
address identify the patient as surely as the patient's own. These frames add them to the patient's known
identifiers (``silver.patient.known_by_patient``), so :func:`silver.deid.text.scrub_text` removes them from that
patient's free text. Nothing here is written to Silver.

HL7 v2 (each segment belongs to the PID before it in its message): NK1-2 name, NK1-4 address, NK1-5 and NK1-6
phones, NK1-30/31/32 contact person's name, phone and address; GT1-3 guarantor name, GT1-5 address, GT1-6 and GT1-7
phones, GT1-12 SSN; IN1-16 name of insured, IN1-19 insured's address, IN1-36 policy number, IN1-49 insured's id.
FHIR: ``Patient.contact`` name, telecom and address; ``RelatedPerson`` name, telecom and address (the resource
itself is out of Silver's scope, see silver/fhir_scope.csv).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from silver.common import (
    Deid,
    field,
    flatten,
    patient_key_or_ref,
    resolve_references,
    segment_fields,
    with_index_key,
    with_segment_context,
)
from silver.deid.pseudonym import pseudonym
from silver.deid.text import known_identifiers, known_identifiers_from_arrays
from silver.patient import hl7_patient_identity

RELATED_SEGMENTS = ("NK1", "GT1", "IN1")
PHONE_REPETITIONS = 3
NAME_REPETITIONS = 2


def _xpn(n: int, prefix: str, repetitions: int = NAME_REPETITIONS) -> dict[str, Column]:
    """Family, given and middle name of each repetition of an XPN field (decoded: names carry escapes)."""
    return {f"{prefix}_{part}_{r}": field(n, c, r) for r in range(1, repetitions + 1)
            for part, c in (("family", 1), ("given", 2), ("middle", 3))}


def _xad(n: int, prefix: str) -> dict[str, Column]:
    """Street, other designation (apartment, unit) and city of an XAD field."""
    return {f"{prefix}_{part}": field(n, c, 1) for part, c in (("street", 1), ("other", 2), ("city", 3))}


def _xtn(n: int, prefix: str, repetitions: int = PHONE_REPETITIONS) -> dict[str, Column]:
    """Raw XTN components of each repetition: the v2.3 formatted number (.1), e-mail (.4), area code and local
    number (.6, .7 from v2.5 on)."""
    return {f"{prefix}_{part}_{r}": field(n, c, r, decode=False) for r in range(1, repetitions + 1)
            for part, c in (("number", 1), ("email", 4), ("area", 6), ("local", 7))}


def _phones(df: DataFrame, prefix: str, repetitions: int = PHONE_REPETITIONS) -> list[Column]:
    return [F.coalesce(F.nullif(F.col(f"{prefix}_number_{r}"), F.lit("")),
                       F.concat(F.col(f"{prefix}_area_{r}"), F.col(f"{prefix}_local_{r}")))
            for r in range(1, repetitions + 1) if f"{prefix}_number_{r}" in df.columns]


def _names(df: DataFrame, prefix: str) -> list[Column]:
    return [F.col(c) for c in df.columns if c.startswith(f"{prefix}_") and c.rsplit("_", 2)[-2] in
            ("family", "given", "middle")]


def _cols(df: DataFrame, *names: str) -> list[Column]:
    return [F.col(n) for n in names if n in df.columns]


def hl7_related_identifiers(segs: DataFrame, deid: Deid) -> DataFrame:
    """(patient_key, known) from the NK1, GT1 and IN1 segments of every message, keyed by the PID before them."""
    ctx = with_segment_context(segs.filter(F.col("segment_id").isin("PID", *RELATED_SEGMENTS)), "PID", "pid")
    pid = segment_fields(ctx, "PID", {"mrn": hl7_patient_identity()}).filter(F.col("mrn").isNotNull()) \
        .select("content_hash", F.col("segment_index").alias("pid_index"), "mrn")
    ctx_index = {"pid_index": F.col("pid_index")}
    nk1 = segment_fields(ctx, "NK1", {**ctx_index, **_xpn(2, "nk"), **_xad(4, "nk"), **_xtn(5, "nk"),
                                      **_xtn(6, "nkw", 1), **_xpn(30, "cp", 1), **_xtn(31, "cp", 1),
                                      **_xad(32, "cp")})
    nk1 = nk1.select("content_hash", "pid_index", known_identifiers(
        NAME=_names(nk1, "nk") + _names(nk1, "cp"),
        PHONE=_phones(nk1, "nk") + _phones(nk1, "nkw", 1) + _phones(nk1, "cp", 1),
        EMAIL=_cols(nk1, *(f"nk_email_{r}" for r in range(1, PHONE_REPETITIONS + 1))),
        ADDRESS=_cols(nk1, "nk_street", "nk_other", "nk_city", "cp_street", "cp_other", "cp_city")).alias("known"))
    gt1 = segment_fields(ctx, "GT1", {**ctx_index, **_xpn(3, "gt"), **_xad(5, "gt"), **_xtn(6, "gt", 2),
                                      **_xtn(7, "gtw", 1), "gt_ssn": field(12, decode=False)})
    gt1 = gt1.select("content_hash", "pid_index", known_identifiers(
        NAME=_names(gt1, "gt"), PHONE=_phones(gt1, "gt", 2) + _phones(gt1, "gtw", 1), SSN=[F.col("gt_ssn")],
        EMAIL=_cols(gt1, "gt_email_1", "gt_email_2"),
        ADDRESS=_cols(gt1, "gt_street", "gt_other", "gt_city")).alias("known"))
    in1 = segment_fields(ctx, "IN1", {**ctx_index, **_xpn(16, "in"), **_xad(19, "in"),
                                      "in_policy": field(36, decode=False), "in_member": field(49, 1, 1, decode=False)})
    in1 = in1.select("content_hash", "pid_index", known_identifiers(
        NAME=_names(in1, "in"), ID=[F.col("in_policy"), F.col("in_member")],
        ADDRESS=_cols(in1, "in_street", "in_other", "in_city")).alias("known"))
    related = nk1.unionByName(gt1).unionByName(in1)
    return related.join(pid, ["content_hash", "pid_index"]).select(
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"), "known")


def _telecom_known(telecom: Column) -> dict[str, Column]:
    values = F.coalesce(telecom, F.array().cast("array<string>"))
    return {"PHONE": F.filter(values, lambda v: ~v.contains("@")),
            "EMAIL": F.filter(values, lambda v: v.contains("@"))}


def fhir_contact_identifiers(resources: DataFrame, index: DataFrame) -> DataFrame:
    """(patient_key, known) from every ``Patient.contact``: name, telecom, address lines and city."""
    c = with_index_key(flatten(resources, "patient_contact"), index)
    empty = F.array().cast("array<string>")
    return c.select("patient_key", known_identifiers_from_arrays(
        NAME=F.concat(F.array(F.col("family")), F.coalesce("given", empty)), **_telecom_known(F.col("telecom")),
        ADDRESS=F.concat(F.coalesce("lines", empty), F.array(F.col("city")))).alias("known"))


def fhir_related_person_identifiers(resources: DataFrame, index: DataFrame, deid: Deid) -> DataFrame:
    """(patient_key, known) from every ``RelatedPerson`` (keyed by the patient it relates to)."""
    r = resolve_references(flatten(resources, "related_person"), index)
    empty = F.array().cast("array<string>")
    return r.select(patient_key_or_ref(deid), known_identifiers_from_arrays(
        NAME=F.concat(F.coalesce("family", empty), F.coalesce("given", empty)), **_telecom_known(F.col("telecom")),
        ADDRESS=F.concat(F.coalesce("lines", empty), F.coalesce("cities", empty))).alias("known")) \
        .filter(F.col("patient_key").isNotNull())


def related_identifiers(resources: DataFrame, segs: DataFrame, index: DataFrame, deid: Deid) -> list[DataFrame]:
    """Every frame of this module, for ``silver.patient.known_by_patient``."""
    return [hl7_related_identifiers(segs, deid), fhir_contact_identifiers(resources, index),
            fhir_related_person_identifiers(resources, index, deid)]
