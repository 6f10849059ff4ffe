"""`lakehouse erase --patient MRN`: after it, a byte search of the whole root finds none of the patient's
identifiers (landing, every Delta data file and log, _system), and every other patient is still there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from helpers import TEST_KEY, new_lakehouse

from lakehouse.catalog import is_delta_table
from lakehouse.runlog import read_runs, run_context, verify_audit
from lakehouse_app import pipeline
from lakehouse_app.erase import erase
from silver.deid import pseudonym_py
from synthetic import model
from synthetic.generator import generate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
PATIENTS, SEED = 6, 11


def _text_of(path: Path) -> str:
    """What a byte search sees in a file: Parquet decoded to its values (compression hides raw bytes)."""
    if path.suffix == ".parquet":
        return json.dumps(pq.read_table(path).to_pylist(), default=str)
    return path.read_bytes().decode("latin-1")


def _hits(root: Path, needles: list[str]) -> list[tuple[str, str]]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        text = _text_of(path)
        found += [(str(path.relative_to(root)), n) for n in needles if n in text]
    return found


def _tables(root: Path, layer: str) -> dict[str, Any]:
    """Every Delta table of one layer as a PyArrow table."""
    folder = root / layer
    return {p.name: DeltaTable(str(p)).to_pyarrow_table() for p in sorted(folder.iterdir())
            if folder.is_dir() and is_delta_table(p)}


def _rows(table: Any, drop: tuple[str, ...] = ()) -> list[str]:
    """A table's rows as sorted JSON texts, without the columns in ``drop`` (a multiset to compare)."""
    keep = [c for c in table.column_names if c not in drop]
    return sorted(json.dumps(r, default=str, sort_keys=True) for r in table.select(keep).to_pylist())


def _counts(root: Path) -> dict[str, int]:
    out = {}
    for layer in ("bronze", "silver", "gold"):
        for p in sorted((root / layer).iterdir()) if (root / layer).is_dir() else []:
            if is_delta_table(p):
                out[f"{layer}.{p.name}"] = DeltaTable(str(p)).to_pyarrow_table().num_rows
    return out


@pytest.fixture(scope="module")
def erased(tmp_path_factory: pytest.TempPathFactory, spark: object) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("erase")
    settings = new_lakehouse(tmp / "lh", pseudonym_key=TEST_KEY, audit_key_file=tmp / "keys" / "audit.key",
                             audit_anchor=tmp / "anchor.log")
    generate(PATIENTS, SEED, tmp / "export", bad_rate=0.1)
    with run_context("run", settings) as run:
        pipeline.ingest(settings, [tmp / "export"], run)
        pipeline.silver(settings, run)
        pipeline.gold(settings, run)
    pool = model.build_pool(SEED)
    people = [model.build_patient(i, SEED, pool) for i in range(PATIENTS)]
    target = people[0]
    before = _counts(settings.root_path)
    snapshot = {layer: _tables(settings.root_path, layer) for layer in ("bronze", "silver")}
    needles = [target.mrn, target.ssn, target.phone, target.email]
    assert _hits(settings.root_path, needles), "the planted identifiers must be in the root before the erasure"
    report = erase(settings, target.mrn)
    return {"settings": settings, "target": target, "others": people[1:], "before": before, "report": report,
            "needles": needles, "snapshot": snapshot}


def test_no_identifier_of_the_erased_patient_is_left_anywhere_in_the_root(erased: dict[str, Any]) -> None:
    settings = erased["settings"]
    assert erased["report"]["bronze_records"] > 0 and erased["report"]["tables_purged"] > 0
    left = _hits(settings.root_path, erased["needles"])
    assert left == [], "\n".join(f"{path}: {needle}" for path, needle in left)


def test_every_other_patient_is_still_there(erased: dict[str, Any]) -> None:
    settings = erased["settings"]
    after = _counts(settings.root_path)
    before = erased["before"]
    assert after["silver.patient"] == before["silver.patient"] - 1
    assert after["gold.dim_patient"] < before["gold.dim_patient"]
    for table in ("bronze.hl7v2_messages", "bronze.fhir_resources"):
        assert 0 < after[table] < before[table]
    raw = json.dumps(DeltaTable(str(settings.table_path("bronze", "hl7v2_messages"))).to_pyarrow_table(
        columns=["raw"]).to_pylist()) + json.dumps(DeltaTable(str(settings.table_path("bronze", "fhir_resources")))
                                                  .to_pyarrow_table(columns=["raw"]).to_pylist())
    assert all(p.mrn in raw for p in erased["others"])


def test_only_the_erased_patients_rows_are_gone_and_every_other_row_is_unchanged(erased: dict[str, Any]) -> None:
    """Bronze loses exactly the patient's records; every Silver row of every other patient is the same row after
    the rebuild (lineage run columns aside)."""
    root, target = erased["settings"].root_path, erased["target"]
    theirs = [target.mrn, target.ssn, target.phone, target.email, target.id, f"{target.family}^{target.given}"]
    for name, before in erased["snapshot"]["bronze"].items():
        after = _tables(root, "bronze")[name]
        if "content_hash" not in before.column_names:
            continue
        kept = set(after.column("content_hash").to_pylist())
        removed = [r for r in before.to_pylist() if r["content_hash"] not in kept]
        assert kept <= set(before.column("content_hash").to_pylist()), f"bronze.{name}: rows appeared"
        assert all(any(t in json.dumps(r, default=str) for t in theirs) for r in removed), \
            f"bronze.{name}: a removed row is not the erased patient's"
        assert _rows(after) == _rows(before.filter(pc.is_in(before.column("content_hash"),
                                                            value_set=pa.array(sorted(kept), pa.string())))), \
            f"bronze.{name}: a kept row changed"
    silver_after = _tables(root, "silver")
    gone = set(erased["snapshot"]["silver"]["patient"].column("patient_key").to_pylist()) \
        - set(silver_after["patient"].column("patient_key").to_pylist())
    assert len(gone) == erased["report"]["silver_patient_keys"] == 1
    # has_30_day_follow_up is relative to the end of the data (the latest encounter of anyone): erasing the patient
    # who holds it moves it for everyone (docs/security.md); the rest of every row must stay as it was
    lineage = ("silver_run_id", "silver_updated_at", "has_30_day_follow_up")
    compared = 0
    for name, before in erased["snapshot"]["silver"].items():
        if "patient_key" not in before.column_names or name not in silver_after:
            continue
        others = before.filter(pc.invert(pc.fill_null(pc.is_in(before.column("patient_key"),
                                                                value_set=pa.array(sorted(gone))), False)))
        assert _rows(silver_after[name], lineage) == _rows(others, lineage), f"silver.{name}: other patients' rows"
        compared += others.num_rows
    assert compared > 100


def test_the_run_log_holds_one_erasure_record_with_only_a_pseudonym(erased: dict[str, Any]) -> None:
    settings = erased["settings"]
    record = read_runs(settings)[-1]
    assert record["command"] == "erase" and record["status"] == "ok"
    assert json.loads(record["metrics"])["erased_patient"] == pseudonym_py(erased["target"].mrn, TEST_KEY.encode(),
                                                                          "erasure")
    assert verify_audit(settings)[0]


def test_the_next_run_after_an_erasure_rebuilds_nothing(erased: dict[str, Any]) -> None:
    """Runs last in this module: it adds a run record after the erasure's."""
    again = pipeline.run_all(erased["settings"], [])
    assert again["silver"].get("up_to_date") and again["gold"].get("up_to_date"), again
