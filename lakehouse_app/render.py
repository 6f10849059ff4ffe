"""The results of the pipeline steps as tables for people: one renderer per kind of result.

Each takes the dict the step returns (the same dict ``--json`` prints unchanged) and returns rich renderables.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

INGEST_COUNTS = ("received", "bronze", "duplicates", "quarantined")
DBT_KINDS = ("seed", "snapshot", "model", "test", "unit_test")


def _n(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:,.3f}"
    return str(value)


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1%}"


def _table(*columns: str, title: str, caption: str | None = None, numbers: int = 0) -> Table:
    """A table with its title and caption on the left; the ``numbers`` columns after the first are right-aligned."""
    table = Table(*columns, title=title, caption=caption, title_justify="left", caption_justify="left")
    for column in table.columns[1:1 + numbers]:
        column.justify = "right"
    return table


def _facts(title: str, rows: list[tuple[str, Any]], caption: str | None = None) -> Table:
    """A two-column table: what, value."""
    table = Table(title=title, caption=caption, show_header=False, title_justify="left", caption_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in rows:
        table.add_row(label, _n(value))
    return table


def ingest(result: dict[str, Any]) -> list[RenderableType]:
    """Per source: files, received = bronze + duplicates + quarantined."""
    files = result.get("files", {})
    by_format = files.get("by_format", {})
    sources = [k for k, v in result.items() if isinstance(v, dict) and "received" in v]
    table = _table("source", "files", *INGEST_COUNTS, numbers=5,
                   title=f"ingest: landing -> bronze ({files.get('new', 0):,} new files)",
                   caption="received = bronze + duplicates + quarantined")
    for source in sources:
        table.add_row(source, _n(by_format.get(source, 0)), *[_n(result[source][k]) for k in INGEST_COUNTS])
    table.add_section()
    table.add_row("total", _n(sum(by_format.get(s, 0) for s in sources)),
                  *[_n(sum(result[s][k] for s in sources)) for k in INGEST_COUNTS], style="bold")
    notes = [f"{files.get('skipped', 0):,} unchanged files skipped"]
    if files.get("copied") or files.get("already_landed"):
        notes.append(f"{files.get('copied', 0):,} copied into landing, "
                     f"{files.get('already_landed', 0):,} already there")
    if files.get("refused") or files.get("poisoned"):
        notes.append(f"{files.get('refused', 0):,} links/special files refused, {files.get('poisoned', 0):,} files "
                     "failing ingestion quarantined (see quarantine.landing)")
    if result.get("run_id"):
        notes.append(f"run {str(result['run_id'])[:8]}")
    return [table, Text("  " + "; ".join(notes), style="dim")]


def _written(counts: dict[str, Any]) -> str:
    if counts.get("untouched"):
        return "untouched (no record of it recomputed)"
    changes = [f"{counts[k]:,} {k}" for k in ("inserted", "updated", "deleted") if counts.get(k)]
    return ", ".join(changes) or "no change"


def silver(result: dict[str, Any]) -> list[RenderableType]:
    """Per domain: bronze input = silver + quarantined, and what the MERGE wrote (or that the build was skipped)."""
    skipped = bool(result.get("up_to_date"))
    domains = {k: v for k, v in result.items() if isinstance(v, dict) and "bronze_input" in v}
    title = "silver: bronze -> silver"
    if skipped:
        title += f" skipped, up to date (nothing changed since run {str(result.get('since_run', ''))[:8]})"
    table = _table("domain", "bronze input", "silver", "quarantined", "written", title=title, numbers=3,
                   caption="bronze input = silver + quarantined (reconciled for every domain)")
    for name, counts in domains.items():
        table.add_row(name, _n(counts["bronze_input"]), _n(counts["silver"]), _n(counts["quarantined"]),
                      "skipped (up to date)" if skipped else _written(counts))
    out: list[RenderableType] = [table]
    cov = result.get("_coverage")
    if cov:
        out.append(Text(f"  source records: {cov['received']:,} received = {cov['silver']:,} in silver + "
                        f"{cov['quarantined']:,} quarantined ({cov['no_fact']:,} of an unexpected "
                        f"shape) + {cov['not_in_scope']:,} not in scope + {cov['superseded']:,} superseded; "
                        "`lakehouse report coverage` for each type", style="dim"))
    dq = result.get("_dq")
    if dq:
        out.append(Text(f"  {dq.get('rows', 0):,} data quality results; data docs: {dq.get('data_docs', '')}",
                        style="dim"))
    return out


def coverage(rows: list[dict[str, Any]]) -> list[RenderableType]:
    """``lakehouse report coverage``: per source and type, what became of the Bronze records; then the Silver
    tables each type feeds and why the others are out of scope."""
    table = _table("source", "type", "received", "silver", "quarantined", "not in scope", "superseded",
                   "unaccounted", title="source coverage: bronze records -> silver", numbers=7,
                   caption="received = silver + quarantined + not in scope + superseded; quarantined includes "
                           "records of an unexpected shape (quarantine.silver_source_record)")
    notes: dict[str, str] = {}
    for r in rows:
        table.add_row(r["source"], r["record_type"], *[_n(r[k]) for k in (
            "received", "silver", "quarantined", "not_in_scope", "superseded")],
            f"[red]{r['unaccounted']:,}[/]" if r["unaccounted"] else "0")
        feeds = (r["silver_tables"] or "").replace(";", ", ")
        note = f"feeds {feeds}" + (f" ({r['scope_reason']})" if r["scope_reason"] else "") if feeds \
            else r["scope_reason"] or "not declared in silver/hl7v2_scope.csv or silver/fhir_scope.csv"
        kind = r["record_type"].split("^")[0] + ("^*" if "^" in r["record_type"] else "")
        notes.setdefault(f"{r['source']} {kind}", note)
    return [table, *[Text(f"  {k}: {v}", style="dim") for k, v in notes.items()]]


def dbt_nodes(nodes: dict[str, dict[str, int]]) -> str:
    """{"model": {"success": 32}, "test": {"pass": 158}} -> "32 models success, 158 tests pass"."""
    kinds = [k for k in DBT_KINDS if k in nodes] + [k for k in nodes if k not in DBT_KINDS]
    return ", ".join(f"{n:,} {kind.replace('_', ' ')}{'s' if n != 1 else ''} {status}" for kind in kinds
                     for status, n in sorted(nodes[kind].items()))


def gold(result: dict[str, Any]) -> list[RenderableType]:
    """Per Gold table: rows, version and whether this build changed it; the dbt node counts below."""
    if result.get("up_to_date"):
        return [Text(f"gold: skipped, up to date (Silver, the dbt project and the configuration are unchanged since "
                     f"run {str(result.get('since_run', ''))[:8]}; --force rebuilds)")]
    table = _table("table", "rows", "version", "this build", title="gold: dbt build", numbers=2,
                   caption=dbt_nodes(result.get("nodes", {})) or None)
    for name, t in sorted(result.get("tables", {}).items()):
        table.add_row(name, _n(t["rows"]), _n(t["version"]), "[green]written[/]" if t["changed"] else "unchanged")
    return [table]


def run(result: dict[str, Any]) -> list[RenderableType]:
    """``run_all``: ingest, silver and gold."""
    out: list[RenderableType] = []
    for step, renderer in (("ingest", ingest), ("silver", silver), ("gold", gold)):
        if step in result:
            out += renderer(result[step])
    return out


def features(result: dict[str, Any]) -> list[RenderableType]:
    return [_facts(f"features: {result['table']} v{result['version']}", [
        ("rows (encounters)", result["rows"]),
        ("written", _written(result)),
        ("stays quarantined", result["quarantined"]),
        ("30-day readmission rate", _percent(result.get("readmission_rate"))),
    ])]


def train(result: dict[str, Any]) -> list[RenderableType]:
    metrics = result.get("metrics", {})
    name = result.get("registered_model") or "model (not registered)"
    version = f" v{result['model_version']}" if result.get("model_version") is not None else ""
    return [_facts(f"trained {name}{version}", [
        ("feature table version", result.get("delta_version")),
        ("encounters (train / test)", f"{int(metrics.get('train_rows', 0)):,} / {int(metrics.get('test_rows', 0)):,}"),
        ("AUROC", metrics.get("auroc")),
        ("Brier score", metrics.get("brier_score")),
        ("test positive rate", _percent(metrics.get("test_positive_rate"))),
        ("mean predicted risk", _percent(metrics.get("mean_predicted"))),
        ("MLflow run", result.get("run_id")),
        ("model URI", result.get("model_uri")),
    ])]


def generate(result: dict[str, Any]) -> list[RenderableType]:
    return [_facts(f"generated {result['patients']:,} patients (seed {result['seed']}) into {result['out']}", [
        ("FHIR resources", result["fhir_resources"]),
        ("HL7 v2 messages", f"{result['hl7_messages']:,} in {result['hl7_files']:,} files"),
        ("DICOM instances", result["dicom_instances"]),
        ("bad items (planted)", result["bad_items"]),
        ("duplicates (planted)", result["duplicates"]),
        ("FHIR/HL7 pairs to harmonize", result["harmonization_pairs"]),
        ("manifest", result["manifest"]),
    ])]


def maintain(report: list[dict[str, Any]]) -> list[RenderableType]:
    table = _table("table", "files added", "files removed", "files vacuumed", title="maintain: optimize + vacuum",
                   numbers=3)
    for r in report:
        table.add_row(r["table"], _n(r["files_added"]), _n(r["files_removed"]), _n(r["vacuumed"]))
    return [table]
