"""Prometheus metrics: run records become textfile metrics, /metrics serves the registry, the dashboard
only queries metrics that exist."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lakehouse import metrics
from lakehouse.config import Settings
from lakehouse.runlog import Run

pytestmark = [pytest.mark.timeout(60), pytest.mark.fast]


@pytest.fixture()
def lh(make_lakehouse: Callable[..., Settings]) -> Settings:
    return make_lakehouse(attach_engine=False)


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


def ingest_run(settings: Settings, written: int, quarantined: int, seconds: float) -> Run:
    run = Run(command="ingest", settings=settings)
    run.read_file("landing/a.hl7", "ab" * 32, 10)
    run.read("bronze.hl7v2_messages", 1, 7)
    run.wrote("bronze.hl7v2_messages", 2, written)
    run.wrote("quarantine.hl7v2_messages", 1, quarantined)
    run.metric("seconds", seconds)
    return run


def test_record_run_writes_textfile_and_carries_cumulative_series(lh: Settings) -> None:
    job = (("pipeline_job", "ingest"),)
    bronze = (("pipeline_job", "ingest"), ("table", "bronze.hl7v2_messages"))
    quarantine = (("pipeline_job", "ingest"), ("table", "quarantine.hl7v2_messages"))

    path = metrics.record_run(ingest_run(lh, 100, 3, 2.5), "ok")
    assert path == lh.system_dir / "metrics" / "ingest.prom"
    first = samples(path)
    assert first[("lakehouse_table_last_run_rows_written", bronze)] == 100
    assert first[("lakehouse_table_last_run_rows_quarantined", quarantine)] == 3
    assert ("lakehouse_table_last_run_rows_written", quarantine) not in first
    assert first[("lakehouse_table_last_run_rows_read", bronze)] == 7
    assert first[("lakehouse_job_last_duration_seconds", job)] == 2.5
    assert first[("lakehouse_job_last_run_ok", job)] == 1
    success_at = first[("lakehouse_job_last_success_timestamp_seconds", job)]

    metrics.record_run(ingest_run(lh, 50, 0, 1.0), "ok")
    metrics.record_run(ingest_run(lh, 0, 0, 0.5), "failed")
    last = samples(path)
    assert last[("lakehouse_table_rows_written_total", bronze)] == 150
    assert last[("lakehouse_table_rows_quarantined_total", quarantine)] == 3
    assert last[("lakehouse_job_runs_total", (*job, ("status", "ok")))] == 2
    assert last[("lakehouse_job_runs_total", (*job, ("status", "failed")))] == 1
    assert last[("lakehouse_job_duration_seconds_total", job)] == 4.0
    assert last[("lakehouse_job_last_run_ok", job)] == 0
    assert success_at <= last[("lakehouse_job_last_success_timestamp_seconds", job)] \
        < last[("lakehouse_job_last_run_timestamp_seconds", job)]
    assert not [p for p in path.parent.iterdir() if p != path]    # written by rename, no left-overs

    # the same run also updates the registry of this process (what /metrics serves)
    assert (metrics.REGISTRY.get_sample_value("lakehouse_job_runs_total", dict((*job, ("status", "failed")))) or 0) >= 1


def test_unreadable_textfile_is_replaced_not_fatal(lh: Settings) -> None:
    path = metrics.textfile_path(lh.system_dir / "metrics", "silver")
    path.parent.mkdir(parents=True)
    path.write_text("this is { not prometheus\n")
    run = Run(command="silver", settings=lh)
    metrics.record_run(run, "ok")
    assert samples(path)[("lakehouse_job_runs_total", (("pipeline_job", "silver"), ("status", "ok")))] == 1


def test_metrics_endpoint_serves_the_registry() -> None:
    metrics.MLLP_RECEIVED.inc(0)
    server = metrics.start_metrics_server(0)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"lakehouse_mllp_messages_received", "lakehouse_mllp_ack_latency_seconds",
            "lakehouse_mllp_open_connections", "process_resident_memory_bytes"} <= names


def _exposed_names() -> set[str]:
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return names


def test_dashboard_queries_only_existing_metrics() -> None:
    dashboard = json.loads(metrics.grafana_dashboard())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    used = {name for e in exprs for name in re.findall(r"\b((?:lakehouse|process)_[a-z_]+)\b", e)}
    assert used, exprs
    assert used - _exposed_names() == set()
    assert {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p} == {"${datasource}"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
