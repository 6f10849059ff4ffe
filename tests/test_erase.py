"""`lakehouse erase --patient MRN`: after it, a byte search of the whole root finds none of the patient's
identifiers (landing, every Delta data file and log, _system), and every other patient is still there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    needles = [target.mrn, target.ssn, target.phone, target.email]
    assert _hits(settings.root_path, needles), "the planted identifiers must be in the root before the erasure"
    report = erase(settings, target.mrn)
    return {"settings": settings, "target": target, "others": people[1:], "before": before, "report": report,
            "needles": needles}


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


def test_the_run_log_holds_one_erasure_record_with_only_a_pseudonym(erased: dict[str, Any]) -> None:
    settings = erased["settings"]
    record = read_runs(settings)[-1]
    assert record["command"] == "erase" and record["status"] == "ok"
    assert json.loads(record["metrics"])["erased_patient"] == pseudonym_py(erased["target"].mrn, TEST_KEY.encode(),
                                                                          "erasure")
    assert verify_audit(settings)[0]
