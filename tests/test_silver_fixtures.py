"""The whole pipeline on real-world input written by others: every file under ../shared/fixtures (Synthea FHIR
bundles, the HL7 v2 samples of hl7apy and python-hl7, the 139 samples of an HL7-to-FHIR converter) ingested and
run to Gold together, as ``lakehouse ingest ../shared/fixtures && lakehouse run`` does. Built once for the module."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, new_lakehouse

from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from lakehouse_app.pipeline import ingest, run_all
from lakehouse_app.unmapped_report import source_coverage
from silver.coverage import load_scope
from silver.deid import pseudonym_py
from silver.deid.scan import scan
from silver.schemas import TABLES

pytestmark = pytest.mark.slow

KEY = "fixture-key-not-secret-0123456789abcdef"
# message families whose facts Silver models: every real sample of them must yield Silver rows
MODELLED_HL7 = ("ADT", "ORU", "OUL", "VXU", "MDM", "ORM", "OML", "OMG", "RDE", "RDS")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object, fixtures_dir: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("silver-fixtures") / "lh"
    settings = new_lakehouse(root, pseudonym_key=KEY)
    bundles = sorted((fixtures_dir / "synthea-bundles").glob("*.json"))
    ingested = ingest(settings, [fixtures_dir])
    result = run_all(settings, [])  # ingest finds nothing new, then Silver and Gold
    patients = []
    for path in bundles:
        for entry in json.loads(path.read_text())["entry"]:
            if entry["resource"]["resourceType"] == "Patient":
                patients.append(entry["resource"])
    yield {"settings": settings, "catalog": Catalog(spark, settings),  # type: ignore[arg-type]
           "ingest": ingested, "report": result["silver"], "gold": result["gold"], "patients": patients,
           "coverage": source_coverage(settings)}
    set_settings(None)


def test_every_source_record_accounted_for(built: dict[str, Any]) -> None:
    """received = silver + quarantined + not in scope + superseded for every type; no type silently dropped."""
    catalog, rows = built["catalog"], built["coverage"]
    by_type = {(r["source"], r["record_type"]): r for r in rows}
    assert all(r["unaccounted"] == 0 for r in rows), [r for r in rows if r["unaccounted"]]
    # every type that reached Bronze is in the coverage, with every one of its records
    bronze = {("hl7v2", f"{r['message_type']}^{r['trigger_event']}"): r["n"] for r in catalog.spark.sql(
        "SELECT message_type, trigger_event, count(*) AS n FROM bronze.hl7v2_messages GROUP BY 1, 2").collect()}
    bronze |= {("fhir", r["resource_type"]): r["n"] for r in catalog.spark.sql(
        "SELECT resource_type, count(*) AS n FROM bronze.fhir_resources GROUP BY 1").collect()}
    assert {k: by_type[k]["received"] for k in bronze} == bronze
    # the modelled families read every real sample: none of their records is of an unexpected shape
    for (source, record_type), r in by_type.items():
        if source == "hl7v2" and record_type.split("^")[0] in MODELLED_HL7:
            assert r["silver"] > 0, r
    shapes = catalog.read("quarantine.silver_source_record").collect() \
        if catalog.exists("quarantine.silver_source_record") else []
    unexpected = [(json.loads(q["record"])["record_type"], q["reason"]) for q in shapes
                  if json.loads(q["record"])["record_type"].split("^")[0] in MODELLED_HL7]
    # only messages of nothing but a header (hl7apy and python-hl7 parser tests) carry no fact
    assert unexpected and all("no segment beyond MSH and EVN" in reason for _, reason in unexpected), unexpected
    assert len(unexpected) == 2
    # what is left out is declared with its reason, and billing is among it
    declared = {r.record_type: r for r in load_scope()}
    assert not declared["BAR^*"].in_scope and declared["BAR^*"].reason
    assert by_type[("fhir", "Claim")]["not_in_scope"] == by_type[("fhir", "Claim")]["received"] - \
        by_type[("fhir", "Claim")]["superseded"]
    assert built["report"]["_coverage"]["received"] == sum(r["received"] for r in rows)


def test_report_coverage_command(built: dict[str, Any]) -> None:
    """``lakehouse report coverage`` from a new process over the same root: exit 0, every type listed."""
    root = built["settings"].root_path
    proc = subprocess.run([sys.executable, "-m", "lakehouse_app.cli", "--root", str(root), "report", "coverage",
                           "--json"], capture_output=True, text=True, timeout=300,
                          env=clean_env(LAKEHOUSE_PSEUDONYM_KEY=KEY))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {(r["source"], r["record_type"]) for r in rows} == \
        {(r["source"], r["record_type"]) for r in built["coverage"]}


def test_gold_built_from_fixtures(built: dict[str, Any]) -> None:
    gold = built["gold"]
    assert gold["tables"], gold
    assert built["catalog"].read("gold.dim_patient").count() >= len(built["patients"])


def test_synthea_values_present_and_deidentified(built: dict[str, Any]) -> None:
    catalog, key = built["catalog"], KEY.encode()
    rows = {r["patient_key"]: r.asDict() for r in catalog.read("silver.patient").collect()}
    for p in built["patients"]:
        # the MR identifier qualified by its system, the authority (silver.identity); every Synthea patient has one
        identity = next(f"{i['system']}|{i['value']}" for i in p.get("identifier", [])
                        if any(c.get("code") == "MR" for c in i.get("type", {}).get("coding", [])))
        row = rows[pseudonym_py(identity, key, "patient")]
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
