"""Silver on real-world input written by others: Synthea FHIR bundles and the HL7 v2 sample files of hl7apy and
python-hl7 (../shared/fixtures). Built once for the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import new_lakehouse

from bronze.job import ingest
from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from lakehouse.runlog import run_context
from silver.deid import pseudonym_py
from silver.deid.scan import scan
from silver.job import build_silver
from silver.schemas import TABLES

KEY = "fixture-key-not-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object, fixtures_dir: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("silver-fixtures") / "lh"
    settings = new_lakehouse(root, pseudonym_key=KEY)
    bundles = sorted((fixtures_dir / "synthea-bundles").glob("*.json"))
    hl7 = sorted((fixtures_dir / "hl7v2").rglob("*.hl7"))
    with run_context("ingest", settings) as run:
        ingest(settings, [*bundles, *hl7], run)
    with run_context("silver", settings) as run:
        report = build_silver(settings, run)
    patients = []
    for path in bundles:
        for entry in json.loads(path.read_text())["entry"]:
            if entry["resource"]["resourceType"] == "Patient":
                patients.append(entry["resource"])
    yield {"settings": settings, "catalog": Catalog(spark, settings),  # type: ignore[arg-type]
           "report": report,
           "patients": patients}
    set_settings(None)


def test_synthea_values_present_and_deidentified(built: dict[str, Any]) -> None:
    catalog, key = built["catalog"], KEY.encode()
    rows = {r["patient_key"]: r.asDict() for r in catalog.read("silver.patient").collect()}
    for p in built["patients"]:
        mrn = next((i["value"] for i in p.get("identifier", [])
                    if any(c.get("code") == "MR" for c in i.get("type", {}).get("coding", []))), p["id"])
        row = rows[pseudonym_py(mrn, key, "patient")]
        assert row["gender"] == p["gender"]
        if row["is_age_90_plus"]:
            assert row["birth_year"] is None and row["birth_date"] is None  # the 90+ rule
        else:
            # the year of the published (shifted) birth date, never the real one beside shifted dates
            assert row["birth_year"] == row["birth_date"].year
            assert abs(row["birth_year"] - int(p["birthDate"][:4])) <= 1  # a shift of at most max_shift_days
        assert row["birth_date"] is None or row["birth_date"].isoformat() != p["birthDate"]  # shifted
        assert row["zip3"] is None or len(row["zip3"]) == 3
    obs = catalog.read("silver.observation")
    assert obs.filter("loinc_code IS NOT NULL AND value_num IS NOT NULL").count() > 0
    assert catalog.read("silver.encounter").count() > 0
    assert catalog.read("silver.condition").filter("is_icd10cm_valid OR snomed_code IS NOT NULL").count() > 0


def test_hl7_fixture_patients_and_results_arrive(built: dict[str, Any]) -> None:
    report = built["report"]
    # the python-hl7 / hl7apy samples carry PID segments of patients that are in no FHIR bundle
    assert report["patient"]["silver"] > len(built["patients"])
    hl7 = built["catalog"].read("silver.patient").filter("array_contains(sources, 'hl7v2')").collect()
    assert hl7 and all(len(r["patient_key"]) == 64 for r in hl7)


def test_fixture_reconciliation_and_no_phi(built: dict[str, Any]) -> None:
    for table in TABLES:
        counts = built["report"][table]
        assert counts["silver"] + counts["quarantined"] == counts["bronze_input"], table
    findings = scan(built["settings"], ["silver"], key=KEY.encode())
    assert findings == [], [f.line() for f in findings[:10]]
