"""silver.service_request (HL7 ORM/OML/OMG orders, FHIR ServiceRequest) and silver.document (HL7 MDM, FHIR
DocumentReference): one Silver build over hand-written messages and the converter samples of ../shared."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import ingest_and_build_silver, new_lakehouse, transaction_bundle

from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from silver import document
from silver.common import Deid, latest_fhir, latest_messages, segments
from silver.deid import engine_key, pseudonym_py
from silver.deid.dates import date_shift_days_py
from silver.patient import hl7_known_identifiers, known_by_patient

pytestmark = pytest.mark.slow

KEY = "orders-docs-key-not-secret-0123456789abcdef"
ZONE = "America/New_York"  # EDT (UTC-4) from 8 March 2026
MRN = "MRN-448812"
FHIR_MRN = "FH-20931"
# the identities (silver.identity): each MRN qualified by its assigning authority (HL7 CX.4, FHIR system)
PATIENT, FHIR_PATIENT_IDENTITY = f"NORTHSIDE_HOSP|{MRN}", f"2.16.840.1.113883.19.5|{FHIR_MRN}"
VISIT = "NORTHSIDE_HOSP|V20260310-01"
FHIR_PATIENT = "5d2f7a1e-3c4b-4e8f-9a61-2b7c9d0e1f23"
PLANTED_NAMES = ("Fairweather", "Eleanor", "Harriet", "Quill")
SAMPLES = ("ORM-O01-0*.hl7", "OML-O21-0*.hl7", "OMG-O19-0*.hl7", "LAB-ORM-1.hl7", "MDHHS-OML-O21-*.hl7",
           "MDM-T0*.hl7", "MDM-T1*.hl7", "MDM_01.hl7")


def _seg(name: str, fields: dict[int, str]) -> str:
    """A segment with ``fields`` at their HL7 positions (1-based), the others empty."""
    values = [""] * max(fields)
    for n, v in fields.items():
        values[n - 1] = v
    return "|".join([name, *values])


def _msh(sent: str, message_type: str, control_id: str, app: str = "EPIC_ORD") -> str:
    return f"MSH|^~\\&|{app}|NORTHSIDE_HOSP|LAKEHOUSE|NORTHSIDE_HOSP|{sent}||{message_type}|{control_id}|P|2.5.1"


PID = _seg("PID", {1: "1", 3: f"{MRN}^^^NORTHSIDE_HOSP^MR", 5: "Fairweather^Eleanor^J", 7: "19580214", 8: "F",
                   11: "12 Elm Street^^Springfield^IL^62704^USA"})
PV1 = _seg("PV1", {1: "1", 2: "O", 3: "LAB^^^NORTHSIDE_HOSP", 19: "V20260310-01^^^NORTHSIDE_HOSP^VN"})
PROVIDER = "1234567890^Welby^Marcus^^^Dr^^^NPI"
GLUCOSE = "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN"


def _orders() -> dict[str, str]:
    new = [_msh("20260310083000", "ORM^O01^ORM_O01", "ORD-NW-0001"), PID, PV1,
           _seg("ORC", {1: "NW", 2: "PL-7781^EPIC_ORD", 7: "^^^20260310090000^^S", 9: "20260310083000",
                        12: PROVIDER}),
           _seg("TQ1", {1: "1", 7: "20260310090000", 9: "S^Stat^HL70485"}),
           _seg("OBR", {1: "1", 2: "PL-7781^EPIC_ORD", 4: GLUCOSE, 6: "20260310090000", 16: PROVIDER}),
           _seg("DG1", {1: "1", 3: "E11.9^Type 2 diabetes mellitus without complications^I10", 6: "W"}),
           # a pharmacy order in the same message: a medication order, not a service request
           _seg("ORC", {1: "NW", 2: "RX-5521^EPIC_ORD", 9: "20260310083000", 12: PROVIDER}),
           _seg("RXO", {1: "860975^Metformin 500 MG Oral Tablet^RXNORM", 2: "500", 4: "mg"})]
    cancel = [_msh("20260310101500", "ORM^O01^ORM_O01", "ORD-CA-0001"), PID, PV1,
              _seg("ORC", {1: "CA", 2: "PL-7781^EPIC_ORD", 9: "20260310101500", 12: PROVIDER}),
              _seg("OBR", {1: "1", 2: "PL-7781^EPIC_ORD", 4: GLUCOSE})]
    return {"orm_new.hl7": "\r".join(new) + "\r", "orm_cancel.hl7": "\r".join(cancel) + "\r"}


def _mdm(sent: str, event: str, control_id: str, number: str, completion: str, lines: list[tuple[str, str]]) -> str:
    segments = [_msh(sent, f"MDM^{event}^MDM_{'T02' if event != 'T11' else 'T01'}", control_id, "DICTATION"),
                f"EVN|{event}|{sent}", PID, PV1,
                _seg("TXA", {1: "1", 2: "PN", 3: "TX", 4: "20260311143000-0400", 5: PROVIDER,
                             6: "20260311144500-0400", 9: PROVIDER, 12: f"{number}^NORTHSIDE_DOCS", 17: completion,
                             19: "AV"})]
    segments += [_seg("OBX", {1: str(i), 2: vtype, 3: "11506-3^Progress note^LN", 4: str(i), 5: text, 11: "F"})
                 for i, (vtype, text) in enumerate(lines, 1)]
    return "\r".join(segments) + "\r"


SEEN = ("TX", "Eleanor Fairweather was seen today for follow-up of type 2 diabetes.")


def _documents() -> dict[str, str]:
    return {
        "mdm_t02.hl7": _mdm("20260311150000", "T02", "DOC-MSG-0001", "DOC-55012", "AU",
                            [SEEN, ("TX", "Glucose this morning 182 mg/dL. Plan: increase metformin.")]),
        "mdm_t08.hl7": _mdm("20260312091000", "T08", "DOC-MSG-0002", "DOC-55012", "LA",
                            [SEEN, ("TX", "Glucose this morning 182 mg/dL. Plan: metformin twice daily."),
                             ("FT", r"Mrs. Fairweather agrees\.br\Recheck A1c \T\ lipids in 3 months.")]),
        "mdm_other_t02.hl7": _mdm("20260311160000", "T02", "DOC-MSG-0003", "DOC-55013", "DO",
                                  [("TX", "Dictated in error for this visit.")]),
        "mdm_other_t11.hl7": _mdm("20260311163000", "T11", "DOC-MSG-0004", "DOC-55013", "DO", []),
    }


def _bundle() -> dict[str, Any]:
    subject = {"reference": f"urn:uuid:{FHIR_PATIENT}"}
    text = base64.b64encode(b"Harriet Quill reports improved energy. HbA1c ordered.").decode()
    resources = [
        {"resourceType": "Patient", "id": FHIR_PATIENT, "gender": "female", "birthDate": "1971-05-02",
         "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                              "code": "MR"}]}, "system": "urn:oid:2.16.840.1.113883.19.5",
                         "value": FHIR_MRN}],
         "name": [{"family": "Quill", "given": ["Harriet"]}]},
        {"resourceType": "ServiceRequest", "id": "sr-1001", "status": "active", "intent": "order",
         "priority": "routine", "subject": subject, "authoredOn": "2026-03-12T09:00:00-05:00",
         "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4",
                              "display": "Hemoglobin A1c/Hemoglobin.total in Blood"}]},
         "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}]},
        {"resourceType": "DocumentReference", "id": "dr-2001", "status": "current", "docStatus": "final",
         "subject": subject, "date": "2026-03-12T10:15:00-05:00",
         "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
         "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/"
                                             "us-core-documentreference-category", "code": "clinical-note"}]}],
         "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/pdf-1"}},
                     {"attachment": {"contentType": "text/plain; charset=utf-8", "data": text}}]},
    ]
    return transaction_bundle(resources)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object, fixtures_dir: Path) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("silver-orders-docs")
    settings = new_lakehouse(base / "lh", pseudonym_key=KEY, facility_timezone=ZONE)
    written = base / "input"
    written.mkdir()
    for name, text in {**_orders(), **_documents()}.items():
        (written / name).write_text(text)
    (written / "bundle.json").write_text(json.dumps(_bundle()))
    samples = sorted({p for pattern in SAMPLES for p in (fixtures_dir / "hl7v2-converter-samples").glob(pattern)})
    assert len(samples) >= 25, samples
    # the hl7apy samples of the same message types (OML^O33 with SPM specimen groups)
    samples += sorted(p for p in (fixtures_dir / "hl7v2").rglob("*.hl7")
                      if any(f"|{t}^" in p.read_text(errors="replace") for t in ("ORM", "OML", "OMG", "MDM")))
    assert len(samples) >= 30, samples
    report = ingest_and_build_silver(settings, [*sorted(written.iterdir()), *samples])
    catalog = Catalog(spark, settings)  # type: ignore[arg-type]
    yield {"settings": settings, "catalog": catalog, "report": report,
           "orders": {r["service_request_key"]: r.asDict() for r in catalog.read("silver.service_request").collect()},
           "documents": {r["document_key"]: r.asDict() for r in catalog.read("silver.document").collect()}}
    set_settings(None)


def _key(value: str, namespace: str) -> str:
    out = pseudonym_py(value, KEY.encode(), namespace)
    assert out is not None
    return out


def _shifted(utc: datetime, patient: str) -> datetime:
    """The published time of an event at ``utc`` of the patient with identity ``patient`` (the date policy's
    shift)."""
    return utc + timedelta(days=date_shift_days_py(_key(patient, "patient"), KEY.encode(), 365))


def test_cancel_updates_the_same_order(built: dict[str, Any]) -> None:
    row = built["orders"][_key("placer^PL-7781^EPIC_ORD", "service_request")]
    assert row["patient_key"] == _key(PATIENT, "patient")
    assert row["encounter_key"] == _key(VISIT, "encounter")
    assert (row["code"], row["code_system"], row["loinc_code"]) == ("2345-7", "http://loinc.org", "2345-7")
    assert row["display"] == "Glucose [Mass/volume] in Serum or Plasma"
    # the CA (cancel) message came later: status revoked, its control code; priority (only in the NW) kept
    assert (row["status"], row["order_control"], row["intent"], row["priority"]) == ("revoked", "CA", "order", "stat")
    # ordered when placed (NW ORC-9 08:30 EDT), not when cancelled
    assert row["ordered_at"] == _shifted(datetime(2026, 3, 10, 12, 30), PATIENT)
    assert row["practitioner_key"] == _key("1234567890", "practitioner")
    assert (row["reason_code"], row["reason_system"]) == ("E11.9", "http://hl7.org/fhir/sid/icd-10-cm")
    assert sorted(row["sources"]) == ["hl7v2"] and len(row["bronze_hashes"]) == 2


def test_converter_sample_orders(built: dict[str, Any]) -> None:
    orders = built["orders"]
    lab = orders[_key("placer^88502218^", "service_request")]  # LAB-ORM-1: ORC-5 'NW' is no status -> ORC-1
    # PID-3 10006579^^^1^MR^1, PV1-19 40007716^^^AccMgr^VN: authorities 1 and AccMgr
    assert (lab["patient_key"], lab["encounter_key"]) == (_key("1|10006579", "patient"),
                                                          _key("AccMgr|40007716", "encounter"))
    assert (lab["loinc_code"], lab["status"], lab["order_control"]) == ("24317-0", "active", "NW")
    assert lab["ordered_at"] == _shifted(datetime(2014, 10, 6, 13, 29), "1|10006579")  # 09:29 EDT
    # MDHHS: an ORC-less OBR (file 1) and an ORC with two OBRs (file 2) of one placer number are one order
    mdhhs = orders[_key("placer^ORD723222^2.16.840.1.113883.3.72.5.24", "service_request")]
    assert mdhhs["patient_key"] == _key("|MRNTC14", "patient") and len(mdhhs["bronze_hashes"]) == 2
    assert (mdhhs["code"], mdhhs["status"], mdhhs["practitioner_key"]) == (
        "1320", "active", _key("8075000001", "practitioner"))
    assert mdhhs["ordered_at"] == _shifted(datetime(2016, 2, 23, 14, 37, 5), "|MRNTC14")
    statuses = {r["status"] for r in orders.values()}
    assert statuses <= {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
    # neither a pharmacy order (RXO) nor the ORC of an MDM message is a service request
    assert _key("placer^RX-5521^EPIC_ORD", "service_request") not in orders
    assert _key("placer^00012345^", "service_request") not in orders


def test_fhir_service_request(built: dict[str, Any]) -> None:
    row = built["orders"][_key("sr-1001", "service_request")]
    assert row["patient_key"] == _key(FHIR_PATIENT_IDENTITY, "patient")
    assert (row["loinc_code"], row["status"], row["intent"], row["priority"]) == ("4548-4", "active", "order",
                                                                                  "routine")
    assert row["ordered_at"] == _shifted(datetime(2026, 3, 12, 14, 0), FHIR_PATIENT_IDENTITY)
    assert (row["reason_code"], row["reason_system"]) == ("44054006", "http://snomed.info/sct")
    assert row["sources"] == ["fhir"] and row["order_control"] is None


def test_edited_document_is_one_row_scrubbed(built: dict[str, Any]) -> None:
    row = built["documents"][_key("document^DOC-55012^NORTHSIDE_DOCS", "document")]
    assert row["patient_key"] == _key(PATIENT, "patient")
    assert row["encounter_key"] == _key(VISIT, "encounter")
    assert (row["type_code"], row["type_system"]) == ("PN", "http://terminology.hl7.org/CodeSystem/v2-0270")
    # T08 edit of a legally authenticated document: amended, still the current version
    assert (row["status"], row["doc_status"], row["last_event"]) == ("current", "amended", "T08")
    assert row["documented_at"] == _shifted(datetime(2026, 3, 11, 18, 30), PATIENT)
    assert row["content_type"] == "text/plain" and row["practitioner_key"] == _key("1234567890", "practitioner")
    text = row["text"]
    assert text.splitlines()[1] == "Glucose this morning 182 mg/dL. Plan: metformin twice daily."  # the edit
    assert text.splitlines()[3] == "Recheck A1c & lipids in 3 months."  # FT escapes decoded, one line per break
    assert "[NAME]" in text and not any(n in text for n in PLANTED_NAMES), text
    assert len(row["bronze_hashes"]) == 2


def test_cancelled_document_is_entered_in_error(built: dict[str, Any]) -> None:
    row = built["documents"][_key("document^DOC-55013^NORTHSIDE_DOCS", "document")]
    assert (row["status"], row["doc_status"], row["last_event"]) == ("entered-in-error", "entered-in-error", "T11")
    assert row["text"] == "Dictated in error for this visit."  # kept from the T02; the T11 carries none


def test_converter_sample_document(built: dict[str, Any]) -> None:
    row = built["documents"][_key("document^2RWRVAJ627408^", "document")]  # MDM-T02-03
    assert row["patient_key"] == _key("SIMULATOR MRN|3196695816", "patient")
    assert (row["type_code"], row["status"], row["doc_status"]) == ("DS", "current", "preliminary")
    # 09:06:42 +0215
    assert row["documented_at"] == _shifted(datetime(2021, 8, 1, 6, 51, 42), "SIMULATOR MRN|3196695816")
    lines = row["text"].splitlines()
    assert len(lines) == 29 and lines[2] == "Taxicab creator film therapist shelter"  # one line per OBX


def test_fhir_document_reference(built: dict[str, Any]) -> None:
    row = built["documents"][_key("dr-2001", "document")]
    assert row["patient_key"] == _key(FHIR_PATIENT_IDENTITY, "patient")
    assert (row["type_code"], row["type_system"], row["category"]) == ("11506-3", "http://loinc.org",
                                                                       "clinical-note")
    assert (row["status"], row["doc_status"]) == ("current", "final")
    assert row["documented_at"] == _shifted(datetime(2026, 3, 12, 15, 15), FHIR_PATIENT_IDENTITY)
    # the text/plain attachment, not the first (a PDF by URL), decoded from base64 and scrubbed
    assert row["content_type"] == "text/plain; charset=utf-8"
    assert row["text"] == "[NAME] [NAME] reports improved energy. HbA1c ordered."


def test_reconciliation(built: dict[str, Any]) -> None:
    for table in ("service_request", "document"):
        counts = built["report"][table]
        assert counts["silver"] + counts["quarantined"] == counts["bronze_input"], (table, counts)
    assert built["report"]["document"]["quarantined"] == 0
    # the only orders quarantined are samples ordered in the year 2120 (ORM-O01-05 ORC-9), if that one survives
    # the deduplication of the samples' shared control ids
    if built["report"]["service_request"]["quarantined"]:
        rejected = built["catalog"].read("quarantine.silver_service_request").collect()
        assert {r["failed_rule"] for r in rejected} == {"service_request.ordered_at_not_in_future"}
        assert all("ordered_at=2120-" in r["reason"] for r in rejected)
    assert built["report"]["service_request"]["silver"] == len(built["orders"])
    assert built["report"]["document"]["silver"] == len(built["documents"])


def test_text_excluded_when_configured(built: dict[str, Any]) -> None:
    """documents_text=exclude: the transform stores no text at all, from HL7 or FHIR."""
    catalog, settings = built["catalog"], built["settings"]
    deid = Deid(key=engine_key(settings), facility_timezone=ZONE, documents_text="exclude")
    segs = segments(latest_messages(catalog.read("bronze.hl7v2_messages")), deid)
    known = known_by_patient([hl7_known_identifiers(segs, deid)])
    resources = latest_fhir(catalog.read("bronze.fhir_resources"))
    empty = resources.limit(0).selectExpr("CAST(NULL AS STRING) AS fhir_id", "CAST(NULL AS STRING) AS patient_key")
    hl7 = document.hl7_documents(segs, known, deid).collect()
    fhir = document.fhir_documents(resources, empty, empty.withColumnRenamed("patient_key", "encounter_key"),
                                   empty.withColumnRenamed("patient_key", "practitioner_key"), known, deid).collect()
    assert len(hl7) >= 5 and len(fhir) == 1
    assert all(r["text"] is None for r in [*hl7, *fhir])
    assert {r["content_type"] for r in fhir} == {"text/plain; charset=utf-8"}
