"""Smoke test of ``make bench``: a tiny scale end to end, the JSON shape, and equal row counts on both engines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.harness import run_bench
from lakehouse.config import get_settings, set_settings


@pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs java")
def test_bench_tiny_scale_writes_report_and_engines_agree(spark, tmp_path: Path) -> None:
    previous = get_settings()
    try:
        results = run_bench([3], tmp_path / "out", tmp_path / "work", quick=True, classic=True, mllp_seconds=0,
                            increment=False, full_max_patients=0,  # Bronze only: Silver/Gold have their own tests
                            cli_full_max_patients=0)
    finally:
        set_settings(previous)
    data = json.loads((tmp_path / "out" / "BENCHMARKS.json").read_text())
    assert (tmp_path / "out" / "BENCHMARKS.md").read_text().startswith("# Benchmarks")
    assert (tmp_path / "out" / "benchmarks-scale.png").stat().st_size > 0
    assert data["machine"]["nproc"] >= 1 and data["date"]
    scale = data["scales"]["3"]
    bronze = scale["stages"]["bronze"]
    assert bronze["rows"] > 0 and bronze["seconds"] > 0 and bronze["peak_memory_mb"] > 0
    assert bronze["throughput"]["HL7 messages/s"] > 0 and bronze["delta_versions_written"] > 0
    assert set(scale["stages"]) == {"bronze", "silver", "gold"}
    assert scale["end_to_end_seconds"] >= bronze["seconds"]
    assert scale["stages"]["silver"]["skipped"].startswith("not run at this scale")
    rewritten = scale["rerun_no_new_data"]["tables_written"]
    assert not [t for t in rewritten if not t.startswith("_system.")], rewritten  # no data table changes
    neutral = results["scales"]["3"]["engine_neutral"]
    assert "error" not in neutral["classic_spark"], neutral["classic_spark"]
    assert neutral["rows_match"] and all(neutral["rows_match"].values()), neutral
    assert set(scale["sail_vs_spark"]["ratio_sail_over_spark"]) >= {"bronze_hl7v2", "bronze_fhir", "total"}
    # the neutral Bronze parse finds as many messages as the pipeline's Bronze (good + quarantined)
    sail = neutral["sail"]["stages"]["bronze_hl7v2"]
    assert sail["rows"] + sail["quarantined"] >= results["scales"]["3"]["stages"]["bronze"]["received"]["hl7v2"]
