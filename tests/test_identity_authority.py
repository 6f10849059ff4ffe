"""Identity by assigning authority (issue 17 item 3): HL7 CX.4, FHIR identifier.system and DICOM issuer spellings
of one authority are one canonical authority (seed assigning_authorities.csv); one fallback order for every source
(MR, MRT, PI, PT, untyped); an SSN, account number or other identifier type never becomes an identity."""

from __future__ import annotations

from typing import Any

import pytest
from pyspark.sql import functions as F

from lakehouse.hl7v2 import explode_segments
from silver.identity import VISIT_ID_TYPES, canonical_authority, fhir_identities, hl7_identity

OID = "2.16.840.1.113883.3.9999.1"  # GENHOSP's OID in the seed

PID3 = {
    "namespace": ("12345^^^GENHOSP^MR", "GENHOSP|12345"),
    "universal id only": (f"12345^^^&{OID}&ISO^MR", "GENHOSP|12345"),
    "namespace and universal id": (f"12345^^^GENHOSP&{OID}&ISO^MR", "GENHOSP|12345"),
    "ssn before the mrn": ("999887777^^^USSSA^SS~12345^^^GENHOSP^MR", "GENHOSP|12345"),
    "patient internal id before the mrn": ("P-1^^^GENHOSP^PI~12345^^^GENHOSP^MR", "GENHOSP|12345"),
    "patient internal id only": ("P-1^^^GENHOSP^PI", "GENHOSP|P-1"),
    "only ssn and account number": ("999887777^^^USSSA^SS~A77^^^GENHOSP^AN", None),
    "untyped, no authority": ("12345", "|12345"),
    "a type outside table 0203 counts as untyped": ("PATID1234^5^M11^ADT1^GOOD HEALTH HOSPITAL", "ADT1|PATID1234"),
    "national person identifier": ("1234567^^^NLD^NNNLD", None),
    "another hospital's mrn": ("12345^^^NORTHHOSP^MR", "NORTHHOSP|12345"),
    "empty first repetition": ("~12345^^^GENHOSP^MR", "GENHOSP|12345"),
    "absent": ("", None),
}


def _pid_rows(spark: Any, pid3: dict[str, tuple[str, str | None]], delimiters: str = "^~\\&") -> list[Any]:
    rows = [(name, f"MSH|{delimiters}|A|F|B|G|20240101||ADT^A08|{i}|P|2.5\rPID|1||{value}||DOE^JANE")
            for i, (name, (value, _)) in enumerate(pid3.items())]
    msgs = spark.createDataFrame(rows, "content_hash string, raw string").select(
        "content_hash", F.col("content_hash").alias("message_control_id"), "raw",
        F.lit("|").alias("field_separator"), F.lit(delimiters).alias("encoding_characters"))
    segs = explode_segments(msgs).filter(F.col("segment_id") == "PID")
    return segs.select("content_hash", hl7_identity(3).alias("identity")).collect()


def test_hl7_patient_identity_by_authority_and_fallback_order(spark: Any) -> None:
    got = {r.content_hash: r.identity for r in _pid_rows(spark, PID3)}
    assert got == {name: expected for name, (_, expected) in PID3.items()}


def test_hl7_identity_with_the_messages_own_delimiters(spark: Any) -> None:
    pid3 = {"own delimiters": ("999887777$$$USSSA$SS!12345$$$GENHOSP#" + OID + "#ISO$MR", "GENHOSP|12345")}
    assert [r.identity for r in _pid_rows(spark, pid3, "$!\\#")] == ["GENHOSP|12345"]


def test_visit_numbers_rank_vn_then_untyped(spark: Any) -> None:
    msgs = spark.createDataFrame([("v", "MSH|^~\\&|A|F|B|G|20240101||ADT^A01|1|P|2.5\r"
                                        "PV1|1|I|||||||||||||||||A77^^^GENHOSP^AN~V9^^^GENHOSP^VN")],
                                 "content_hash string, raw string").select(
        "content_hash", F.col("content_hash").alias("message_control_id"), "raw",
        F.lit("|").alias("field_separator"), F.lit("^~\\&").alias("encoding_characters"))
    pv1 = explode_segments(msgs).filter(F.col("segment_id") == "PV1")
    assert pv1.select(hl7_identity(19, VISIT_ID_TYPES, never=()).alias("v")).first().v == "GENHOSP|V9"


@pytest.mark.parametrize(("system", "expected"), [
    ("https://fhir.genhosp.example.org/sid/mrn", "GENHOSP"), (f"urn:oid:{OID}", "GENHOSP"),
    ("HTTPS://FHIR.GENHOSP.EXAMPLE.ORG/sid/mrn", "GENHOSP"), ("http://hospital.smarthealthit.org",
                                                              "http://hospital.smarthealthit.org"),
    (None, ""), ("  ", "")])
def test_fhir_systems_map_to_the_canonical_authority(spark: Any, system: str | None, expected: str) -> None:
    df = spark.createDataFrame([(system,)], "system string")
    assert df.select(canonical_authority(F.col("system")).alias("a")).first().a == expected


def test_fhir_patient_identity_follows_the_same_order(spark: Any) -> None:
    identifiers = [  # (patient, type code, system, value)
        ("p1", "SS", "http://hl7.org/fhir/sid/us-ssn", "999-88-7777"),
        ("p1", None, "https://github.com/synthetichealth/synthea", "0f9e"),
        ("p1", "MR", "https://fhir.genhosp.example.org/sid/mrn", "12345"),
        ("p2", None, "https://github.com/synthetichealth/synthea", "0f9e"),
        ("p3", "SS", "http://hl7.org/fhir/sid/us-ssn", "999-88-7777"), ("p3", "DL", "urn:oid:2.16.840.1.113883.4.3.25",
                                                                        "S999"),
        ("p4", "telecom", "phone", "555-0100"),
    ]
    df = spark.createDataFrame(identifiers, "id string, kind string, system string, value string")
    got = {r.id: r.identity for r in fhir_identities(df).collect()}
    # p3 (only an SSN and a driver's licence) and p4 (only a phone number) have no identity
    assert got == {"p1": "GENHOSP|12345", "p2": "https://github.com/synthetichealth/synthea|0f9e"}
