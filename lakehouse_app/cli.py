"""The ``lakehouse`` command line."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from bronze import mllp
from gold.serving import FlightSqlServer
from gold.serving import serve as serve_gold
from gold.training import mlflow_ui_hint
from lakehouse.catalog import Catalog
from lakehouse.config import (
    Settings,
    as_location,
    get_settings,
    load_settings,
    restrict_new_files,
    set_settings,
)
from lakehouse.engine import get_spark
from lakehouse.errors import (
    AuditChainError,
    LakehouseError,
    PhiFoundError,
    ReconciliationError,
    error_line,
    exit_process,
)
from lakehouse.logs import setup_logging
from lakehouse.metrics import grafana_dashboard
from lakehouse.runlog import lineage_of, read_runs, record_read, run_context, verify_audit
from lakehouse.status import deid_status, table_status
from lakehouse_app import pipeline, render
from lakehouse_app.erase import erase as erase_patient
from lakehouse_app.progress_lines import ProgressLines
from lakehouse_app.rekey import rekey as rotate_key
from lakehouse_app.report import write_report
from lakehouse_app.unmapped_report import source_coverage, unmapped_codes
from silver.deid.scan import scan
from silver.views.commands import conformance, run_view_on_bronze

warnings.filterwarnings("ignore", message=".*pandas.*", category=FutureWarning)

app = typer.Typer(help="Clinical lakehouse: HL7 v2, FHIR R4 and DICOM on Delta Lake, bronze -> silver -> gold.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
audit_app = typer.Typer(help="Audit trail: verify the hash chain, trace lineage.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
report_app = typer.Typer(help="Reports: the HTML run report, unmapped codes.", no_args_is_help=True)
app.add_typer(report_app, name="report")
view_app = typer.Typer(help="SQL-on-FHIR v2 ViewDefinitions: run one over Bronze, run the official test suite.",
                       no_args_is_help=True)
app.add_typer(view_app, name="view")

console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Configuration and data errors become one red line and the exit code of ``lakehouse.errors.ExitCode``."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LakehouseError, OSError) as exc:
            code, message = error_line(exc)  # type: ignore[misc]
            err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(int(code)) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    root: Annotated[Path | None, typer.Option(help="lakehouse root (default ./lakehouse or LAKEHOUSE_ROOT)")] = None,
    config: Annotated[Path | None, typer.Option(help="settings file (default ./lakehouse.yaml)")] = None,
    engine: Annotated[str | None, typer.Option(help="local | connect | spark")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    setup_logging("INFO" if verbose else None)
    restrict_new_files()
    try:
        # a lakehouse of generated data reads HL7 times in the zone the generator wrote them in, unless configured:
        # every command, not only `demo`, so that a later `silver` or `run` gives the same facts
        set_settings(pipeline.with_generator_timezone(load_settings(config_file=config, root=root, engine=engine)))
    except LakehouseError as exc:
        err.print(f"[red]error:[/red] {error_line(exc)[1]}", highlight=False, soft_wrap=True)  # type: ignore[index]
        raise typer.Exit(int(exc.exit_code)) from None


# layers whose reads the run log records: PHI (bronze, quarantine, _system) and pseudonymized detail (silver)
RESTRICTED_LAYERS = ("bronze", "quarantine", "_system", "silver")


def _settings() -> Settings:
    return get_settings()


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _show(renderables: Iterable[RenderableType]) -> None:
    for renderable in renderables:
        console.print(renderable)


def _progress() -> AbstractContextManager[None]:
    """Progress lines of the steps inside the block, on stderr (stdout may carry --json)."""
    return ProgressLines(err).shown()


# -- pipeline ---------------------------------------------------------------------------------

@app.command()
@cli_errors
def generate(
    patients: Annotated[int, typer.Option(min=1)] = 100,
    seed: Annotated[int, typer.Option()] = 42,
    out: Annotated[Path | None, typer.Option(help="landing dir (default <root>/landing)")] = None,
    bad_rate: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.02,
    ndjson: Annotated[bool, typer.Option(help="also write FHIR Bulk Data NDJSON")] = False,
) -> None:
    """Write synthetic HL7 v2, FHIR R4 and DICOM for the same patients into the landing zone."""

    with _progress():
        result = pipeline.generate(_settings(), patients, seed, out, bad_rate, ndjson)
    _show(render.generate(result))


@app.command()
@cli_errors
def ingest(
    paths: Annotated[list[str] | None, typer.Argument(
        help="files or folders to copy into landing first (local, or s3://bucket/prefix)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Land files (HL7 v2, FHIR, DICOM; detected by content) and ingest what is new into Bronze."""

    with _progress():
        result = pipeline.ingest(_settings(), [as_location(p) for p in paths or []])
    _print_json(result) if as_json else _show(render.ingest(result))


