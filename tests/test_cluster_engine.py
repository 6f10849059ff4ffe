"""The distributed-engine lane: the whole pipeline on Sail's cluster mode gives the same Silver and Gold as local mode.

``sail_mode: local-cluster`` runs a driver and workers that exchange plans and shuffle data over RPC, as Sail does
on Kubernetes; a plan that only works inside one process (a Python UDF's state, a partition-local assumption,
a non-deterministic tie) shows up here as a different table. Both builds are the CLI as a user runs it, on the same
generated export, with the same key; only the engine mode differs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from helpers import TEST_KEY, clean_env

from lakehouse.catalog import is_delta_table
from synthetic.generator import generate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
PATIENTS, SEED = 8, 23
# columns that hold the building run's id or its wall-clock time (the only things two builds may differ in)
RUN_COLUMNS = {"silver_run_id", "silver_updated_at", "quarantined_at", "evaluated_at", "run_id", "loaded_at",
               "issued_at", "dbt_updated_at", "gold_built_at"}


def _build(root: Path, export: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(LAKEHOUSE_PSEUDONYM_KEY=TEST_KEY, LAKEHOUSE_SAIL_MODE=mode, LAKEHOUSE_AS_OF_DATE="2026-06-30",
                    RUST_LOG_SAIL="info")
    return subprocess.run([sys.executable, "-m", "lakehouse_app.cli", "--root", str(root), "run", str(export),
                           "--json"], capture_output=True, text=True, env=env, timeout=1200)


def _tables(root: Path) -> dict[str, Any]:
    out = {}
    for layer in ("silver", "gold"):
        for path in sorted((root / layer).iterdir()):
            if is_delta_table(path):
                out[f"{layer}.{path.name}"] = DeltaTable(str(path)).to_pyarrow_table()
    return out


def _rows(table: Any) -> list[str]:
    keep = [c for c in table.column_names if c not in RUN_COLUMNS]
    return sorted(json.dumps(r, default=str, sort_keys=True) for r in table.select(keep).to_pylist())


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cluster")
    generate(PATIENTS, SEED, tmp / "export", bad_rate=0.05)
    roots = {}
    for mode in ("local", "local-cluster"):
        root = tmp / mode
        done = _build(root, tmp / "export", mode)
        assert done.returncode == 0, f"{mode}: {done.stderr[-3000:]}"
        roots[mode] = root
    return roots


def test_the_cluster_build_ran_on_a_driver_and_workers(builds: dict[str, Path]) -> None:
    logs = "".join(p.read_text() for p in (builds["local-cluster"] / "_system" / "logs").glob("sail-*.log"))
    assert "starting worker" in logs and "worker 1 server is ready" in logs
    local_logs = "".join(p.read_text() for p in (builds["local"] / "_system" / "logs").glob("sail-*.log"))
    assert "starting worker" not in local_logs


def test_cluster_mode_gives_the_same_silver_and_gold_as_local_mode(builds: dict[str, Path]) -> None:
    local, cluster = _tables(builds["local"]), _tables(builds["local-cluster"])
    assert set(local) == set(cluster)
    assert {"silver.patient", "silver.observation", "gold.dim_patient", "gold.fct_encounter"} <= set(local)
    differ = [name for name in sorted(local) if _rows(local[name]) != _rows(cluster[name])]
    assert differ == [], f"tables that differ between local and cluster mode: {differ}"
    assert sum(t.num_rows for t in local.values()) > 1000


def test_a_run_with_nothing_new_starts_no_engine(builds: dict[str, Path]) -> None:
    root = builds["local"]
    logs = root / "_system" / "logs"
    before = sorted(p.name for p in logs.glob("sail-*.log"))
    env = clean_env(LAKEHOUSE_PSEUDONYM_KEY=TEST_KEY, LAKEHOUSE_AS_OF_DATE="2026-06-30")
    done = subprocess.run([sys.executable, "-m", "lakehouse_app.cli", "--root", str(root), "run", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["ingest"]["files"]["new"] == 0
    assert result["silver"]["up_to_date"] and result["gold"]["up_to_date"]
    assert sorted(p.name for p in logs.glob("sail-*.log")) == before, "a run with nothing new started the engine"
    assert "report: unchanged" in done.stderr
