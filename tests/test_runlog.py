"""Run log: one hash-chained record per run; verify catches tampering."""

from __future__ import annotations

import json
from collections.abc import Callable

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lakehouse.config import Settings
from lakehouse.runlog import read_runs, run_context, runs_path, verify_chain

pytestmark = pytest.mark.fast


@pytest.fixture()
def settings(make_lakehouse: Callable[..., Settings]) -> Settings:
    """The run log is delta-rs only: a lakehouse without the engine."""
    return make_lakehouse(attach_engine=False)


def test_runs_are_recorded_and_chained(settings) -> None:  # type: ignore[no-untyped-def]
    with run_context("ingest", settings) as run:
        run.read("bronze.x", 3, 10)
        run.wrote("silver.y", 4, 7)
    with pytest.raises(ValueError), run_context("silver", settings):
        raise ValueError("boom")
    records = read_runs(settings)
    assert [r["status"] for r in records] == ["ok", "failed"]
    assert json.loads(records[0]["outputs"]) == [{"table": "silver.y", "version": 4, "rows": 7}]
    assert "boom" in records[1]["error"]
    assert records[1]["prev_hash"] == records[0]["hash"]
    ok, message = verify_chain(records)
    assert ok, message
    prom = (settings.system_dir / "metrics" / "ingest.prom").read_text()
    assert 'pipeline_job="ingest"' in prom


def test_verify_catches_an_edited_record(settings) -> None:  # type: ignore[no-untyped-def]
    for cmd in ("a", "b", "c"):
        with run_context(cmd, settings):
            pass
    path = str(runs_path(settings))
    table = DeltaTable(path).to_pyarrow_table().to_pylist()
    table[1]["status"] = "failed"  # rewrite history
    schema = DeltaTable(path).schema().to_arrow()
    write_deltalake(path, pa.Table.from_pylist(table, schema=pa.schema(schema)), mode="overwrite")
    ok, message = verify_chain(read_runs(settings))
    assert not ok and "seq 2" in message


def test_secret_is_not_in_the_run_record(settings) -> None:  # type: ignore[no-untyped-def]
    with run_context("x", settings):
        pass
    assert "test-key-not-secret" not in json.dumps(read_runs(settings), default=str)
