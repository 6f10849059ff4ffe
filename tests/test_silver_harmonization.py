"""Cross-source lab matching (silver.observation.harmonized_pairs): an HL7 ORU^R01 result and a FHIR Observation of
the same test are one Silver row when they share the order (the FHIR DiagnosticReport or ServiceRequest carries the
HL7 placer or filler number), even when the two feeds disagree about the time; without a shared order only
effective times within TIME_TOLERANCE_SECONDS match. Built once for the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ingest_and_build_silver, new_lakehouse, transaction_bundle

from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from silver.observation import TIME_TOLERANCE_SECONDS

pytestmark = pytest.mark.slow

KEY = "harmonization-key-not-secret-0123456789"
MRN = "MRN55501"
MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
LOINC = "http://loinc.org"

# The lab sends local time with its offset (08:15 -05:00 = 13:15 UTC); the EHR's FHIR feed wrote the same local
# wall-clock time as UTC (08:15Z): five hours apart, one result.
ORU = "\r".join([
    "MSH|^~\\&|LABSYS|CITYLAB|EHR|GENHOSP|20240305143000-0500||ORU^R01^ORU_R01|HARM0001|P|2.5.1",
    f"PID|1||{MRN}^^^GENHOSP^MR||Testperson^Hana||19650301|F",
    "ORC|RE|ORD5501^EHR|FIL5501^LABSYS||CM",
    "OBR|1|ORD5501^EHR|FIL5501^LABSYS|24323-8^Comprehensive metabolic panel^LN|||20240305081500-0500",
    "OBX|1|NM|2345-7^Glucose [Mass/volume] in Serum or Plasma^LN||105|mg/dL|70-99|H|||F|||20240305081500-0500",
    "OBX|2|NM|2951-2^Sodium [Moles/volume] in Serum or Plasma^LN||139|mmol/L|135-145|N|||F|||20240305081500-0500",
    "ORC|RE|ORD5502^EHR|FIL5502^LABSYS||CM",
    "OBR|1|ORD5502^EHR|FIL5502^LABSYS|57021-8^CBC panel^LN|||20240305093000-0500",
    "OBX|1|NM|718-7^Hemoglobin [Mass/volume] in Blood^LN||13.2|g/dL|12.0-15.5|N|||F|||20240305093000-0500",
    "OBX|2|NM|6690-2^Leukocytes [#/volume] in Blood^LN||11.8|10*3/uL|4.5-11.0|H|||F|||20240305093000-0500",
]) + "\r"


def _observation(oid: str, loinc: str, value: float, unit: str, at: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": loinc}]}, "subject": {"reference": "urn:uuid:pat-5501"},
            "effectiveDateTime": at, "valueQuantity": {"value": value, "unit": unit,
                                                       "system": "http://unitsofmeasure.org", "code": unit},
            **extra}


def fhir_resources() -> list[dict[str, Any]]:
    patient = {"resourceType": "Patient", "id": "pat-5501", "identifier": [{"type": MR, "system": "https://fhir.genhosp.example.org/sid/mrn",
                                                                    "value": MRN}],
               "gender": "female", "birthDate": "1965-03-01"}
    return [
        patient,
        # glucose: listed by a DiagnosticReport whose identifier is the lab's filler number; 5 h off
        _observation("obs-glucose", "2345-7", 105, "mg/dL", "2024-03-05T08:15:00Z"),
        {"resourceType": "DiagnosticReport", "id": "dr-5501", "status": "final",
         "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.999.7", "value": "FIL5501"}],
         "code": {"coding": [{"system": LOINC, "code": "24323-8"}]}, "subject": {"reference": "urn:uuid:pat-5501"},
         "result": [{"reference": "urn:uuid:obs-glucose"}]},
        # sodium: basedOn a ServiceRequest whose identifier is the placer number; 5 h off
        {"resourceType": "ServiceRequest", "id": "sr-5501", "status": "completed", "intent": "order",
         "identifier": [{"value": "ORD5501"}], "code": {"coding": [{"system": LOINC, "code": "24323-8"}]},
         "subject": {"reference": "urn:uuid:pat-5501"}},
        _observation("obs-sodium", "2951-2", 139, "mmol/L", "2024-03-05T08:15:00Z",
                     basedOn=[{"reference": "urn:uuid:sr-5501"}]),
        # hemoglobin: same value, no order link, 5 h off: a different result, never merged
        _observation("obs-hemoglobin", "718-7", 13.2, "g/dL", "2024-03-05T09:30:00Z"),
        # leukocytes: no order link, 60 s after the OBX time: matched by the time tolerance
        _observation("obs-leukocytes", "6690-2", 11.8, "10*3/uL", "2024-03-05T14:31:00Z"),
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("silver-harmonization")
    settings = new_lakehouse(tmp / "lh", pseudonym_key=KEY)
    oru, bundle = tmp / "oru.hl7", tmp / "bundle.json"
    oru.write_bytes(ORU.encode())
    bundle.write_text(json.dumps(transaction_bundle(fhir_resources())), encoding="utf-8")
    report = ingest_and_build_silver(settings, [oru, bundle])
    catalog = Catalog(spark, settings)  # type: ignore[arg-type]
    rows = [r.asDict() for r in catalog.read("silver.observation").collect()]
    yield {"report": report, "rows": rows}
    set_settings(None)


def _by_code(built: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in built["rows"]:
        out.setdefault(r["loinc_code"], []).append(r)
    return out


def test_a_shared_order_matches_whatever_the_times(built: dict[str, Any]) -> None:
    rows = _by_code(built)
    # the DiagnosticReport's identifier is the filler number; the ServiceRequest's the placer number
    for loinc in ("2345-7", "2951-2"):
        assert len(rows[loinc]) == 1, rows[loinc]
        assert sorted(rows[loinc][0]["sources"]) == ["fhir", "hl7v2"]
        assert len(rows[loinc][0]["bronze_hashes"]) == 2


def test_without_an_order_only_close_times_match(built: dict[str, Any]) -> None:
    rows = _by_code(built)
    assert TIME_TOLERANCE_SECONDS >= 60
    leukocytes = rows["6690-2"]
    assert len(leukocytes) == 1 and sorted(leukocytes[0]["sources"]) == ["fhir", "hl7v2"]
    hemoglobin = rows["718-7"]  # same value, five hours apart, no shared order: two results
    assert sorted(r["sources"][0] for r in hemoglobin) == ["fhir", "hl7v2"] and len(hemoglobin) == 2


def test_the_merge_reconciles(built: dict[str, Any]) -> None:
    # 4 OBX + 4 FHIR Observations, 3 pairs merged: 5 rows
    assert built["report"]["observation"]["silver"] == 5 and built["report"]["observation"]["quarantined"] == 0
    assert not any(k.startswith("_") or "order" in k for k in built["rows"][0])  # order numbers never published
