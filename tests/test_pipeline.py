"""The whole pipeline end to end, as `make demo` runs it: landing -> bronze -> silver -> gold -> features.

One lakehouse is built per module (the expensive part is dbt); each test asserts one promise of the product.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from helpers import attach, generated_patient_key, new_lakehouse

from lakehouse import engine
from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.runlog import verify_audit
from lakehouse.status import table_status
from lakehouse_app import pipeline
from silver.deid import generalize_zip3_py
from silver.deid.scan import scan
from synthetic import MANIFEST_PATH, generate, generate_address_changes

KEY = "pipeline-test-key-0f1e2d3c4b5a"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pipeline") / "lh"
    settings = new_lakehouse(root, pseudonym_key=KEY)
    generate(patients=25, seed=11, out=settings.landing_dir, bad_rate=0.03)
    generated = json.loads((settings.landing_dir / MANIFEST_PATH).read_text())
    first = pipeline.run_all(settings, [])
    versions = {(t["layer"], t["table"]): t["version"] for t in table_status(settings)}
    return {"settings": settings, "generated": generated, "first": first, "versions": versions}


@pytest.fixture()
def settings(built: dict[str, Any]) -> Settings:
    return attach(built["settings"])  # another module's test may have attached the engine to its own root


def test_every_layer_has_data(built: dict[str, Any], settings: Settings) -> None:
    rows = {(t["layer"], t["table"]): t["rows"] for t in table_status(settings)}
    for table in [("bronze", "hl7v2_messages"), ("bronze", "fhir_resources"), ("bronze", "dicom_instances"),
                  ("silver", "patient"), ("silver", "encounter"), ("silver", "observation"),
                  ("gold", "dim_patient"), ("gold", "fct_encounter"), ("gold", "mart_readmission_30d")]:
        assert rows.get(table, 0) > 0, f"{table} is empty: {rows}"
    assert rows[("silver", "patient")] == built["generated"]["patient_count"]


def test_no_phi_in_silver_or_gold(settings: Settings) -> None:
    findings = scan(settings, ["silver", "gold"])
    assert findings == [], "\n".join(f.line() for f in findings[:20])


def test_audit_chain_verifies(settings: Settings) -> None:
    ok, message = verify_audit(settings)
    assert ok, message


def test_rerun_with_no_new_input_writes_nothing(built: dict[str, Any], settings: Settings) -> None:
    again = pipeline.run_all(settings, [])
    assert again["silver"]["up_to_date"] and again["gold"]["up_to_date"], again
    after = {(t["layer"], t["table"]): t["version"] for t in table_status(settings)}
    changed = {k: (built["versions"].get(k), v) for k, v in after.items()
               if k[0] != "_system" and built["versions"].get(k) != v}
    assert changed == {}, f"tables written by a no-op re-run: {changed}"


def test_maintenance_leaves_every_layer_up_to_date(built: dict[str, Any], settings: Settings) -> None:
    """`lakehouse maintain` compacts and vacuums every table: new Delta versions, the same rows. A nightly
    maintain must not make the next run rebuild Silver and Gold in full."""
    before = {(t["layer"], t["table"]): t["version"] for t in table_status(settings)}
    env = {**os.environ, "LAKEHOUSE_PSEUDONYM_KEY": KEY}
    done = subprocess.run([sys.executable, "-m", "lakehouse_app.cli", "--root", str(settings.root_path), "maintain",
                           "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    compacted = [r["table"] for r in json.loads(done.stdout) if r["files_added"]]
    after = {(t["layer"], t["table"]): t["version"] for t in table_status(settings)}
    changed = {layer for (layer, table), v in after.items()
               if f"{layer}.{table}" in compacted and v != before[(layer, table)]}
    assert {"bronze", "gold"} <= changed, compacted  # Silver's inputs and Gold's own tables have new versions
    again = pipeline.run_all(settings, [])
    assert again["silver"]["up_to_date"] and again["gold"]["up_to_date"], again


def test_address_change_makes_a_second_dim_patient_row(built: dict[str, Any], settings: Settings) -> None:
    manifest = built["generated"]
    changes = generate_address_changes(settings.landing_dir, manifest, count=2, seed=5)
    result = pipeline.run_all(settings, [])
    assert result["silver"]["_build"]["mode"] == "incremental", result["silver"]["_build"]  # after maintain too
    catalog = Catalog(engine.get_spark(settings), settings)
    key = KEY.encode()
    for change in changes["changed"]:
        patient_key = generated_patient_key(change["mrn"], key)
        rows = catalog.read("gold.dim_patient").filter(f"patient_key = '{patient_key}'").collect()
        assert len(rows) == 2, (change, [r.asDict() for r in rows])
        assert sum(1 for r in rows if r["is_current"]) == 1
        expected = {generalize_zip3_py(change["old"]["zip"]), generalize_zip3_py(change["new"]["zip"])}
        assert {r["zip3"] for r in rows} == expected
        current = next(r for r in rows if r["is_current"])
        assert current["zip3"] == generalize_zip3_py(change["new"]["zip"])
