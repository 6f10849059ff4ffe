"""Silver against the generator's ground truth: counts, harmonization, planted bad rows, idempotency, PHI scan.

The lakehouse is built once for the module (generate -> ingest -> build_silver); every test reads it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import generated_patient_key, new_lakehouse
from pydantic import SecretStr

from bronze.job import ingest
from lakehouse import uptodate
from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from lakehouse.runlog import run_context
from silver.deid import pseudonym_py
from silver.deid.scan import scan
from silver.job import build_silver, fingerprint
from silver.schemas import TABLES
from synthetic import generate

KEY = "test-key-not-secret-0123456789abcdef"
UNKNOWN_PATIENT = "00000000-aaaa-4bbb-8ccc-000000000001"


def _plant_bad_rows(landing: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Extra input with Silver-level defects; returns the expected failed rule per planted item."""
    person = manifest["patients"][0]
    oru = "\r".join([
        "MSH|^~\\&|LIS_LAB|GENHOSP|LAKEHOUSE|GENHOSP|20230105101500-0500||ORU^R01|PLANTED0001|P|2.5.1",
        f"PID|1||{person['mrn']}^^^GENHOSP^MR||Planted^Test||19800101|F",
        "OBR|1|PL1^EHR|PL1^LAB|VS^Vital signs^L|||20230105100000-0500",
        "OBX|1|NM|HR^Heart rate^L||-40|/min|60-100||||F|||20230105100000-0500",
    ]) + "\r"
    (landing / "hl7v2").mkdir(parents=True, exist_ok=True)
    (landing / "hl7v2" / "planted_bad.hl7").write_text(oru)
    orphan = {
        "resourceType": "Bundle", "type": "collection", "id": "planted-bundle",
        "entry": [
            {"fullUrl": "urn:uuid:11111111-2222-4333-8444-555555555555",
             "resource": {"resourceType": "Observation", "id": "11111111-2222-4333-8444-555555555555",
                          "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                          "subject": {"reference": f"Patient/{UNKNOWN_PATIENT}"},
                          "effectiveDateTime": "2023-01-05T10:00:00-05:00",
                          "valueQuantity": {"value": 70, "unit": "/min", "code": "/min"}}},
            {"fullUrl": "urn:uuid:11111111-2222-4333-8444-666666666666",
             "resource": {"resourceType": "Condition", "id": "11111111-2222-4333-8444-666666666666",
                          "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]},
                          "subject": {"reference": f"urn:uuid:{person['id']}"},
                          "onsetDateTime": "2099-01-01T00:00:00Z"}},
        ],
    }
    (landing / "fhir" / "bundles" / "planted_bad.json").write_text(json.dumps(orphan))
    return {"hl7_negative_heart_rate": "observation.heart_rate_range",
            "fhir_unknown_patient": "observation.patient_key_exists_in_patient",
            "fhir_future_onset": "condition.onset_at_not_in_future"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("silver") / "lh"
    settings = new_lakehouse(root, pseudonym_key=KEY, facility_timezone="Etc/GMT+5")
    generate(patients=15, seed=11, out=root / "landing", bad_rate=0.05)
    manifest = json.loads((root / "landing" / "_generator" / "manifest.json").read_text())
    planted = _plant_bad_rows(root / "landing", manifest)
    with run_context("ingest", settings) as run:
        ingest(settings, [], run)
    with run_context("silver", settings) as run:
        report = build_silver(settings, run)
    catalog = Catalog(spark, settings)  # type: ignore[arg-type]
    yield {"settings": settings, "catalog": catalog, "manifest": manifest, "report": report, "planted": planted,
           "run": run}
    set_settings(None)


def _rows(built: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [r.asDict() for r in built["catalog"].read(table).collect()]


def test_reconciliation_per_domain(built: dict[str, Any]) -> None:
    report = built["report"]
    assert set(TABLES) <= set(report)
    for table in TABLES:
        counts = report[table]
        assert counts["silver"] + counts["quarantined"] == counts["bronze_input"], table
        assert built["catalog"].read(f"silver.{table}").count() == counts["silver"], table


def test_counts_match_the_generator(built: dict[str, Any]) -> None:
    expected = built["manifest"]["expected"]
    report = built["report"]
    assert report["patient"]["silver"] == expected["patients"]["total"]
    assert report["encounter"]["silver"] == expected["encounters"]["total"]
    by_type = expected["fhir"]["resources_by_type"]
    for table, rtype in [("medication_request", "MedicationRequest"), ("procedure", "Procedure"),
                         ("diagnostic_report", "DiagnosticReport"), ("immunization", "Immunization"),
                         ("organization", "Organization"), ("practitioner", "Practitioner")]:
        assert report[table]["silver"] == by_type[rtype], table
    assert report["imaging_study"]["silver"] == expected["dicom"]["studies"]
    assert report["imaging_series"]["silver"] == expected["dicom"]["series"]
    assert report["imaging_instance"]["silver"] == expected["dicom"]["instances"]
    classes = {r["encounter_class"] for r in _rows(built, "silver.encounter")}
    assert classes == set(expected["encounters"]["by_class"])


def test_one_patient_key_across_sources(built: dict[str, Any]) -> None:
    key = KEY.encode()
    rows = {r["patient_key"]: r for r in _rows(built, "silver.patient")}
    for person in built["manifest"]["patients"]:
        row = rows[generated_patient_key(person["mrn"], key)]
        assert sorted(row["sources"]) == ["fhir", "hl7v2"] or row["sources"] == ["fhir"]
        assert row["gender"] == person["gender"]
    assert any(sorted(r["sources"]) == ["fhir", "hl7v2"] for r in rows.values())


def test_lab_by_hl7_and_fhir_is_one_row_in_canonical_units(built: dict[str, Any]) -> None:
    key = KEY.encode()
    rows = {r["observation_key"]: r for r in _rows(built, "silver.observation")}
    pairs = built["manifest"]["harmonization_pairs"]
    assert pairs
    converted = 0
    for pair in pairs:
        row = rows[pseudonym_py(pair["fhir"]["observation_id"], key, "observation")]
        assert row["sources"] == ["fhir", "hl7v2"], pair["test"]
        assert len(row["bronze_hashes"]) == 2
        assert row["patient_key"] == generated_patient_key(pair["mrn"], key)
        # the HL7 value is in the conventional unit (mg/dL for glucose): it is the canonical value
        if pair["hl7"]["unit"].lower() == row["unit"].lower():
            assert row["value_num"] == pytest.approx(pair["hl7"]["value"], rel=1e-6), pair["test"]
        if pair["fhir"]["unit"] != row["unit"]:
            converted += 1
    assert converted, "no pair needed a unit conversion (mg/dL by HL7 vs mmol/L by FHIR)"
    # the HL7 twin of a harmonized lab is no row of its own: one row per (patient, LOINC, time) of each pair
    by_fact = Counter((r["patient_key"], r["loinc_code"], r["effective_at"]) for r in rows.values()
                      if "hl7v2" in r["sources"])
    for pair in pairs:
        merged = rows[pseudonym_py(pair["fhir"]["observation_id"], key, "observation")]
        assert by_fact[(merged["patient_key"], merged["loinc_code"], merged["effective_at"])] == 1, pair["test"]


def test_planted_bad_rows_are_quarantined_with_their_rule(built: dict[str, Any]) -> None:
    rules = {r["failed_rule"] for t in ("observation", "condition")
             for r in _rows(built, f"quarantine.silver_{t}")}
    for item, rule in built["planted"].items():
        assert rule in rules, item
    q = _rows(built, "quarantine.silver_observation")
    assert all(r["content_hash"] and r["source_file"] and r["reason"] for r in q)
    assert any(r["source_file"].endswith("planted_bad.hl7") for r in q)


def test_units_and_codes_are_standardized(built: dict[str, Any]) -> None:
    obs = _rows(built, "silver.observation")
    glucose = [r for r in obs if r["loinc_code"] == "2345-7" and r["value_num"] is not None]
    assert glucose and all(r["unit"] == "mg/dL" for r in glucose)
    # mg/dL, physiologic (severe hypoglycaemia reaches the 20s); a glucose left in mmol/L would be 2-22
    assert all(20 <= r["value_num"] <= 600 for r in glucose)
    conditions = _rows(built, "silver.condition")
    assert any(r["is_icd10cm_valid"] for r in conditions)
    assert all(r["code"] for r in conditions)


def test_rebuild_writes_nothing(built: dict[str, Any]) -> None:
    catalog = built["catalog"]
    names = [f"silver.{t}" for t in TABLES] + [n for n in catalog.list_tables()
                                               if n.startswith("quarantine.silver_")]
    before = {n: catalog.version(n) for n in names}
    with run_context("silver", built["settings"]) as run:
        report = build_silver(built["settings"], run, force=True)
    assert {n: catalog.version(n) for n in names} == before
    assert {t: report[t]["silver"] for t in TABLES} == {t: built["report"][t]["silver"] for t in TABLES}


def test_silver_holds_no_phi(built: dict[str, Any]) -> None:
    findings = scan(built["settings"], ["silver"], key=KEY.encode())
    assert findings == [], [f.line() for f in findings[:10]]
    text = "\n".join(json.dumps(r, default=str) for t in ("patient", "observation", "encounter")
                     for r in _rows(built, f"silver.{t}"))
    for person in built["manifest"]["patients"]:
        assert person["mrn"] not in text
        assert person["phi"]["family"] not in text
        assert person["phi"]["birth_date"] not in text


def test_birth_year_is_the_year_of_the_published_birth_date(built: dict[str, Any]) -> None:
    rows = _rows(built, "silver.patient")
    with_both = [r for r in rows if r["birth_date"] is not None]
    assert with_both and all(r["birth_year"] == r["birth_date"].year for r in with_both)
    # 90+ patients publish neither
    assert all(r["birth_year"] is None for r in rows if r["birth_date"] is None)


def test_run_records_tables(built: dict[str, Any]) -> None:
    run = built["run"]
    read = {i["name"] for i in run.inputs}
    assert {"bronze.fhir_resources", "bronze.hl7v2_messages", "bronze.dicom_instances"} <= read
    written = {o["table"] for o in run.outputs}
    assert "silver.patient" in written and "quarantine.silver_observation" in written


def test_unchanged_input_skips_the_build_and_any_change_does_not(built: dict[str, Any]) -> None:
    settings = built["settings"]
    with run_context("silver", settings) as run:
        report = build_silver(settings, run)
    assert report["up_to_date"] is True and report["since_run"]
    def reconciliation(r: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
        return {t: (c["bronze_input"], c["silver"], c["quarantined"]) for t, c in r.items() if not t.startswith("_")
                and isinstance(c, dict)}

    assert reconciliation(report) == reconciliation(built["report"])  # still printed after a skipped run
    assert run.outputs == []
    for changed in (settings.model_copy(update={"deid_profile": "safe_harbor"}),
                    settings.model_copy(update={"pseudonym_key": SecretStr("another-key-0123456789abcdef")})):
        assert uptodate.unchanged_since(changed, "silver", fingerprint(changed)) is None
    catalog = built["catalog"]  # any new Bronze version, here the same resource landed again
    catalog.append(catalog.read("bronze.fhir_resources").limit(1), "bronze.fhir_resources")
    assert uptodate.unchanged_since(settings, "silver", fingerprint(settings)) is None
