"""Immunizations (HL7 RXA of VXU, FHIR Immunization), pharmacy orders (HL7 RXE of RDE^O11/O25, FHIR
MedicationRequest) and dispenses (HL7 RXD of RDS^O13, FHIR MedicationDispense) in Silver.

Input: the VXU/RDE/RDS converter samples of ../shared (their MSH-10 made unique: the samples all reuse MSG00001,
which Silver rightly counts once), a hand-written CDC-guide VXU^V04 v2.5.1 pair (a dose given, a refusal, a
historical dose coded NDC + CVX that the second message deletes), a hand-written RDE^O11 + RDS^O13 pair and a
FHIR bundle of the same patient (the given dose, an order and its dispense). Silver is built once for the
module, facility time zone America/New_York.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import ingest_and_build_silver, new_lakehouse

from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from silver.deid import pseudonym_py

pytestmark = pytest.mark.slow

KEY = "medications-key-not-secret-0123456789abcdef"
SAMPLES = ("VXU-V04-01.hl7", "VXU-V04-02.hl7", "VXU.hl7", "IZ_1_1.1_Admin_Child_Max_Message.hl7",
           "RDE-O11-01.hl7", "RDE-O11-02.hl7", "RDE-O25-01.hl7", "RDE-O25-02.hl7", "RDS-O13-01.hl7",
           "RDS-O13-02.hl7")
MRN = "MRN-448812"  # the hand-written messages' patient
# its assigning authority: DCS, whose OID the HL7 HD (namespace&universal id&ISO) and the FHIR urn:oid: system share
DCS_OID = "2.16.840.1.113883.3.72.5.40.1"
PATIENT = f"{DCS_OID}|{MRN}"  # the patient's identity (silver.identity)

VXU_GIVEN = "\r".join([
    "MSH|^~\\&|MYEHR|DCS^2.16.840.1.113883.3.72.5.40.1^ISO|MYIIS|MYIIS|20240312110500||VXU^V04^VXU_V04|VXU-0001|P"
    "|2.5.1|||ER|AL|||||Z22^CDCPHINVS|DCS|MYIIS",
    "PID|1||MRN-448812^^^DCS&2.16.840.1.113883.3.72.5.40.1&ISO^MR||Rivera^Lucia^M^^^^L|Ortega^Ana^^^^^M|20230901|F||2106-3^White^CDCREC|"
    "12 Elm St^^Springfield^MA^01103^USA^P||^PRN^PH^^^413^5550142|||||||||2186-5^Not Hispanic^CDCREC",
    "PD1|||||||||||02^Reminder/Recall - any method^HL70215|N|20240312|||A|20240312|20240312",
    "NK1|1|Rivera^Marta^^^^^L|MTH^Mother^HL70063|12 Elm St^^Springfield^MA^01103^USA^P|^PRN^PH^^^413^5550142",
    "PV1|1|R|||||||||||||||||V-99120^^^DCS^VN",
    "ORC|RE|PL-5521^DCS|65930^DCS|||||||1234^Brown^Ann^^^^^^DCS^L||1467548321^Hart^Tom^^^^^^NPI^L",
    "RXA|0|1|20240312103000|20240312103000|20^DTaP^CVX|0.5|mL^milliliters^UCUM||00^New immunization record^NIP001"
    "|1234^Brown^Ann^^^^^^DCS^L|^^^DCS||||K4521AA|20250101|SKB^GlaxoSmithKline^MVX|||CP|A",
    "RXR|C28161^Intramuscular^NCIT|RT^Right Thigh^HL70163",
    "OBX|1|CE|64994-7^Vaccine funding program eligibility category^LN|1|V02^VFC eligible - Medicaid^HL70064||||||F"
    "|||20240312|||VXC40^Eligibility captured at the immunization level^CDCPHINVS",
    "ORC|RE||9999^CDC",
    "RXA|0|1|20240312|20240312|03^MMR^CVX|999||||||||||||00^Parental decision^NIP002||RE",
    "ORC|RE||65931^DCS",
    "RXA|0|1|20231020|20231020|49281-0400-10^Tdap^NDC^115^Tdap^CVX|999|||01^Historical information^NIP001"
    "|||||||||||CP|A",
]) + "\r"
VXU_DELETE = "\r".join([
    "MSH|^~\\&|MYEHR|DCS^2.16.840.1.113883.3.72.5.40.1^ISO|MYIIS|MYIIS|20240313090000||VXU^V04^VXU_V04|VXU-0002|P"
    "|2.5.1|||ER|AL|||||Z22^CDCPHINVS|DCS|MYIIS",
    "PID|1||MRN-448812^^^DCS&2.16.840.1.113883.3.72.5.40.1&ISO^MR||Rivera^Lucia^M^^^^L||20230901|F",
    "ORC|RE||65931^DCS",
    "RXA|0|1|20231020|20231020|49281-0400-10^Tdap^NDC^115^Tdap^CVX|999|||01^Historical information^NIP001"
    "|||||||||||CP|D",
]) + "\r"
RDE = "\r".join([
    "MSH|^~\\&|CPOE|DCS|PHARM|DCS|20240312121500-0400||RDE^O11^RDE_O11|RDE-0001|P|2.5.1",
    "PID|1||MRN-448812^^^DCS&2.16.840.1.113883.3.72.5.40.1&ISO^MR||Rivera^Lucia^M^^^^L||20230901|F",
    "PV1|1|O|PED^101^1^DCS||||||||||||||||V-99120^^^DCS^VN",
    "ORC|NW|ORD-7001^CPOE|||IP||||20240312121000-0400|||1467548321^Hart^Tom^^^^^^NPI^L",
    "RXE|^^^20240312^^R|308182^amoxicillin 250 MG Oral Capsule^RXNORM|250||mg^milligram^UCUM|CAP^capsule|"
    "^Give 250 mg by mouth three times daily; call Lucia Rivera at 413-555-0142 if rash|||30|CAP^capsule|0",
    "RXR|PO^Oral^HL70162",
    "ORC|NW|ORD-7002^CPOE|||HD||||20240312121000-0400|||1467548321^Hart^Tom^^^^^^NPI^L",
    "RXE||LISI10^lisinopril 10 mg tab^L|10||mg^milligram^UCUM",
]) + "\r"
RDS = "\r".join([
    "MSH|^~\\&|PHARM|DCS|CPOE|DCS|20240312150000||RDS^O13^RDS_O13|RDS-0001|P|2.5.1",
    "PID|1||MRN-448812^^^DCS&2.16.840.1.113883.3.72.5.40.1&ISO^MR||Rivera^Lucia^M^^^^L||20230901|F",
    "ORC|RE|ORD-7001^CPOE|F-88^PHARM|||||||||1467548321^Hart^Tom^^^^^^NPI^L",
    "RXE||308182^amoxicillin 250 MG Oral Capsule^RXNORM|250||mg^milligram^UCUM",
    "RXD|1|308182^amoxicillin 250 MG Oral Capsule^RXNORM|20240312144500|30|CAP^capsule||RX-99001",
    "RXR|PO^Oral^HL70162",
]) + "\r"
BUNDLE = {
    "resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "pat-lucia", "gender": "female", "birthDate": "2023-09-01",
                      "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                           "code": "MR"}]},
                                      "system": "urn:oid:2.16.840.1.113883.3.72.5.40.1", "value": MRN}]}},
        # the DTaP dose of the VXU's record 65930 (2024-03-12 10:30 New York, EDT: 14:30 UTC) as the EHR's FHIR
        # API reports it
        {"resource": {"resourceType": "Immunization", "id": "imm-dtap", "status": "completed",
                      "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "20",
                                                  "display": "DTaP"}]},
                      "patient": {"reference": "Patient/pat-lucia"},
                      "occurrenceDateTime": "2024-03-12T10:30:00-04:00"}},
        {"resource": {"resourceType": "MedicationRequest", "id": "mr-lisinopril", "status": "active",
                      "intent": "order", "subject": {"reference": "Patient/pat-lucia"},
                      "medicationCodeableConcept": {"coding": [{
                          "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076",
                          "display": "lisinopril 10 MG Oral Tablet"}]},
                      "authoredOn": "2024-03-01T09:00:00Z"}},
        {"resource": {"resourceType": "MedicationDispense", "id": "md-lisinopril", "status": "completed",
                      "subject": {"reference": "Patient/pat-lucia"},
                      "authorizingPrescription": [{"reference": "MedicationRequest/mr-lisinopril"}],
                      "medicationCodeableConcept": {"coding": [{
                          "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076",
                          "display": "lisinopril 10 MG Oral Tablet"}]},
                      "quantity": {"value": 30, "unit": "tablet"},
                      "whenHandedOver": "2024-03-02T16:20:00+01:00"}},
    ]}


def _segments(paths: list[Path], segment_id: str, message_type: str | None = None) -> int:
    """The number of ``segment_id`` segments (in messages of ``message_type``), read straight from the files."""
    n = 0
    for p in paths:
        segs = p.read_text(encoding="utf-8-sig").replace("\r\n", "\r").replace("\n", "\r").split("\r")
        msh = segs[0].split("|")
        if message_type is None or msh[8].split("^")[0] == message_type:
            n += sum(1 for seg in segs if seg.startswith(segment_id + "|"))
    return n


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object, fixtures_dir: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("silver-medications")
    inputs = tmp / "in"
    inputs.mkdir()
    paths = []
    for name in SAMPLES:
        text = (fixtures_dir / "hl7v2-converter-samples" / name).read_text(encoding="utf-8-sig")
        # MSH-10 := the file name (the samples share MSG00001; one control id counts once)
        text = text.replace("|MSG00001|", f"|{Path(name).stem}|", 1)
        out = inputs / name
        out.write_text(text, encoding="utf-8")
        paths.append(out)
    for name, text in (("vxu-given.hl7", VXU_GIVEN), ("vxu-delete.hl7", VXU_DELETE), ("rde.hl7", RDE),
                       ("rds.hl7", RDS)):
        (inputs / name).write_bytes(text.encode())
        paths.append(inputs / name)
    bundle = inputs / "lucia.json"
    bundle.write_text(json.dumps(BUNDLE))
    settings = new_lakehouse(tmp / "lh", pseudonym_key=KEY, facility_timezone="America/New_York")
    report = ingest_and_build_silver(settings, [*paths, bundle])
    catalog = Catalog(spark, settings)  # type: ignore[arg-type]
    tables = {t: [r.asDict() for r in catalog.read(f"silver.{t}").collect()]
              for t in ("immunization", "medication_request", "medication_dispense")}
    yield {"report": report, "tables": tables, "paths": paths}
    set_settings(None)


def _key(value: str, namespace: str) -> str:
    return pseudonym_py(value, KEY.encode(), namespace)  # type: ignore[return-value]


def _by_key(rows: list[dict[str, Any]], key_col: str) -> dict[str, dict[str, Any]]:
    return {r[key_col]: r for r in rows}


def test_reconciliation_counts_segments_read_from_the_files(built: dict[str, Any]) -> None:
    report, paths = built["report"], built["paths"]
    n_rxa, n_rxe, n_rxd = _segments(paths, "RXA"), _segments(paths, "RXE", "RDE"), _segments(paths, "RXD")
    assert (n_rxa, n_rxe, n_rxd) == (12, 8, 4)
    # one FHIR Immunization; folded: record 13696 of PATID1234 (VXU-V04-01 and -02), 65931 (given, then
    # deleted), and the HL7 DTaP into its FHIR twin
    imm = report["immunization"]
    assert imm["bronze_input"] == 1 + n_rxa - 3
    # one FHIR MedicationRequest; order 1163422591^EPC of PATID1234 is in four RDE samples, 1422591^EPC in two
    mr = report["medication_request"]
    assert mr["bronze_input"] == 1 + n_rxe - 3 - 1
    # one FHIR MedicationDispense; RDS-O13-01's RXD is re-sent in RDS-O13-02
    md = report["medication_dispense"]
    assert md["bronze_input"] == 1 + n_rxd - 1
    for counts in (imm, mr, md):
        assert counts["silver"] + counts["quarantined"] == counts["bronze_input"] and counts["quarantined"] == 0
    assert len(built["tables"]["immunization"]) == imm["silver"] == 10


def test_vxu_rxa_rows(built: dict[str, Any]) -> None:
    rows = built["tables"]["immunization"]
    hl7 = [r for r in rows if r["sources"] == ["hl7v2"]]
    by_key = _by_key(rows, "immunization_key")
    # IZ_1_1: CVX 140 on 2012-08-14, record IZ-783274^NDA
    iz = by_key[_key("vaccination|NIST MPI|D26376273|IZ-783274|NDA", "immunization")]
    assert iz["patient_key"] == _key("NIST MPI|D26376273", "patient")
    assert (iz["cvx_code"], iz["display"], iz["status"]) == (
        "140", "Influenza, seasonal, injectable, preservative free", "completed")
    assert (iz["dose_quantity"], iz["dose_unit"], iz["route"]) == (0.5, "mL", "Intramuscular")
    assert (iz["code_original"], iz["code_system_original"]) == ("140", "http://hl7.org/fhir/sid/cvx")
    # VXU.hl7 (patient 90012): TENIVAC by NDC only -> no CVX code, the NDC kept; two CVX 88 historical doses
    wong = sorted((r for r in hl7 if r["patient_key"] == _key("NIST-MPI-1|90012", "patient")),
                  key=lambda r: r["code_original"])
    assert [(r["code_original"], r["cvx_code"]) for r in wong] == [
        ("49281-0215-88", None), ("88", "88"), ("88", "88")]
    tenivac = wong[0]
    assert tenivac["code_system_original"] == "http://hl7.org/fhir/sid/ndc" and tenivac["display"] == "TENIVAC"
    assert tenivac["route"] == "Intramuscular" and tenivac["dose_quantity"] == 0.5
    assert [r["dose_quantity"] for r in wong[1:]] == [None, None]  # RXA-6 999 = amount unknown
    assert [r["route"] for r in wong[1:]] == [None, None]  # no RXR: not the previous group's
    # VXU-V04-01 and -02 carry record 13696 of PATID1234 twice: one row, both messages in its lineage
    patid = [r for r in hl7 if r["patient_key"] == _key("2.16.1|PATID1234", "patient")]
    assert len(patid) == 3
    rec = by_key[_key("vaccination|2.16.1|PATID1234|13696|NIST-AA-IZ-2", "immunization")]
    assert len(rec["bronze_hashes"]) == 2 and rec["code_original"] == "49281021588"


def test_handwritten_vxu_statuses_and_fhir_pair(built: dict[str, Any]) -> None:
    rows = built["tables"]["immunization"]
    mine = {r["cvx_code"]: r for r in rows if r["patient_key"] == _key(PATIENT, "patient")}
    assert sorted(mine) == ["03", "115", "20"]
    # DTaP in the VXU and in FHIR (same patient, CVX, instant): one row, the FHIR key, both sources
    dtap = mine["20"]
    assert dtap["immunization_key"] == _key("imm-dtap", "immunization")
    assert dtap["sources"] == ["fhir", "hl7v2"] and len(dtap["bronze_hashes"]) == 2
    assert dtap["status"] == "completed"
    # refusal (RXA-20 RE; ORC-3 9999 = no record id, so keyed by its message and segment): not-done
    refused = mine["03"]
    assert refused["immunization_key"] == _key("rxa|MYEHR|DCS|VXU-0001|10", "immunization")
    assert refused["status"] == "not-done" and refused["dose_quantity"] is None
    assert refused["encounter_key"] == _key("DCS|V-99120", "encounter")
    # historical Tdap sent as NDC with CVX 115 as the alternate coding, deleted (RXA-21 D) by the next message:
    # one row, entered-in-error, both messages in its lineage
    tdap = mine["115"]
    assert tdap["immunization_key"] == _key(f"vaccination|{PATIENT}|65931|DCS", "immunization")
    assert (tdap["code_original"], tdap["display"], tdap["status"]) == ("49281-0400-10", "Tdap", "entered-in-error")
    assert len(tdap["bronze_hashes"]) == 2 and tdap["encounter_key"] is None  # the deleting message has no PV1


def test_rde_rxe_rows(built: dict[str, Any]) -> None:
    rows = _by_key(built["tables"]["medication_request"], "medication_request_key")
    amox = rows[_key(f"order|{PATIENT}|P|ORD-7001^CPOE", "medication_request")]
    assert amox["patient_key"] == _key(PATIENT, "patient") and amox["encounter_key"] == _key("DCS|V-99120", "encounter")
    assert (amox["rxnorm_code"], amox["is_mapped"], amox["status"], amox["intent"]) == (
        "308182", True, "active", "order")
    assert amox["practitioner_key"] == _key("1467548321", "practitioner")
    assert amox["route"] == "Oral" and amox["sources"] == ["hl7v2"]
    # free text: the patient's name and phone are scrubbed from the instructions
    assert "Give 250 mg by mouth three times daily" in amox["dosage_text"]
    assert "Rivera" not in amox["dosage_text"] and "555-0142" not in amox["dosage_text"]
    held = rows[_key(f"order|{PATIENT}|P|ORD-7002^CPOE", "medication_request")]
    # a local formulary code mapped through medication_to_rxnorm.csv; ORC-5 HD -> on-hold
    assert (held["rxnorm_code"], held["code_original"], held["status"]) == ("314076", "LISI10", "on-hold")
    # converter samples: two orders of PATID1234, NDC-coded, status from ORC-1 NW
    patid = [r for r in rows.values() if r["patient_key"] == _key("2.16.1|PATID1234", "patient")]
    assert sorted(r["code_original"] for r in patid) == ["0143963401", "2669"]
    assert {r["status"] for r in patid} == {"active"}
    nicardipine = rows[_key("order|2.16.1|PATID1234|P|1163422591^EPC", "medication_request")]
    assert len(nicardipine["bronze_hashes"]) == 4 and nicardipine["route"] == "Intravenous"
    # the FHIR order of the bundle is still there
    fhir = rows[_key("mr-lisinopril", "medication_request")]
    assert fhir["rxnorm_code"] == "314076" and fhir["sources"] == ["fhir"]
    assert len(rows) == 5


def test_rds_rxd_rows(built: dict[str, Any]) -> None:
    rows = _by_key(built["tables"]["medication_dispense"], "medication_dispense_key")
    amox = rows[_key(f"dispense|{PATIENT}|RX-99001|1|308182", "medication_dispense")]
    assert amox["patient_key"] == _key(PATIENT, "patient")
    # linked to the RDE order through the ORC placer number
    assert amox["medication_request_key"] == _key(f"order|{PATIENT}|P|ORD-7001^CPOE", "medication_request")
    assert (amox["rxnorm_code"], amox["status"], amox["quantity"], amox["quantity_unit"]) == (
        "308182", "completed", 30.0, "capsule")
    samples = [r for r in rows.values() if r["patient_key"] == _key("2.16.1|PATID1234", "patient")]
    assert sorted(r["code_original"] for r in samples) == ["01151327", "308191"]
    assert {r["medication_request_key"] for r in samples} == {
        _key("order|2.16.1|PATID1234|P|1163422591^EPC", "medication_request")}
    doxy = next(r for r in samples if r["code_original"] == "01151327")
    assert len(doxy["bronze_hashes"]) == 2 and doxy["is_mapped"] is False and doxy["quantity_unit"] == "Tablet"
    amoxicillin = next(r for r in samples if r["code_original"] == "308191")
    assert amoxicillin["rxnorm_code"] == "308191" and amoxicillin["display"] == "amoxicillin 500 MG Oral Capsule"
    fhir = rows[_key("md-lisinopril", "medication_dispense")]
    assert fhir["medication_request_key"] == _key("mr-lisinopril", "medication_request")
    assert (fhir["rxnorm_code"], fhir["quantity"], fhir["quantity_unit"], fhir["status"]) == (
        "314076", 30.0, "tablet", "completed")
    assert len(rows) == 4


def test_times_are_utc(built: dict[str, Any]) -> None:
    """The date policy shifts each patient's dates by whole days: the UTC time of day and the time between two
    events of one patient are what the source said."""
    imm = {r["cvx_code"]: r["occurrence_at"] for r in built["tables"]["immunization"]
           if r["patient_key"] == _key(PATIENT, "patient")}
    # RXA-3 2024-03-12 (New York, EDT) -> 04:00 UTC; 10:30 local -> 14:30 UTC; 2023-10-20 (EDT) -> 04:00 UTC
    assert (imm["03"].hour, imm["03"].minute) == (4, 0) and (imm["20"].hour, imm["20"].minute) == (14, 30)
    assert (imm["20"] - imm["03"]).total_seconds() == 10.5 * 3600
    assert (imm["03"] - imm["115"]).days == (datetime(2024, 3, 12) - datetime(2023, 10, 20)).days
    iz = next(r for r in built["tables"]["immunization"] if r["cvx_code"] == "140")["occurrence_at"]
    assert (iz.hour, iz.minute) == (4, 0)  # 2012-08-14, EDT
    req = _by_key(built["tables"]["medication_request"], "medication_request_key")
    authored = req[_key(f"order|{PATIENT}|P|ORD-7001^CPOE", "medication_request")]["authored_at"]
    assert (authored.hour, authored.minute) == (16, 10)  # ORC-9 12:10 -0400 (its own offset)
    disp = _by_key(built["tables"]["medication_dispense"], "medication_dispense_key")
    handed = disp[_key(f"dispense|{PATIENT}|RX-99001|1|308182", "medication_dispense")]["dispensed_at"]
    assert (handed.hour, handed.minute) == (18, 45)  # RXD-3 14:45 New York (EDT)
    assert (handed - authored).total_seconds() == 2 * 3600 + 35 * 60
    doxy = next(r for r in disp.values() if r["code_original"] == "01151327")["dispensed_at"]
    assert (doxy.hour, doxy.minute) == (5, 0)  # RXD-3 2020-12-12, EST
    fhir = disp[_key("md-lisinopril", "medication_dispense")]["dispensed_at"]
    assert (fhir.hour, fhir.minute) == (15, 20)  # 16:20+01:00
