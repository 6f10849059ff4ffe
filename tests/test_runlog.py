"""Run log: one HMAC-chained record per run, anchored outside the root; verify catches tampering."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lakehouse.audit import anchor_path, audit_key
from lakehouse.config import Settings
from lakehouse.runlog import GENESIS, canonical, read_runs, record_read, run_context, runs_path, verify_audit

pytestmark = pytest.mark.fast


@pytest.fixture()
def settings(make_lakehouse: Callable[..., Settings], tmp_path: Path) -> Settings:
    """The run log is delta-rs only: a lakehouse without the engine; its audit key and anchor outside the root."""
    return make_lakehouse(attach_engine=False, audit_key_file=tmp_path / "keys" / "audit.key",
                          audit_anchor=tmp_path / "anchor" / "runs.log")


def _three_runs(settings: Settings) -> None:
    for cmd in ("a", "b", "c"):
        with run_context(cmd, settings):
            pass


def test_runs_are_recorded_and_chained(settings) -> None:  # type: ignore[no-untyped-def]
    with run_context("ingest", settings) as run:
        run.read("bronze.x", 3, 10)
        run.wrote("silver.y", 4, 7)
    with pytest.raises(ValueError), run_context("silver", settings):
        raise ValueError("boom")
    records = read_runs(settings)
    assert [r["status"] for r in records] == ["ok", "failed"]
    assert json.loads(records[0]["outputs"]) == [{"table": "silver.y", "version": 4, "rows": 7}]
    assert "boom" not in records[1]["error"]  # error text may quote data: kept out of the chain
    assert records[1]["error"].startswith("ValueError (message in _system/errors/")
    error_file = settings.system_dir / "errors" / f"{records[1]['run_id']}.txt"
    assert error_file.read_text() == "ValueError: boom\n" and error_file.stat().st_mode & 0o077 == 0
    assert records[0]["user"] == pwd.getpwuid(os.geteuid()).pw_name
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert records[0]["hash"].startswith("hmac-sha256:")
    ok, message = verify_audit(settings)
    assert ok, message
    prom = (settings.system_dir / "metrics" / "ingest.prom").read_text()
    assert 'pipeline_job="ingest"' in prom


def test_verify_catches_an_edited_record(settings) -> None:  # type: ignore[no-untyped-def]
    _three_runs(settings)
    path = str(runs_path(settings))
    table = DeltaTable(path).to_pyarrow_table().to_pylist()
    table[1]["status"] = "failed"  # rewrite history
    schema = DeltaTable(path).schema().to_arrow()
    write_deltalake(path, pa.Table.from_pylist(table, schema=pa.schema(schema)), mode="overwrite")
    ok, message = verify_audit(settings)
    assert not ok and "seq 2" in message


def test_verify_catches_deleting_the_last_records(settings) -> None:  # type: ignore[no-untyped-def]
    _three_runs(settings)
    assert verify_audit(settings)[0]
    DeltaTable(str(runs_path(settings))).delete("seq = 3")
    ok, message = verify_audit(settings)
    assert not ok and "seq 3" in message


def test_verify_catches_restoring_an_older_run_log(settings) -> None:  # type: ignore[no-untyped-def]
    _three_runs(settings)
    table = DeltaTable(str(runs_path(settings)))
    table.restore(1)  # the run log as it was after two runs
    assert len(read_runs(settings)) == 2
    ok, message = verify_audit(settings)
    assert not ok and "truncated, rolled back or rewritten" in message


def test_verify_catches_a_whole_chain_rewrite(settings) -> None:  # type: ignore[no-untyped-def]
    """Someone who can write the root (but not read the audit key) edits a record and re-hashes every link after
    it, as an unkeyed chain would let them."""
    _three_runs(settings)
    path = str(runs_path(settings))
    rows = sorted(DeltaTable(path).to_pyarrow_table().to_pylist(), key=lambda r: r["seq"])
    rows[0]["command"] = "nothing-happened"
    prev = GENESIS
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = hashlib.sha256((prev + canonical(row)).encode()).hexdigest()
        prev = row["hash"]
    schema = DeltaTable(path).schema().to_arrow()
    write_deltalake(path, pa.Table.from_pylist(rows, schema=pa.schema(schema)), mode="overwrite")
    assert not verify_audit(settings)[0]
    # even with the key, a rewrite no longer matches the heads anchored outside the root
    key = audit_key(settings)
    import hmac as hmac_lib
    prev = GENESIS
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = "hmac-sha256:" + hmac_lib.new(key, (prev + canonical(row)).encode(), hashlib.sha256).hexdigest()
        prev = row["hash"]
    write_deltalake(path, pa.Table.from_pylist(rows, schema=pa.schema(schema)), mode="overwrite")
    ok, message = verify_audit(settings)
    assert not ok and "anchored record seq" in message


def test_a_forged_anchor_line_is_detected_and_keys_live_outside_the_root(settings) -> None:  # type: ignore[no-untyped-def]
    _three_runs(settings)
    anchor = anchor_path(settings)
    lines = anchor.read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["seq"] = 2
    anchor.write_text("\n".join([*lines, json.dumps(forged)]) + "\n")
    ok, message = verify_audit(settings)
    assert not ok and "altered or forged" in message
    inside = settings.model_copy(update={"audit_anchor": settings.root_path / "anchor.log"})
    with pytest.raises(Exception, match="inside the lakehouse root"):
        anchor_path(inside)


def test_reads_of_restricted_layers_are_recorded(settings) -> None:  # type: ignore[no-untyped-def]
    record_read(settings, "show", ["bronze.hl7v2_messages"], rows_shown=5)
    (record,) = read_runs(settings)
    assert record["command"] == "show" and json.loads(record["inputs"])[0]["name"] == "bronze.hl7v2_messages"
    assert verify_audit(settings)[0]


def test_secret_is_not_in_the_run_record(settings) -> None:  # type: ignore[no-untyped-def]
    with run_context("x", settings):
        pass
    assert "test-key-not-secret" not in json.dumps(read_runs(settings), default=str)
