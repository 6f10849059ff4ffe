"""The CLI as a user runs it: a real process, real engine, real tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import clean_env

from lakehouse.catalog import Catalog
from lakehouse.runlog import run_context


def lakehouse(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(LAKEHOUSE_PSEUDONYM_KEY="cli-test-key-0123456789")
    return subprocess.run([sys.executable, "-m", "lakehouse_app.cli", "--root", str(root), *args],
                          capture_output=True, text=True, env=env, timeout=180)


def _seed_tables(catalog: Catalog, spark, settings) -> None:  # type: ignore[no-untyped-def]
    with run_context("seed", settings) as run:
        catalog.append(spark.createDataFrame([(1, "a")], "id BIGINT, name STRING"), "silver.things")
        catalog.append(spark.createDataFrame([(2, "b")], "id BIGINT, name STRING"), "silver.things")
        run.wrote("silver.things", catalog.version("silver.things"), 2)


def test_status_json_history_and_show_as_of(catalog: Catalog, spark, settings) -> None:  # type: ignore[no-untyped-def]
    _seed_tables(catalog, spark, settings)
    root = settings.root_path
    status = lakehouse(root, "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = {(r["layer"], r["table"]): r for r in json.loads(status.stdout)}
    assert rows[("silver", "things")]["rows"] == 2 and rows[("silver", "things")]["version"] == 2
    assert ("_system", "runs") in rows

    hist = lakehouse(root, "history", "silver.things", "--json")
    assert [h["operation"] for h in json.loads(hist.stdout)][-1] == "CREATE TABLE"

    show = lakehouse(root, "show", "silver.things", "--as-of-version", "1", "--json")
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout) == [{"id": 1, "name": "a"}]
    show = lakehouse(root, "show", "silver.things", "--json")
    assert sorted(r["id"] for r in json.loads(show.stdout)) == [1, 2]


def test_audit_verify_and_lineage(catalog: Catalog, spark, settings) -> None:  # type: ignore[no-untyped-def]
    _seed_tables(catalog, spark, settings)
    root = settings.root_path
    verify = lakehouse(root, "audit", "verify")
    assert verify.returncode == 0 and "verified" in verify.stdout
    lin = lakehouse(root, "audit", "lineage", "silver.things", "--version", "1", "--json")
    assert lin.returncode == 0, lin.stderr
    assert json.loads(lin.stdout)["command"] == "seed"
    events = (root / "_system" / "openlineage" / "events.jsonl").read_text().splitlines()
    kinds = [json.loads(e)["eventType"] for e in events]
    assert kinds[:2] == ["START", "COMPLETE"]
    assert json.loads(events[1])["outputs"][0]["name"] == "silver.things"
    assert "cli-test-key" not in "".join(events)


def test_errors_are_one_line_with_non_zero_exit(tmp_path: Path) -> None:
    bad = lakehouse(tmp_path, "show", "silver.nothing")
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and "does not exist" in bad.stderr
    env_bad = subprocess.run([sys.executable, "-m", "lakehouse_app.cli", "status"], capture_output=True, text=True,
                             env=clean_env(LAKEHOUSE_ENGINE="cloud"), timeout=60)
    assert env_bad.returncode == 2 and "LAKEHOUSE_ENGINE" in env_bad.stderr


def test_steps_print_progress_on_stderr_and_tables_not_dicts(tmp_path: Path) -> None:
    root = tmp_path / "lh"
    first, second = tmp_path / "first", tmp_path / "second"
    for out, seed in ((first, "1"), (second, "2")):
        gen = lakehouse(root, "generate", "--patients", "2", "--seed", seed, "--out", str(out))
        assert gen.returncode == 0, gen.stderr
        assert "FHIR resources" in gen.stdout and "{'" not in gen.stdout  # a table, not a dict repr
        assert "] generate" in gen.stderr

    ingest = lakehouse(root, "ingest", str(first))
    assert ingest.returncode == 0, ingest.stderr
    # one progress line per group of files, with the elapsed time: "  [    2.5s] bronze   hl7v2 1/1   12 received ..."
    progress = [line.strip() for line in ingest.stderr.splitlines() if "] bronze" in line]
    assert any(line.startswith("[") and "s] bronze" in line and "hl7v2 1/1" in line and "received" in line
               for line in progress), ingest.stderr
    assert "received" in ingest.stdout and "quarantined" in ingest.stdout and "hl7v2" in ingest.stdout
    assert "{'" not in ingest.stdout and "'received':" not in ingest.stdout
    assert "] bronze" not in ingest.stdout  # progress goes to stderr only

    as_json = lakehouse(root, "ingest", "--json", str(second))
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)  # stdout is only the JSON; progress is on stderr
    assert {"received", "bronze", "quarantined"} <= set(report["fhir"]) and report["fhir"]["received"] > 0
    assert "] bronze" in as_json.stderr
