"""FHIR R4 landing -> Bronze: Synthea bundles, NDJSON, nested bundles, verbatim raw and bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pyspark.sql import functions as F

from bronze.job import ingest
from lakehouse.runlog import Run


def _ingest(settings, paths):  # noqa: ANN001, ANN202
    return ingest(settings, paths, Run("ingest", settings))


def test_synthea_bundles_resource_counts_and_dedup(settings, catalog, fixtures_dir) -> None:
    src = fixtures_dir / "synthea-bundles"
    entries = [e["resource"] for p in sorted(src.glob("*.json")) for e in json.loads(p.read_text())["entry"]]
    distinct = {json.dumps(r, sort_keys=True) for r in entries}
    report = _ingest(settings, [src])["fhir"]
    assert report["received"] == len(entries) and report["quarantined"] == 0
    table = catalog.read("bronze.fhir_resources")
    assert table.count() == report["bronze"] == len(distinct)
    got = Counter(r.resource_type for r in table.select("resource_type").collect())
    want = Counter(r["resourceType"] for r in {json.dumps(r, sort_keys=True): r for r in entries}.values())
    assert got == want
    practitioners = table.filter(F.col("resource_type") == "Practitioner").select("resource_id", "raw").collect()
    assert len({p.resource_id for p in practitioners}) == len(practitioners)  # each stored once
    sample = table.filter(F.col("resource_type") == "Patient").first()
    assert json.loads(sample.raw)["id"] == sample.resource_id
    assert sample.bundle_type == "transaction" and sample.full_url.startswith("urn:uuid:")
    assert sample.entry_index is not None and sample.source_file.startswith("landing/imports/")


def test_ndjson_nested_bundles_verbatim_and_bad_items(settings, catalog, tmp_path: Path) -> None:
    inbox = tmp_path / "fhir"
    inbox.mkdir()
    obs = '{"resourceType": "Observation", "id": "o1", "valueQuantity": {"value": 1.50, "unit": "mg"}}'
    (inbox / "obs.ndjson").write_text(
        obs + "\n" + '{"resourceType": "Patient", "id": "p1"}\r\n' + "\n" + '{"resourceType": "Patient", "id": \n'
        + '{"id": "no-type"}\n')
    nested = {"resourceType": "Bundle", "type": "batch-response", "id": "outer", "entry": [
        {"fullUrl": "urn:a", "resource": {"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": {"resourceType": "Encounter", "id": "e1"}}, {"fullUrl": "urn:x"}]}},
        {"resource": {"resourceType": "Condition", "id": "c1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}}},
    ]}
    (inbox / "nested.json").write_text(json.dumps(nested, indent=2))
    (inbox / "broken.json").write_text('{\n  "resourceType": "Bundle",\n  "entry": [ {"resource": ')
    report = _ingest(settings, [inbox])["fhir"]
    assert report == {"received": 8, "bronze": 4, "quarantined": 4, "duplicates": 0}
    rows = {r.resource_id: r for r in catalog.read("bronze.fhir_resources").collect()}
    assert set(rows) == {"o1", "p1", "e1", "c1"}
    assert rows["o1"].raw == obs and '"value": 1.50' in rows["o1"].raw  # verbatim, decimal precision kept
    assert rows["o1"].position == 1 and rows["o1"].entry_index is None
    assert rows["p1"].position == 2
    assert rows["e1"].entry_path == "0.0" and rows["e1"].bundle_type == "searchset"
    assert rows["c1"].entry_index == 1 and rows["c1"].bundle_type == "batch-response"
    assert rows["c1"].last_updated == "2024-01-01T00:00:00Z"
    assert json.loads(rows["c1"].raw) == nested["entry"][1]["resource"]
    bad = {(r.source_file.rsplit("/", 1)[-1], r.position): r.reason
           for r in catalog.read("quarantine.fhir").collect()}
    assert bad[("obs.ndjson", 4)].startswith("invalid JSON on line 4")
    assert bad[("obs.ndjson", 5)] == "resource has no resourceType"
    assert bad[("nested.json", 0)] == "Bundle entry 0.1 has no resource"  # position: top-level entry
    assert bad[("broken.json", 0)].startswith("invalid JSON")
