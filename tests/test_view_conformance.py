"""SQL-on-FHIR v2 ViewDefinition engine: the official suite (with a pass floor), clear errors, project views."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from silver.views import (
    VIEW_NAMES,
    FhirPathSyntaxError,
    UnsupportedFhirPathError,
    ViewDefinitionError,
    compile_view,
    load_view,
    run_conformance,
    run_view,
)
from silver.views.conformance import passing_case_ids

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "silver" / "views" / "sql_on_fhir_tests"  # vendored, present on every checkout
FLOOR = REPO / "silver" / "views" / "conformance_floor.json"


def test_conformance_suite_never_loses_a_passing_case(spark: Any, tmp_path: Path) -> None:
    report_path = tmp_path / "test_report.json"
    result = run_conformance(spark, SUITE, report_path)
    floor = json.loads(FLOOR.read_text(encoding="utf-8"))

    assert result["total"] == floor["total"] == 134
    assert result["passed"] >= floor["passed"], result["failures"]
    report = json.loads(report_path.read_text(encoding="utf-8"))
    # the suite's test_report.json format: {file: {"tests": [{"name", "result": {"passed", "reason"?}}]}}
    assert set(report) == {p.name for p in SUITE.glob("*.json")} - {"tests.schema.json"}
    for entry in (t for f in report.values() for t in f["tests"]):
        assert isinstance(entry["name"], str) and isinstance(entry["result"]["passed"], bool)
    lost = sorted(set(floor["passing"]) - set(passing_case_ids(report)))
    assert not lost, f"cases that passed before and fail now: {lost}"


@pytest.mark.parametrize(("path", "error"), [
    ("name.given.substring(0, 1)", UnsupportedFhirPathError),
    ("name.given is string", UnsupportedFhirPathError),
    ("$index", UnsupportedFhirPathError),
    ("name.given.where(", FhirPathSyntaxError),
])
@pytest.mark.fast
def test_unsupported_fhirpath_fails_at_compile_time_naming_the_expression(path: str, error: type) -> None:
    view = {"resource": "Patient", "select": [{"column": [{"name": "c", "path": path}]}]}
    with pytest.raises(error) as caught:
        compile_view(view)
    assert path in str(caught.value)
    assert isinstance(caught.value, ViewDefinitionError)


def test_resources_without_the_foreach_element_are_skipped_before_parsing_without_losing_rows(spark: Any) -> None:
    view = {"resource": "Observation", "select": [
        {"column": [{"name": "id", "path": "id"}]},
        {"forEach": "component", "column": [{"name": "v", "path": "value.ofType(Quantity).value"}]}]}
    assert compile_view(view).requires == ("component",)
    union = {"resource": "Observation", "select": [{"forEach": "component | code", "column": [
        {"name": "id", "path": "%resource.id"}]}]}
    assert compile_view(union).requires == ()  # "code" alone yields rows: no text test
    bare = {"resource": "Observation", "select": [{"column": [{"name": "id", "path": "id"}]}, {"forEach": "component"}]}
    assert compile_view(bare).requires == ()  # a forEach without columns is not part of the plan: no text test
    resources = [
        {"resourceType": "Observation", "id": "plain", "valueQuantity": {"value": 1}},
        {"resourceType": "Observation", "id": "panel", "component": [{"valueQuantity": {"value": 2}},
                                                                      {"valueQuantity": {"value": 3}}]},
    ]
    raws = [(json.dumps(r),) for r in resources]
    # a key spelled with a JSON escape is still the key: the text test must not drop the resource
    raws.append(('{"resourceType":"Observation","id":"escaped","\\u0063omponent":[{"valueQuantity":{"value":4}}]}',))
    rows = run_view(spark, view, spark.createDataFrame(raws, "raw string")).collect()
    assert sorted((r["id"], float(r["v"])) for r in rows) == [("escaped", 4.0), ("panel", 2.0), ("panel", 3.0)]


@pytest.mark.fast
def test_unknown_view_name_lists_the_known_views() -> None:
    with pytest.raises(ViewDefinitionError, match="patient"):
        load_view("no_such_view")


def _synthea_resources(fixtures_dir: Path) -> list[tuple[str, str, str, str]]:
    """(resource_type, raw, content_hash, source_file) per resource of the Synthea fixture bundles."""
    rows = []
    for path in sorted((fixtures_dir / "synthea-bundles").glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for entry in bundle.get("entry", []):
            raw = json.dumps(entry["resource"], separators=(",", ":"))
            rows.append((entry["resource"]["resourceType"], raw, hashlib.sha256(raw.encode()).hexdigest(), path.name))
    return rows


def test_every_project_view_compiles_and_flattens_the_synthea_bundles(spark: Any, fixtures_dir: Path,
                                                                     tmp_path: Path) -> None:
    rows = _synthea_resources(fixtures_dir)
    assert rows, "no resources in the Synthea fixture bundles"
    # Synthea writes no Patient.contact: one patient with a next of kin, so the restricted contact view runs too
    contact = {"resourceType": "Patient", "id": "with-next-of-kin",
               "contact": [{"relationship": [{"coding": [{"code": "N"}]}], "name": {"family": "Doe",
                                                                                    "given": ["Jane"]},
                            "telecom": [{"system": "phone", "value": "555-0100"}]}]}
    raw = json.dumps(contact, separators=(",", ":"))
    rows.append(("Patient", raw, hashlib.sha256(raw.encode()).hexdigest(), "crafted-next-of-kin.json"))
    present = {r[0] for r in rows}
    # written once and read back: a local relation would travel in the plan once per view (over the 128 MiB limit)
    spark.createDataFrame([r[1:] for r in rows], "raw STRING, content_hash STRING, source_file STRING") \
         .write.parquet(str(tmp_path / "resources"))
    resources = spark.read.parquet(str(tmp_path / "resources"))
    flattened = None
    for name in VIEW_NAMES:
        view = load_view(name)
        df = run_view(spark, view, resources, keep=("content_hash", "source_file"))
        assert df.columns[:2] == ["content_hash", "source_file"]
        counted = df.groupBy().count().selectExpr(f"'{name}' AS view", "count AS n")
        flattened = counted if flattened is None else flattened.unionByName(counted)
    # one round trip for all views (Sail re-plans every action)
    counts = {r["view"]: r["n"] for r in flattened.collect()} if flattened is not None else {}
    for name in VIEW_NAMES:
        if load_view(name)["resource"] in present:
            assert counts.get(name, 0) > 0, f"view {name} gave no rows over the Synthea bundles"


def test_observation_view_values_match_the_bundles(spark: Any, fixtures_dir: Path) -> None:
    """Values, not only counts: every Observation's id, subject key and valueQuantity as the JSON says."""
    rows = _synthea_resources(fixtures_dir)
    expected = set()
    for resource_type, raw, _, _ in rows:
        if resource_type == "Observation":
            obs = json.loads(raw)
            quantity = obs.get("valueQuantity", {})
            subject = obs["subject"]["reference"].removeprefix("urn:uuid:").split("/")[-1]
            value = quantity.get("value")
            expected.add((obs["id"], subject, None if value is None else round(float(value), 6), quantity.get("unit")))
    resources = spark.createDataFrame([(r[1],) for r in rows], "raw STRING")
    df = run_view(spark, load_view("observation"), resources)
    selected = df.select("id", "patient_ref", "value_quantity", "value_unit_text").collect()
    got = {(r["id"], r["patient_ref"], None if r["value_quantity"] is None else round(float(r["value_quantity"]), 6),
            r["value_unit_text"]) for r in selected}
    assert expected and got == expected