@app.command()
@cli_errors
def silver(as_json: Annotated[bool, typer.Option("--json")] = False,
           force: Annotated[bool, typer.Option("--force", help="rebuild even when nothing changed")] = False) -> None:
    """Build the Silver tables from Bronze (skipped when Bronze, code, rules and configuration are unchanged)."""

    with _progress():
        result = pipeline.silver(_settings(), force=force)
    _print_json(result) if as_json else _show(render.silver(result))


@app.command()
@cli_errors
def gold(as_json: Annotated[bool, typer.Option("--json")] = False,
         force: Annotated[bool, typer.Option("--force", help="rebuild even when nothing changed")] = False,
         full_refresh: Annotated[bool, typer.Option("--full-refresh", help="rebuild every Gold table from scratch "
                                                    "(after a column change or a de-identification profile "
                                                    "change)")] = False) -> None:
    """Build Gold with dbt (dbt build; skipped when Silver, the dbt project and configuration are unchanged)."""

    with _progress():
        result = pipeline.gold(_settings(), force=force, full_refresh=full_refresh)
    _print_json(result) if as_json else _show(render.gold(result))


@app.command()
@cli_errors
def features(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Build gold.features_readmission (point-in-time correct readmission features) from Silver."""

    with _progress():
        result = pipeline.features(_settings())
    _print_json(result) if as_json else _show(render.features(result))


@app.command()
@cli_errors
def train(
    as_of_version: Annotated[int | None, typer.Option("--as-of-version", help="feature table version")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train the 30-day readmission model, log it to MLflow and register it as readmission_30d."""

    with _progress():
        result = pipeline.train(_settings(), as_of_version=as_of_version)
    if as_json:
        _print_json(result)
        return
    _show(render.train(result))
    console.print(f"Look at it: {mlflow_ui_hint(_settings())}", highlight=False, soft_wrap=True)


@app.command()
@cli_errors
def serve(
    host: Annotated[str, typer.Option(help="bind address; any non-loopback address needs TLS and a serve token")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0: any free port")] = 32010,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve over TLS (grpc+tls://)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert")] = None,
) -> None:
    """Serve the Gold tables, read-only, to BI tools over Arrow Flight SQL until Ctrl-C."""

    settings = _settings()
    server = FlightSqlServer(settings, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)  # refuses unsafe
    record_read(settings, "serve", [], host=host, port=port, tls=tls_cert is not None, token=server.token is not None)
    serve_gold(server, announce=lambda line: console.print(line, highlight=False, soft_wrap=True))


@app.command()
@cli_errors
def dashboard() -> None:
    """Print the Grafana dashboard (JSON) over the Prometheus metrics of batch runs, `listen` and `serve`."""

    typer.echo(grafana_dashboard())


@report_app.command("html")
@cli_errors
def report_html() -> None:
    """Write the HTML run report (row counts, quarantine, data quality, runs, charts) and print its path."""

    path = write_report(_settings())
    console.print(f"report: {path.as_uri()}", highlight=False, soft_wrap=True)


