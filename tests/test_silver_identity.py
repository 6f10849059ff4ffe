"""Identity of facts (issue 17, items 4 and 5).

- No positional pairing of independently flattened collections: an untyped identifier before the typed one, a
  coding without system before the ICD-10-CM / SNOMED CT / LOINC one. Visit number, ICD code, NPI, Study UID and
  LOINC code come from the right element (the ViewDefinitions select per element with ``where(...)``).
- Result status: HL7 v2.5.1 ORU^R01 preliminary, final then corrected results of one order and test are one Silver
  observation holding the latest version; a cancelled (OBX-11 X), a deleted (D) result and an order cancelled in
  OBR-25 keep their row with their status and no stale value; two senders reusing one MSH-10 (and one order number)
  keep both results; the reconciliation counts distinct results and reports the superseded OBX.

The Silver build runs once for the module (slow); the view checks run on the engine alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import ingest_and_build_silver, new_lakehouse, transaction_bundle

from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from silver.common import flatten
from silver.deid import date_shift_days_py, pseudonym_py

KEY = "identity-key-not-secret-0123456789abcdef"
MRN, FHIR_MRN, VISIT = "MRN81017", "MRN81018", "VN81017"
LAB_APP, LAB_FACILITY = "LABSYS^2.16.840.1.113883.3.999.1^ISO", "CITYLAB^2.16.840.1.113883.3.999.2^ISO"
OTHER_APP, OTHER_FACILITY = "NORTHLIS^2.16.840.1.113883.3.999.7^ISO", "NORTHLAB^2.16.840.1.113883.3.999.8^ISO"
ICD10CM, SNOMED, LOINC = "http://hl7.org/fhir/sid/icd-10-cm", "http://snomed.info/sct", "http://loinc.org"
NPI = "1234567893"
STUDY_UID, SERIES_UID = "1.2.840.113619.2.81017.1", "1.2.840.113619.2.81017.1.1"
FHIR_VISIT = "VN-FHIR-81018"
# its identity: the visit number qualified by the authority of its system (silver.identity)
FHIR_VISIT_IDENTITY = f"2.16.840.1.113883.3.999.6|{FHIR_VISIT}"

GLUCOSE = "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN"
POTASSIUM = "2823-3^Potassium [Moles/volume] in Serum or Plasma^LN"
SODIUM = "2951-2^Sodium [Moles/volume] in Serum or Plasma^LN"
CHLORIDE = "2075-0^Chloride [Moles/volume] in Serum or Plasma^LN"
CALCIUM = "17861-6^Calcium [Mass/volume] in Serum or Plasma^LN"
HEMOGLOBIN = "718-7^Hemoglobin [Mass/volume] in Blood^LN"
ALBUMIN = "1751-7^Albumin [Mass/volume] in Serum or Plasma^LN"

slow = pytest.mark.slow


def seg(name: str, fields: dict[int, str]) -> str:
    """One segment with fields by their HL7 number (MSH numbering starts at MSH-3: MSH-1/2 are written)."""
    values = [fields.get(i, "") for i in range(1, max(fields) + 1)]
    if name == "MSH":
        return "MSH|^~\\&|" + "|".join(values[2:])
    return "|".join([name, *values])


def oru(control_id: str, sent: str, order: tuple[str, str] | None, result_status: str,
        results: list[tuple[str, str, str, str]], app: str = LAB_APP, facility: str = LAB_FACILITY,
        mrn: str = MRN) -> str:
    """A v2.5.1 ORU^R01: MSH, PID, PV1, [ORC], OBR (placer, filler, OBR-25) and OBX (code, value, unit, OBX-11)."""
    placer, filler = order if order else ("", "")
    segments = [
        seg("MSH", {3: app, 4: facility, 5: "EHR", 6: "GENHOSP", 7: sent, 9: "ORU^R01^ORU_R01", 10: control_id,
                    11: "P", 12: "2.5.1", 15: "AL", 16: "NE"}),
        seg("PID", {1: "1", 3: f"{mrn}^^^GENHOSP&2.16.840.1.113883.3.999.9&ISO^MR", 5: "Testperson^Robin",
                    7: "19680301", 8: "F"}),
        seg("PV1", {1: "1", 2: "O", 3: "LAB^^^GENHOSP", 19: VISIT}),
    ]
    if order:
        segments.append(seg("ORC", {1: "RE", 2: placer, 3: filler, 5: "CM"}))
    segments.append(seg("OBR", {1: "1", 2: placer, 3: filler, 4: "24323-8^Comprehensive metabolic panel^LN",
                                7: "20240410081500-0500", 25: result_status}))
    for i, (code, value, unit, status) in enumerate(results, 1):
        segments.append(seg("OBX", {1: str(i), 2: "NM", 3: code, 5: value, 6: unit, 11: status,
                                    14: "20240410081500-0500"}))
    return "\r".join(segments) + "\r"


ORDER = ("ORD81001^EHR", "FIL81001^LABSYS")
MESSAGES = {
    # P, then F, then C of glucose and potassium (the correction resends glucose only)
    "1_preliminary.hl7": oru("LAB81001", "20240410090000-0500", ORDER, "P",
                             [(GLUCOSE, "110", "mg/dL", "P"), (POTASSIUM, "4.1", "mmol/L", "P")]),
    "2_final.hl7": oru("LAB81002", "20240410100000-0500", ORDER, "F",
                       [(GLUCOSE, "112", "mg/dL", "F"), (POTASSIUM, "4.2", "mmol/L", "F")]),
    "3_corrected.hl7": oru("LAB81003", "20240410120000-0500", ORDER, "C", [(GLUCOSE, "108", "mg/dL", "C")]),
    # a final sodium, then cancelled (X, no value); a final chloride, then deleted (D) with its value resent
    "4_sodium_final.hl7": oru("LAB81004", "20240410100000-0500", ("ORD81002^EHR", ""), "F",
                              [(SODIUM, "141", "mmol/L", "F"), (CHLORIDE, "99", "mmol/L", "F")]),
    "5_sodium_cancelled.hl7": oru("LAB81005", "20240410110000-0500", ("ORD81002^EHR", ""), "F",
                                  [(SODIUM, "", "", "X"), (CHLORIDE, "99", "mmol/L", "D")]),
    # a final calcium, then the order cancelled in OBR-25 with no OBX-11 on the result
    "6_calcium_final.hl7": oru("LAB81006", "20240410100000-0500", ("", "FIL81003^LABSYS"), "F",
                               [(CALCIUM, "9.4", "mg/dL", "F")]),
    "7_calcium_order_cancelled.hl7": oru("LAB81007", "20240410113000-0500", ("", "FIL81003^LABSYS"), "X",
                                         [(CALCIUM, "", "", "")]),
    # two senders, one control id and one placer number: two different results
    "8_sender_a.hl7": oru("MSG0001", "20240410130000-0500", ("ORD90000^EHR", ""), "F",
                          [(HEMOGLOBIN, "13.1", "g/dL", "F")]),
    "9_sender_b.hl7": oru("MSG0001", "20240410130000-0500", ("ORD90000^EHR", ""), "F",
                          [(HEMOGLOBIN, "9.7", "g/dL", "F")], app=OTHER_APP, facility=OTHER_FACILITY),
    # no order number at all: keyed by message and position, as before
    "10_no_order_number.hl7": oru("LAB81010", "20240410140000-0500", None, "F", [(ALBUMIN, "4.0", "g/dL", "F")]),
    # item 3: a person added with only a social security number and an account number: no usable identifier
    "11_add_person_without_mrn.hl7": "\r".join([
        seg("MSH", {3: "REG", 4: "GENHOSP", 5: "EHR", 6: "GENHOSP", 7: "20240410150000-0500", 9: "ADT^A28^ADT_A05",
                    10: "REG81011", 11: "P", 12: "2.5.1"}),
        seg("EVN", {2: "20240410150000-0500"}),
        seg("PID", {1: "1", 3: "999887777^^^USSSA^SS~A7712^^^GENHOSP^AN", 5: "Nokey^Pat", 7: "19800101",
                    8: "F"})]) + "\r",
}
# item 3: the lab patient's identity: the PID-3 HD's universal id (an OID) is its authority, as the FHIR system
# urn:oid:2.16.840.1.113883.3.999.9 of its FHIR twin is
LAB_PATIENT = f"2.16.840.1.113883.3.999.9|{MRN}"
N_OBX = 2 + 2 + 1 + 2 + 2 + 1 + 1 + 1 + 1 + 1
N_RESULTS = 2 + 2 + 1 + 2 + 1  # glucose, potassium, sodium, chloride, calcium, 2 hemoglobins, albumin


def fhir_resources() -> list[dict[str, Any]]:
    """A patient whose Encounter, Condition, Practitioner, ImagingStudy and Observation each list an element
    without type or system before the one the pipeline needs."""
    patient = {"resourceType": "Patient", "id": "pat-81018", "meta": {"lastUpdated": "2024-04-10T12:00:00Z"},
               "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                    "code": "MR"}]},
                               "system": "urn:oid:2.16.840.1.113883.3.999.9", "value": FHIR_MRN}],
               "gender": "male", "birthDate": "1959-07-14"}
    practitioner = {"resourceType": "Practitioner", "id": "prac-81018",
                    "meta": {"lastUpdated": "2024-04-10T12:00:00Z"},
                    "identifier": [{"value": "EMP-4471"}, {"system": "http://hl7.org/fhir/sid/us-npi", "value": NPI}],
                    "gender": "female"}
    encounter = {"resourceType": "Encounter", "id": "enc-81018", "meta": {"lastUpdated": "2024-04-10T12:00:00Z"},
                 "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                 "code": "AMB"},
                 "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.999.5", "value": "ACCT-55012"},
                                {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                      "code": "VN"}]},
                                 "system": "urn:oid:2.16.840.1.113883.3.999.6", "value": FHIR_VISIT}],
                 "type": [{"coding": [{"display": "Office visit (local, uncoded)"},
                                      {"system": SNOMED, "code": "185349003", "display": "Encounter for check up"}]}],
                 "subject": {"reference": "urn:uuid:pat-81018"},
                 "participant": [{"individual": {"reference": "urn:uuid:prac-81018"}}],
                 "period": {"start": "2024-04-10T13:00:00Z", "end": "2024-04-10T13:40:00Z"}}
    condition = {"resourceType": "Condition", "id": "cond-81018", "meta": {"lastUpdated": "2024-04-10T12:00:00Z"},
                 "code": {"coding": [{"code": "DM2-LOCAL", "display": "Diabetes (local list)"},
                                     {"system": SNOMED, "code": "44054006", "display": "Diabetes mellitus type 2"},
                                     {"system": ICD10CM, "code": "E11.9",
                                      "display": "Type 2 diabetes mellitus without complications"}]},
                 "clinicalStatus": {"coding": [{"code": "active"}]},
                 "subject": {"reference": "urn:uuid:pat-81018"}, "encounter": {"reference": "urn:uuid:enc-81018"},
                 "onsetDateTime": "2024-04-10T13:20:00Z", "recordedDate": "2024-04-10T13:30:00Z"}
    study = {"resourceType": "ImagingStudy", "id": "img-81018", "meta": {"lastUpdated": "2024-04-10T12:00:00Z"},
             "status": "available",
             "identifier": [{"type": {"coding": [{"code": "ACSN"}]}, "value": "ACC-81018"},
                            {"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}"}],
             "subject": {"reference": "urn:uuid:pat-81018"}, "encounter": {"reference": "urn:uuid:enc-81018"},
             "started": "2024-04-10T13:25:00Z", "numberOfSeries": 1, "numberOfInstances": 2,
             "series": [{"uid": SERIES_UID, "number": 1, "modality": {"code": "CR"}, "numberOfInstances": 2}]}
    observation = {"resourceType": "Observation", "id": "obs-81018", "meta": {"lastUpdated": "2024-04-10T12:00:00Z"},
                   "status": "final",
                   "category": [{"coding": [{"code": "laboratory"}]}],
                   "code": {"coding": [{"code": "GLU-LOCAL", "display": "Glucose (local)"},
                                       {"system": LOINC, "code": "2345-7",
                                        "display": "Glucose [Mass/volume] in Serum or Plasma"}]},
                   "subject": {"reference": "urn:uuid:pat-81018"}, "encounter": {"reference": "urn:uuid:enc-81018"},
                   "effectiveDateTime": "2024-04-10T13:10:00Z",
                   "valueQuantity": {"value": 97, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                     "code": "mg/dL"}}
    # item 3: the lab patient sent by FHIR too (an SSN listed first), and a patient with only an SSN
    mr = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
    ssn = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
           "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-66-5555"}
    lab_patient = {"resourceType": "Patient", "id": "pat-81017", "meta": {"lastUpdated": "2024-04-10T12:00:00Z"},
                   "identifier": [ssn, {"type": mr, "system": "urn:oid:2.16.840.1.113883.3.999.9", "value": MRN}],
                   "gender": "female", "birthDate": "1968-03-01"}
    unkeyed = {"resourceType": "Patient", "id": "pat-nokey", "meta": {"lastUpdated": "2024-04-10T12:00:00Z"},
               "identifier": [{**ssn, "value": "999-44-3333"}], "gender": "male", "birthDate": "1977-07-07"}
    return [patient, practitioner, encounter, condition, study, observation, lab_patient, unkeyed]


def _key(value: str, namespace: str) -> str:
    key = pseudonym_py(value, KEY.encode(), namespace)
    assert key is not None
    return key


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("silver-identity")
    settings = new_lakehouse(tmp / "lh", pseudonym_key=KEY)
    files: list[Path] = []
    for name, text in MESSAGES.items():
        path = tmp / name
        path.write_bytes(text.encode())
        files.append(path)
    bundle = tmp / "identity_bundle.json"
    bundle.write_text(json.dumps(transaction_bundle(fhir_resources())))
    files.append(bundle)
    report = ingest_and_build_silver(settings, files)
    catalog = Catalog(spark, settings)  # type: ignore[arg-type]

    def rows(table: str) -> list[dict[str, Any]]:
        return [r.asDict() for r in catalog.read(f"silver.{table}").collect()]

    tables = {t: rows(t) for t in ("observation", "encounter", "condition", "practitioner", "imaging_study",
                                   "imaging_series", "patient")}
    quarantined = [r.asDict() for r in catalog.read("quarantine.silver_patient").collect()]
    yield {"report": report, "max_shift_days": settings.max_shift_days, **tables, "quarantined": quarantined,
           "hl7": [r for r in tables["observation"] if r["sources"] == ["hl7v2"]]}
    set_settings(None)


def _by_code(built: dict[str, Any], loinc: str) -> list[dict[str, Any]]:
    return [r for r in built["hl7"] if r["loinc_code"] == loinc]


def _one(built: dict[str, Any], loinc: str) -> dict[str, Any]:
    rows = _by_code(built, loinc)
    assert len(rows) == 1, (loinc, rows)
    return rows[0]


# -- item 5: result status ----------------------------------------------------------------------------------------
@slow
def test_preliminary_final_corrected_is_one_row_with_the_latest_version(built: dict[str, Any]) -> None:
    glucose = _one(built, "2345-7")
    assert (glucose["status"], glucose["value_num"], glucose["unit"]) == ("corrected", 108.0, "mg/dL")
    assert glucose["observation_key"] == _key(
        "result|" + "|".join([LAB_APP.upper(), LAB_FACILITY.upper(), "placer^ORD81001^EHR", "2345-7", "", "1"]),
        "observation")
    shift = timedelta(days=date_shift_days_py(glucose["patient_key"], KEY.encode(), built["max_shift_days"]))
    assert glucose["effective_at"] == datetime(2024, 4, 10, 13, 15) + shift  # 08:15 -05:00
    # lineage: the three messages that sent a version of it
    assert glucose["sources"] == ["hl7v2"] and len(glucose["bronze_hashes"]) == 3
    # potassium was not corrected: its final value, from the P and F messages
    potassium = _one(built, "2823-3")
    assert (potassium["status"], potassium["value_num"], len(potassium["bronze_hashes"])) == ("final", 4.2, 2)


@slow
def test_cancelled_and_deleted_results_keep_their_row_without_the_stale_value(built: dict[str, Any]) -> None:
    sodium = _one(built, "2951-2")
    assert (sodium["status"], sodium["value_num"], sodium["value_text"]) == ("cancelled", None, None)
    assert sodium["abnormal_flag"] is None and len(sodium["bronze_hashes"]) == 2
    chloride = _one(built, "2075-0")
    assert chloride["status"] == "entered-in-error"
    # an order cancelled in OBR-25 (X) cancels its result, although the OBX has no OBX-11 of its own
    calcium = _one(built, "17861-6")
    assert (calcium["status"], calcium["value_num"]) == ("cancelled", None)
    assert not any(r["status"] in ("preliminary", "final") for r in _by_code(built, "2951-2")
                   + _by_code(built, "17861-6"))


@slow
def test_control_id_collision_across_senders_keeps_both_results(built: dict[str, Any]) -> None:
    hemoglobin = _by_code(built, "718-7")
    assert sorted(r["value_num"] for r in hemoglobin) == [9.7, 13.1]
    assert len({r["observation_key"] for r in hemoglobin}) == 2
    assert all(r["status"] == "final" and len(r["bronze_hashes"]) == 1 for r in hemoglobin)
    # a result without any order number is keyed by its message and position
    albumin = _one(built, "1751-7")
    assert (albumin["status"], albumin["value_num"]) == ("final", 4.0)


@slow
def test_reconciliation_counts_distinct_results_and_reports_superseded(built: dict[str, Any]) -> None:
    report = built["report"]["observation"]
    # the FHIR observation is a row of its own (a different patient)
    assert (report["bronze_input"], report["silver"], report["quarantined"]) == (N_RESULTS + 1, N_RESULTS + 1, 0)
    assert report["superseded_results"] == N_OBX - N_RESULTS
    assert len(built["hl7"]) == N_RESULTS
    # every message landed (none lost to the control-id collision or to superseding)
    coverage = built["report"]["_coverage"]
    assert coverage["no_fact"] == 0 and coverage["superseded"] == 0


# -- item 4: per-element selection ----------------------------------------------------------------------------------
@slow
def test_visit_number_from_the_typed_identifier(built: dict[str, Any]) -> None:
    fhir = [e for e in built["encounter"] if "fhir" in e["sources"]]
    assert [e["encounter_key"] for e in fhir] == [_key(FHIR_VISIT_IDENTITY, "encounter")]
    assert (fhir[0]["type_code"], fhir[0]["type_system"], fhir[0]["type_display"]) == \
        ("185349003", SNOMED, "Encounter for check up")
    assert fhir[0]["practitioner_key"] == _key(NPI, "practitioner")
    (cond,) = built["condition"]
    assert cond["encounter_key"] == _key(FHIR_VISIT_IDENTITY, "encounter")


@slow
def test_icd10cm_code_from_its_coding(built: dict[str, Any]) -> None:
    (cond,) = built["condition"]
    assert (cond["code"], cond["code_system"], cond["icd10cm_code"], cond["snomed_code"]) == \
        ("E11.9", ICD10CM, "E11.9", "44054006")
    assert cond["display"] == "Type 2 diabetes mellitus without complications"
    assert cond["is_icd10cm_valid"] is True


@slow
def test_npi_from_the_npi_identifier(built: dict[str, Any]) -> None:
    assert [p["practitioner_key"] for p in built["practitioner"]] == [_key(NPI, "practitioner")]


@slow
def test_study_uid_from_the_dicom_identifier(built: dict[str, Any]) -> None:
    assert [s["imaging_study_key"] for s in built["imaging_study"]] == [_key(STUDY_UID, "dicom-uid")]
    (series,) = built["imaging_series"]
    assert (series["imaging_series_key"], series["imaging_study_key"]) == \
        (_key(SERIES_UID, "dicom-uid"), _key(STUDY_UID, "dicom-uid"))


@slow
def test_loinc_code_from_its_coding(built: dict[str, Any]) -> None:
    (obs,) = [r for r in built["observation"] if r["sources"] == ["fhir"]]
    assert (obs["loinc_code"], obs["code_original"], obs["value_num"], obs["status"]) == \
        ("2345-7", "2345-7", 97.0, "final")
    (cond,) = built["condition"]
    assert obs["patient_key"] == cond["patient_key"] and obs["encounter_key"] == _key(FHIR_VISIT_IDENTITY, "encounter")


@pytest.mark.parametrize(("view", "column", "expected"), [
    ("encounter", "visit_number", FHIR_VISIT),
    ("condition", "icd10cm_code", "E11.9"),
    ("condition", "snomed_code", "44054006"),
    ("condition", "code_code", "DM2-LOCAL"),
    ("condition", "code_system", None),
    ("practitioner", "npi", NPI),
    ("imaging_study", "study_uid", f"urn:oid:{STUDY_UID}"),
    ("observation", "loinc_code", "2345-7"),
    ("observation", "code_system", None),
])
def test_views_select_per_element(spark: Any, view: str, column: str, expected: str | None) -> None:
    resources = spark.createDataFrame(
        [(r["resourceType"], json.dumps(r), "h", "f") for r in fhir_resources()],
        "resource_type STRING, raw STRING, content_hash STRING, source_file STRING")
    (row,) = flatten(resources, view).select(column).collect()
    assert row[0] == expected


# -- item 3: identity by assigning authority ----------------------------------------------------------------------
@slow
def test_hl7_and_fhir_spellings_of_one_authority_are_one_patient(built: dict[str, Any]) -> None:
    rows = [p for p in built["patient"] if p["patient_key"] == _key(LAB_PATIENT, "patient")]
    assert len(rows) == 1 and sorted(rows[0]["sources"]) == ["fhir", "hl7v2"], rows
    # every lab result of the HL7 messages belongs to that patient
    assert {r["patient_key"] for r in built["hl7"]} == {_key(LAB_PATIENT, "patient")}


@slow
def test_records_without_a_usable_identifier_are_quarantined_with_the_reason(built: dict[str, Any]) -> None:
    """The HL7 A28 (an SSN and an account number) and the FHIR Patient (an SSN) are never keyed by them."""
    unkeyed = [q for q in built["quarantined"] if "no usable patient identifier" in (q["reason"] or "")]
    assert len(unkeyed) == 2, built["quarantined"]
    assert all(p["patient_key"] is not None for p in built["patient"])
    ssn_keys = {_key(v, "patient") for v in ("999887777", "USSSA|999887777", "999-44-3333",
                                              "http://hl7.org/fhir/sid/us-ssn|999-44-3333", "GENHOSP|A7712")}
    assert not ssn_keys & {p["patient_key"] for p in built["patient"]}
    assert built["report"]["patient"]["quarantined"] >= 2
