"""One place per fact: the latest FHIR version, the DDL parser, conform, table paths, the shifted dates."""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path

import pytest

from bronze.schemas import FHIR_SCHEMA, FHIR_TABLE
from lakehouse.catalog import Catalog, conform, ddl_columns
from lakehouse.config import Settings, load_settings
from silver import job
from silver.common import latest_fhir
from silver.deid.rules import shifted_date_columns
from silver.schemas import TABLES, columns, ddl
from silver.terminology.seeds import SCHEMAS, rows
from silver.views.commands import run_view_on_bronze

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("lakehouse", "bronze", "silver", "gold", "expectations", "lakehouse_app")
DATE_TYPES = ("DATE", "TIMESTAMP")
LINEAGE_TIMES = {"silver_updated_at"}  # when Silver wrote the row: not a date of the patient


def _functions(name: str) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found += [f"{path.relative_to(REPO)}" for node in ast.walk(tree)
                      if isinstance(node, ast.FunctionDef) and node.name == name]
    return found


@pytest.mark.fast
def test_ddl_columns_split_at_top_level_commas_only() -> None:
    text = "`a` STRING NOT NULL, b MAP<STRING, INT>, c DECIMAL(10, 2), d ARRAY<STRUCT<x: INT, y: STRING>>"
    assert ddl_columns(text) == [("a", "STRING"), ("b", "MAP<STRING, INT>"), ("c", "DECIMAL(10, 2)"),
                                 ("d", "ARRAY<STRUCT<x: INT, y: STRING>>")]
    assert columns("imaging_study")[:4] == ["imaging_study_key", "patient_key", "encounter_key", "modalities"]
    assert all(len(r) == len(ddl_columns(SCHEMAS[name])) for name in SCHEMAS for r in rows(name))


@pytest.mark.fast
def test_one_conform_one_ddl_parser_one_latest_version() -> None:
    assert _functions("conform") == ["lakehouse/catalog.py"]
    assert _functions("latest_fhir") == ["silver/common.py"]
    assert _functions("latest_resources") == []
    assert _functions("_types") == []


@pytest.mark.fast
def test_table_locations_come_from_settings(tmp_path: Path) -> None:
    settings: Settings = load_settings(config_file=None, environ={}, root=tmp_path)
    assert settings.table_path("silver", "patient") == tmp_path.resolve() / "silver" / "patient"
    assert settings.layer_path("gold") == tmp_path.resolve() / "gold"
    assert settings.system_dir == settings.layer_path("_system")
    catalog = Catalog(None, settings)  # type: ignore[arg-type]  # locations need no engine
    assert catalog.path("quarantine.silver_patient") == settings.table_path("quarantine", "silver_patient")


@pytest.mark.fast
def test_shifted_dates_are_the_policy_table_and_every_patient_date_of_the_contract() -> None:
    """Every DATE/TIMESTAMP column of a Silver contract (but the write time) is a shift_date rule of rules.csv,
    and the Silver job shifts exactly those."""
    contract = {table: tuple(name for name, typ in ddl_columns(ddl(table))
                             if typ in DATE_TYPES and name not in LINEAGE_TIMES) for table in TABLES}
    policy = shifted_date_columns()
    assert {t: set(c) for t, c in policy.items()} == {t: set(c) for t, c in contract.items() if c}
    assert job.DATE_COLUMNS == policy


def test_view_run_reads_the_version_silver_reads(settings: Settings, spark) -> None:  # type: ignore[no-untyped-def]
    """The newest meta.lastUpdated wins even when an older version was ingested later (a resend)."""
    def patient(gender: str, updated: str, ingested: datetime) -> tuple[object, ...]:
        raw = f'{{"resourceType": "Patient", "id": "p1", "meta": {{"lastUpdated": "{updated}"}}, "gender": "{gender}"}}'
        values = {"resource_type": "Patient", "resource_id": "p1", "last_updated": updated, "raw": raw,
                  "source_file": f"{gender}.json", "position": 0, "content_hash": gender, "ingested_at": ingested}
        return tuple(values.get(f.name) for f in FHIR_SCHEMA.fields)

    df = spark.createDataFrame([patient("female", "2024-03-01T00:00:00Z", datetime(2024, 3, 2)),
                                patient("male", "2024-01-01T00:00:00Z", datetime(2024, 4, 1))], FHIR_SCHEMA)
    catalog = Catalog(spark, settings)
    catalog.append(conform(df, FHIR_SCHEMA), FHIR_TABLE)
    assert [r.gender for r in latest_fhir(catalog.read(FHIR_TABLE)).select("raw").selectExpr(
        "get_json_object(raw, '$.gender') AS gender").collect()] == ["female"]
    _, got = run_view_on_bronze(settings, "patient")
    assert [(r["id"], r["gender"]) for r in got] == [("p1", "female")]
