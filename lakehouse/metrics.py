"""The project's one Prometheus registry and every metric it exposes.

Long-running commands (``listen``, ``serve``) expose :data:`REGISTRY` on ``/metrics``
(:func:`start_metrics_server`). Batch runs call :func:`record_run`, which updates the same families in
this process and writes ``<root>/_system/metrics/<job>.prom`` for node_exporter's textfile collector.
A batch process starts from zero each time, so the textfile carries the cumulative series
(runs, rows written, last success time) over from the previous file of that job.
The job label is ``pipeline_job``: Prometheus reserves ``job`` for the scrape job (it would rename ours
to ``exported_job``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
    write_to_textfile,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from lakehouse.errors import ConfigError
from lakehouse.logs import get_logger

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from lakehouse.runlog import Run

log = get_logger(__name__)

# ``*_created`` series double every counter in a textfile and no dashboard here uses them
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

QUARANTINE_LAYER = "quarantine"


@dataclass(frozen=True)
class JobMetrics:
    """Pipeline metric families; one set in :data:`REGISTRY`, a fresh set per textfile."""

    runs: Counter
    last_run: Gauge
    last_success: Gauge
    last_status_ok: Gauge
    last_duration: Gauge
    duration_total: Counter
    rows_read: Gauge
    rows_written: Gauge
    rows_quarantined: Gauge
    rows_written_total: Counter
    rows_quarantined_total: Counter


def _job_metrics(registry: CollectorRegistry) -> JobMetrics:
    return JobMetrics(
        runs=Counter("lakehouse_job_runs", "Pipeline runs by job and final status", ["pipeline_job", "status"],
                     registry=registry),
        last_run=Gauge("lakehouse_job_last_run_timestamp_seconds", "End time of the job's last run", ["pipeline_job"],
                       registry=registry),
        last_success=Gauge("lakehouse_job_last_success_timestamp_seconds", "End time of the job's last ok run",
                           ["pipeline_job"], registry=registry),
        last_status_ok=Gauge("lakehouse_job_last_run_ok", "1 if the job's last run succeeded, else 0", ["pipeline_job"],
                             registry=registry),
        last_duration=Gauge("lakehouse_job_last_duration_seconds", "Duration of the job's last run", ["pipeline_job"],
                            registry=registry),
        duration_total=Counter("lakehouse_job_duration_seconds", "Total seconds spent in runs of the job",
                               ["pipeline_job"], registry=registry),
        rows_read=Gauge("lakehouse_table_last_run_rows_read", "Rows the job's last run read from a table",
                        ["pipeline_job", "table"], registry=registry),
        rows_written=Gauge("lakehouse_table_last_run_rows_written", "Rows the job's last run wrote to a table",
                           ["pipeline_job", "table"], registry=registry),
        rows_quarantined=Gauge("lakehouse_table_last_run_rows_quarantined",
                               "Rows the job's last run wrote to a quarantine table", ["pipeline_job", "table"],
                               registry=registry),
        rows_written_total=Counter("lakehouse_table_rows_written", "Rows written to a table, all runs",
                                   ["pipeline_job", "table"], registry=registry),
        rows_quarantined_total=Counter("lakehouse_table_rows_quarantined",
                                       "Rows written to a quarantine table, all runs", ["pipeline_job", "table"],
                                       registry=registry),
    )


JOB = _job_metrics(REGISTRY)

# -- MLLP listener ------------------------------------------------------------------------------

MLLP_RECEIVED = Counter("lakehouse_mllp_messages_received", "Complete MLLP frames received", registry=REGISTRY)
MLLP_ACKED = Counter("lakehouse_mllp_messages_acked",
                     "Messages durably landed and acknowledged with MSA|AA", registry=REGISTRY)
MLLP_REJECTED = Counter("lakehouse_mllp_messages_rejected", "Messages answered with AE or AR, by reason",
                        ["code", "reason"], registry=REGISTRY)
MLLP_ACK_LATENCY = Histogram(
    "lakehouse_mllp_ack_latency_seconds", "From the end of a received frame to its ACK written to the socket",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY)
MLLP_OPEN_CONNECTIONS = Gauge("lakehouse_mllp_open_connections", "Open MLLP client connections",
                              registry=REGISTRY)
MLLP_CONNECTIONS = Counter("lakehouse_mllp_connections", "MLLP client connections accepted", registry=REGISTRY)
MLLP_MALFORMED = Counter("lakehouse_mllp_malformed_frames",
                         "Framing errors: bytes outside a frame, frames cut by a disconnect, timeout or restart",
                         ["kind"], registry=REGISTRY)
MLLP_DISCARDED_BYTES = Counter("lakehouse_mllp_discarded_bytes", "Bytes received outside any MLLP frame",
                               registry=REGISTRY)
MLLP_LANDED_BYTES = Counter("lakehouse_mllp_landed_bytes", "Message bytes durably written to the landing zone",
                            registry=REGISTRY)
MLLP_LANDED_FILES = Counter("lakehouse_mllp_landed_files", "Landing files committed (one per group commit)",
                            registry=REGISTRY)
MLLP_COMMIT_SECONDS = Histogram("lakehouse_mllp_commit_seconds",
                                "Time to land one group commit (write, fsync, rename, fsync dir)",
                                buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
                                registry=REGISTRY)
MLLP_BATCH_SIZE = Histogram("lakehouse_mllp_commit_batch_messages", "Messages per group commit",
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=REGISTRY)
MLLP_FOLLOW_CYCLES = Counter("lakehouse_mllp_follow_cycles", "--follow ingestion attempts by outcome",
                             ["outcome"], registry=REGISTRY)


# -- exposition ---------------------------------------------------------------------------------

def start_metrics_server(port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve :data:`REGISTRY` on ``http://host:port/metrics`` from a daemon thread; returns the server
    (``server.server_address[1]`` is the bound port when ``port`` is 0; ``server.shutdown()`` stops it)."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
                          "choose another --metrics-port") from None
    log.info("metrics on http://%s:%d/metrics", host, server.server_address[1])
    return server


def textfile_path(metrics_dir: Path, job: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", job).strip("._") or "job"
    return metrics_dir / f"{safe}.prom"


def _previous_samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of the last textfile of a job, keyed by (sample name, sorted labels)."""
    if not path.is_file():
        return {}
    try:
        families = list(text_string_to_metric_families(path.read_text()))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable metrics textfile %s (%s); cumulative series restart at 0", path, exc)
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): float(s.value) for f in families for s in f.samples}