@report_app.command("unmapped")
@cli_errors
def report_unmapped(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Codes of silver.observation/condition/medication_request not mapped to LOINC/ICD-10-CM/RxNorm, with counts."""

    rows = unmapped_codes(_settings())
    if as_json:
        _print_json(rows)
        return
    out = Table("domain", "code", "system", "count", title=f"unmapped codes ({len(rows)})")
    for r in rows:
        out.add_row(r["domain"], str(r["code"]), str(r["system"]), f"{r['count']:,}")
    console.print(out)


@report_app.command("coverage")
@cli_errors
def report_coverage(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per source and message/resource type: received -> silver / quarantined / not in scope / superseded.

    Exits 4 when a record is unaccounted for.
    """

    rows = source_coverage(_settings())
    if as_json:
        _print_json(rows)
    else:
        _show(render.coverage(rows))
    lost = [f"{r['source']} {r['record_type']}" for r in rows if r["unaccounted"]]
    if lost:
        raise ReconciliationError(f"source records unaccounted for: {', '.join(lost)}")


def _write_report_link(settings: Settings) -> None:
    """After a run: the HTML report, linked on stderr (stdout may carry --json)."""

    err.print(f"report: {write_report(settings).as_uri()}", highlight=False, soft_wrap=True)


@app.command("run")
@cli_errors
def run_all(paths: Annotated[list[str] | None, typer.Argument()] = None,
            as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Run every layer: ingest, silver, gold."""

    with _progress():
        result = pipeline.run_all(_settings(), [as_location(p) for p in paths or []])
    _print_json(result) if as_json else _show(render.run(result))
    unchanged = result["silver"].get("up_to_date") and result["gold"].get("up_to_date")
    if result["ingest"]["files"]["new"] or not unchanged:
        _write_report_link(_settings())
    else:  # nothing new: the last report still describes every table (`lakehouse report html` writes one anyway)
        err.print("report: unchanged (nothing new)", highlight=False)


@app.command()
@cli_errors
def demo(
    patients: Annotated[int, typer.Option(min=1)] = 200,
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Generate synthetic data and run the whole pipeline on the embedded engine."""

    settings = _settings()
    console.print(f"[bold]lakehouse root:[/bold] {settings.root_path}")
    with _progress():
        pipeline.generate(settings, patients, seed, None, 0.02)
        settings = pipeline.with_generator_timezone(settings)
        set_settings(settings)
        console.print(f"facility time zone: {settings.facility_timezone}", highlight=False)
        built = pipeline.run_all(settings, [])
        features_built = pipeline.features(settings)
        trained = pipeline.train(settings)
    _show([*render.run(built), *render.features(features_built), *render.train(trained)])
    _status_table(settings)
    console.print(f"Look at the model: {mlflow_ui_hint(settings)}", highlight=False, soft_wrap=True)
    _write_report_link(settings)
    console.print(f"\nTry: lakehouse --root {settings.root_path} show gold.mart_readmission_30d")


@app.command()
@cli_errors
def listen(
    port: Annotated[int, typer.Option(min=0, max=65535, help="MLLP port (0: any free port)")] = 2575,
    host: Annotated[str, typer.Option(help="bind address; 0.0.0.0 exposes PHI to the network")] = "127.0.0.1",
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus /metrics on this port")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve MLLP over TLS")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for --tls-cert")] = None,
    max_message_bytes: Annotated[int, typer.Option(min=1024, help="larger messages get AR")] = 10 * 1024 * 1024,
    read_timeout: Annotated[float, typer.Option(help="seconds of silence allowed mid-message")] = 30.0,
    frame_deadline: Annotated[float, typer.Option(help="seconds a whole message may take to arrive")] = 120.0,
    idle_timeout: Annotated[float, typer.Option(help="seconds a connection may be silent between messages "
                                                     "(0: never close)")] = 600.0,
    max_connections: Annotated[int, typer.Option(min=1, help="open connections in total")] = 64,
    max_connections_per_peer: Annotated[int, typer.Option(min=1, help="open connections per address")] = 16,
    tls_client_ca: Annotated[Path | None, typer.Option(help="PEM CA: require client certificates it signed "
                                                             "(mutual TLS)")] = None,
    allow_peer: Annotated[list[str] | None, typer.Option(help="network allowed to connect (CIDR; repeat); "
                                                               "default: any")] = None,
    follow: Annotated[bool, typer.Option(help="ingest new landing files into Bronze while listening")] = False,
    follow_interval: Annotated[float, typer.Option(min=0.5, help="seconds between --follow ingestions")] = 5.0,
) -> None:
    """Receive HL7 v2 over MLLP; ACK each message once it is durably in landing/mllp/."""

    config = mllp.ListenerConfig(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key,
                                 tls_client_ca=tls_client_ca, allowed_peers=tuple(allow_peer or ()),
                                 max_message_bytes=max_message_bytes, read_timeout=read_timeout,
                                 frame_deadline=frame_deadline, idle_timeout=idle_timeout or None,
                                 max_connections=max_connections, max_connections_per_peer=max_connections_per_peer)
    mllp.serve(_settings(), config, metrics_port=metrics_port, follow=follow, follow_interval=follow_interval,
          on_ready=lambda s: err.print(f"listening for MLLP on {host}:{s.port}{' (TLS)' if tls_cert else ''}",
                                       highlight=False))


# -- inspection -------------------------------------------------------------------------------

def _status_table(settings: Settings) -> list[dict[str, Any]]:

    rows = table_status(settings)
    table = Table("layer", "table", "rows", "version", "last write", "de-id profile",
                  title=f"lakehouse at {settings.root_path}")
    for r in rows:
        table.add_row(r["layer"], r["table"], f"{r['rows']:,}", str(r["version"]), str(r["last_write"]),
                      r.get("deid_profile") or "")
    console.print(table)
    deid = deid_status(settings, rows)
    console.print(f"de-identification profile: {deid['deid_profile']} (silver/deid/POLICY.md)", highlight=False)
    for what, why in deid["unavailable"].items():
        console.print(f"  unavailable under {deid['deid_profile']}: {what} - {why}", highlight=False)
    if deid["built_with_other_profile"]:
        console.print(f"  built with another profile (rebuild them): {', '.join(deid['built_with_other_profile'])}",
                      highlight=False)
    return rows


@app.command()
@cli_errors
def status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable list")] = False) -> None:
    """Every table: layer, rows, current version, last write."""

    if as_json:
        _print_json(table_status(_settings()))
    else:
        _status_table(_settings())


@app.command()
@cli_errors
def history(table: str, limit: Annotated[int, typer.Option()] = 20,
            as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Delta history of TABLE (layer.table)."""

    entries = Catalog(None, _settings()).history(table, limit)  # type: ignore[arg-type]
    if as_json:
        _print_json(entries)
        return
    out = Table("version", "timestamp", "operation", "metrics")

    for e in entries:
        ts = datetime.fromtimestamp(e["timestamp"] / 1000, UTC).isoformat() if e.get("timestamp") else ""
        out.add_row(str(e.get("version")), ts, str(e.get("operation")), json.dumps(e.get("operationMetrics", {})))
    console.print(out)


@app.command()
@cli_errors
def show(
    table: str,
    as_of_version: Annotated[int | None, typer.Option("--as-of-version")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="timestamp, e.g. 2026-01-31T12:00:00")] = None,
    limit: Annotated[int, typer.Option()] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rows of TABLE, optionally as of an earlier version or time (Delta time travel)."""

    settings = _settings()
    catalog = Catalog(get_spark(settings), settings)
    df = catalog.read(table, version=as_of_version, timestamp=as_of)
    rows = [r.asDict(recursive=True) for r in df.limit(limit).collect()]
    if table.split(".", 1)[0] in RESTRICTED_LAYERS:  # reads of PHI (or pseudonymized rows) are audited
        record_read(settings, "show", [table], rows_shown=len(rows), as_of_version=as_of_version, as_of=as_of)
    if as_json:
        _print_json(rows)
        return
    out = Table(*df.columns, title=table)
    for r in rows:
        out.add_row(*[("" if v is None else str(v))[:60] for v in r.values()])
    console.print(out)


@app.command()
@cli_errors
def maintain(
    retention_hours: Annotated[int, typer.Option(help="vacuum files older than this")] = 168,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compact small files (optimize) and vacuum old ones on every table (delta-rs)."""

    settings = _settings()
    catalog = Catalog(None, settings)  # type: ignore[arg-type]
    report = []
    with run_context("maintain", settings) as run:
        for name in catalog.list_tables():
            if name == "_system.runs":
                continue
            opt = catalog.optimize(name)
            removed = catalog.vacuum(name, retention_hours)
            report.append({"table": name, "files_added": opt.get("numFilesAdded"),
                           "files_removed": opt.get("numFilesRemoved"), "vacuumed": len(removed)})
            run.wrote(name, catalog.version(name), 0)
    if as_json:
        _print_json(report)
    else:
        _show(render.maintain(report))


@app.command()
@cli_errors
def erase(
    patient: Annotated[str, typer.Option("--patient", help="the patient's MRN (PID-3 / Patient.identifier value)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Erase one patient from landing, Bronze, quarantine, Silver, Gold, old Delta versions and _system files;
    the run log keeps one erasure record holding only a pseudonym."""

    with _progress():
        report = erase_patient(_settings(), patient)
    if as_json:
        _print_json(report)
        return
    console.print(f"erased: {report['bronze_records']} Bronze/quarantine records, {report['landing_files']} "
                  f"landing files ({report['landing_files_rewritten']} rewritten, {report['landing_files_deleted']} "
                  f"deleted), {report['tables_purged']} tables purged of history", highlight=False)


@app.command("phi-scan")
@cli_errors
def phi_scan(
    layer: Annotated[str, typer.Option(help="comma-separated layers to scan")] = "silver,gold",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Scan every Parquet file (all Delta versions) of Silver/Gold for PHI; exit 7 on any finding."""

    findings = scan(_settings(), [part.strip() for part in layer.split(",") if part.strip()])
    if as_json:
        _print_json([asdict(f) for f in findings])
    else:
        for f in findings:
            console.print(f.line(), highlight=False, soft_wrap=True)
        console.print(f"phi-scan: {len(findings)} finding(s) in {layer}", highlight=False)
    if findings:
        raise PhiFoundError(f"phi-scan: {len(findings)} finding(s) in {layer}")


@app.command()
@cli_errors
def rekey(
    resume: Annotated[bool, typer.Option("--resume", help="finish an interrupted rotation (no new key)")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rotate the pseudonym key: activate a new key version, rebuild Silver and Gold in full under it and write
    the restricted crosswalk _system.rekey_<old>_<new> (namespace, old pseudonym, new pseudonym)."""

    with _progress():
        report = rotate_key(_settings(), resume=resume)
    if as_json:
        _print_json(report)
        return
    pairs = report["crosswalk_pairs"]
    console.print(f"rekey: key version {report['new_version']} (id {report['new_key_id']}) active in "
                  f"{report['key_file']}; {report['old_version']} kept for the crosswalk", highlight=False)
    console.print(f"crosswalk {report['crosswalk']}: "
                  + (", ".join(f"{ns} {n}" for ns, n in pairs.items()) if isinstance(pairs, dict) else pairs),
                  highlight=False)
    for layer in ("silver", "gold"):
        console.print(f"{layer}: " + (report[layer] if isinstance(report[layer], str) else "rebuilt in full"),
                      highlight=False)


# -- audit ------------------------------------------------------------------------------------

@audit_app.command("verify")
@cli_errors
def audit_verify() -> None:
    """Recompute the hash chain of the run log; non-zero exit at the first broken link."""

    ok, message = verify_audit(_settings())
    if ok:
        console.print(f"[green]ok[/green] {message}")
    else:
        raise AuditChainError(f"audit chain broken: {message}")


@audit_app.command("lineage")
@cli_errors
def audit_lineage(table: str, version: Annotated[int | None, typer.Option()] = None,
                  as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Which run and inputs produced TABLE (at --version N, default the latest)."""

    found = lineage_of(read_runs(_settings()), table, version)
    if found is None:
        raise LakehouseError(f"no recorded run wrote {table}" + (f" version {version}" if version is not None else ""))
    if as_json:
        _print_json(found)
        return
    console.print(f"{table} v{found['version']} was written by run {found['run_id']} "
                  f"({found['command']}, seq {found['seq']}, code {found['code_version']}, {found['started_at']})")
    for item in found["inputs"]:
        detail = item.get("version") if item["kind"] == "table" else (item.get("sha256") or "")[:16]
        console.print(f"  <- {item['kind']} {item['name']} {detail}")


@app.command()
@cli_errors
def runs(limit: Annotated[int, typer.Option()] = 20, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The most recent runs from the run log."""

    records = read_runs(_settings())[-limit:]
    if as_json:
        _print_json(records)
        return
    out = Table("seq", "run", "command", "status", "started", "seconds", "outputs", "error")
    for r in records:
        seconds = json.loads(r["metrics"] or "{}").get("seconds", "")
        out.add_row(str(r["seq"]), r["run_id"][:8], r["command"], r["status"], str(r["started_at"]),
                    str(seconds), str(len(json.loads(r["outputs"] or "[]"))), (r["error"] or "")[:60])
    console.print(out)


@view_app.command("run")
@cli_errors
def view_run(name: Annotated[str, typer.Argument(help="project view name (patient, ...) or a ViewDefinition .json")],
             limit: Annotated[int, typer.Option()] = 10,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Flatten the latest bronze.fhir_resources rows with a ViewDefinition and show the first rows."""

    settings = _settings()
    columns, rows = run_view_on_bronze(settings, name, limit)
    record_read(settings, "view run", ["bronze.fhir_resources"], view=name, rows_shown=len(rows))
    if as_json:
        _print_json(rows)
        return
    out = Table(*columns, title=f"{name}: first {len(rows)} rows")
    for r in rows:
        out.add_row(*["" if r[c] is None else str(r[c]) for c in columns])
    console.print(out)


@view_app.command("conformance")
@cli_errors
def view_conformance(
    suite: Annotated[Path | None, typer.Option(help="folder of the suite's test JSON files")] = None,
    report: Annotated[Path | None, typer.Option(help="write test_report.json here")] = None,
) -> None:
    """Run the official SQL-on-FHIR v2 test suite; print passed/total and the failures."""

    result = conformance(_settings(), suite, report)
    for failure in result["failures"]:
        console.print(f"FAIL {failure['file']}: {failure['name']}: {failure['reason']}", highlight=False,
                      soft_wrap=True)
    console.print(f"passed {result['passed']}/{result['total']} in {result['seconds']}s"
                  + (f"; report: {report}" if report else ""), highlight=False)


def run() -> None:
    """The ``lakehouse`` console entry point (``python -m lakehouse_app.cli`` too): the CLI, then
    :func:`lakehouse.errors.exit_process` with its exit code."""
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    exit_process(code)


if __name__ == "__main__":
    run()
