"""Incremental, idempotent landing -> Bronze: manifest, re-runs, changed files, copy-in, reconciliation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pyspark.sql import functions as F

from bronze.job import ingest
from lakehouse.runlog import Run

MSG = "MSH|^~\\&|A|F|R|F|20240101||ADT^A01|{cid}|P|2.5\rPID|1||{cid}\r"


def _ingest(settings, paths=()):  # noqa: ANN001, ANN202
    return ingest(settings, list(paths), Run("ingest", settings))


def _versions(catalog) -> dict[str, int]:  # noqa: ANN001
    return {name: catalog.version(name) for name in catalog.list_tables()}


def test_rerun_writes_nothing_changed_file_dedups_and_copy_in_skips(settings, catalog, fixtures_dir,
                                                                     tmp_path: Path) -> None:
    inbox = tmp_path / "export"
    shutil.copytree(fixtures_dir / "synthea-bundles", inbox / "fhir")
    (inbox / "adt.hl7").write_text(MSG.format(cid="1") + MSG.format(cid="2"))
    (inbox / ".partial.tmp").write_text(MSG.format(cid="tmp"))
    (inbox / "_generator").mkdir()
    (inbox / "_generator" / "manifest.json").write_text("{}")
    # the bundles and SOURCE.md of the fixture folder, and adt.hl7; hidden and _ names are ignored
    files = len([p for p in (inbox / "fhir").iterdir() if p.is_file() and not p.name.startswith((".", "_"))]) + 1
    assert files > 2
    first = _ingest(settings, [inbox])
    assert first["hl7v2"] == {"received": 2, "bronze": 2, "quarantined": 0, "duplicates": 0}
    assert first["files"]["copied"] == files
    assert first["unknown"]["quarantined"] == 1  # SOURCE.md is not a clinical format
    landed = settings.landing_dir / "imports"
    assert [p.name for p in landed.rglob("adt.hl7")] == ["adt.hl7"]
    assert not list(landed.rglob(".partial.tmp")) and not list(landed.rglob("_generator"))
    assert catalog.read("_system.landing_manifest").count() == files

    before = _versions(catalog)
    second = _ingest(settings, [inbox])  # same inputs again: already landed, nothing new
    assert _versions(catalog) == before
    assert second["files"] == {"new": 0, "skipped": files, "copied": 0, "already_landed": files,
                               "refused": 0, "poisoned": 0,
                               "by_format": {"hl7v2": 0, "fhir": 0, "dicom": 0, "unknown": 0}}
    assert all(second[s]["received"] == 0 for s in ("hl7v2", "fhir", "dicom", "unknown"))

    landed_hl7 = next(landed.rglob("adt.hl7"))
    landed_hl7.write_text(MSG.format(cid="1") + MSG.format(cid="2") + MSG.format(cid="3"))  # appended message
    os.utime(landed_hl7, ns=(1, 1))
    third = _ingest(settings)
    assert third["hl7v2"] == {"received": 3, "bronze": 1, "quarantined": 0, "duplicates": 2}
    assert third["files"]["new"] == 1
    ids = sorted(r.message_control_id for r in catalog.read("bronze.hl7v2_messages").collect())
    assert ids == ["1", "2", "3"]
    assert catalog.read("_system.landing_manifest").filter(F.col("path").endswith("adt.hl7")).count() == 2


def test_sail_binaryfile_duplicates_large_files(spark, tmp_path: Path) -> None:
    """Sail 0.7 returns a large file once per read split; bronze.job drops the repeats by path.
    When this fails, Sail fixed it and the dropDuplicates in bronze.job._read_files can go."""
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (8 << 20))
    rows = spark.read.format("binaryFile").load([str(big)]).select("path").collect()  # type: ignore[attr-defined]
    assert len(rows) > 1