def _carry_over(metrics: JobMetrics, previous: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
    counters = {
        "lakehouse_job_runs_total": metrics.runs,
        "lakehouse_job_duration_seconds_total": metrics.duration_total,
        "lakehouse_table_rows_written_total": metrics.rows_written_total,
        "lakehouse_table_rows_quarantined_total": metrics.rows_quarantined_total,
    }
    for (name, labels), value in previous.items():
        if name in counters and value > 0:
            counters[name].labels(**dict(labels)).inc(value)
        elif name == "lakehouse_job_last_success_timestamp_seconds":
            metrics.last_success.labels(**dict(labels)).set(value)


def _table_rows(items: list[dict[str, Any]], name_key: str) -> dict[str, int]:
    rows: dict[str, int] = {}
    for item in items:
        if item.get("kind", "table") != "table" or item.get(name_key) is None or item.get("rows") is None:
            continue
        rows[str(item[name_key])] = rows.get(str(item[name_key]), 0) + int(item["rows"])
    return rows


def _apply(metrics: JobMetrics, job: str, status: str, seconds: float, ended: float,
           read: dict[str, int], written: dict[str, int]) -> None:
    metrics.runs.labels(pipeline_job=job, status=status).inc()
    metrics.last_run.labels(pipeline_job=job).set(ended)
    metrics.last_status_ok.labels(pipeline_job=job).set(1 if status == "ok" else 0)
    if status == "ok":
        metrics.last_success.labels(pipeline_job=job).set(ended)
    metrics.last_duration.labels(pipeline_job=job).set(seconds)
    metrics.duration_total.labels(pipeline_job=job).inc(seconds)
    for table, rows in read.items():
        metrics.rows_read.labels(pipeline_job=job, table=table).set(rows)
    for table, rows in written.items():
        if table.split(".", 1)[0] == QUARANTINE_LAYER:
            metrics.rows_quarantined.labels(pipeline_job=job, table=table).set(rows)
            metrics.rows_quarantined_total.labels(pipeline_job=job, table=table).inc(rows)
        else:
            metrics.rows_written.labels(pipeline_job=job, table=table).set(rows)
            metrics.rows_written_total.labels(pipeline_job=job, table=table).inc(rows)


def record_run(run: Run, status: str) -> Path | None:
    """Turn a finished run into metrics: update this process's registry and write the job's textfile.

    Rows read come from the run's table inputs, rows written from its outputs (outputs to
    ``quarantine.*`` count as quarantined). Returns the textfile written, or None when the root is
    remote (``s3://...``), where node_exporter cannot read it.
    """
    job = run.command
    ended = time.time()
    seconds = run.metrics.get("seconds")
    if not isinstance(seconds, int | float):
        seconds = max(0.0, ended - run.started_at.timestamp())
    read = _table_rows(run.inputs, "name")
    written = _table_rows(run.outputs, "table")
    _apply(JOB, job, status, float(seconds), ended, read, written)

    path = textfile_path(run.settings.system_dir / "metrics", job)
    path.parent.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry(auto_describe=True)
    fresh = _job_metrics(registry)
    _carry_over(fresh, _previous_samples(path))
    _apply(fresh, job, status, float(seconds), ended, read, written)
    write_to_textfile(str(path), registry)  # writes a temporary file and renames it over the old one
    return path


def grafana_dashboard() -> str:
    """The Grafana dashboard (JSON) over every metric here; shipped in the package (``lakehouse dashboard``)."""
    return files("lakehouse").joinpath("grafana-dashboard.json").read_text(encoding="utf-8")
