"""Gold: run the dbt project (``dbt_project/``) in-process on the lakehouse's own Spark session.

``build_gold`` starts (or reuses) the engine with ``get_spark``, which sets ``SPARK_REMOTE`` so dbt-spark's
``method: session`` gets the same Spark Connect session, then runs ``dbt build`` with ``dbtRunner``.
dbt's target/ and logs/ go under ``<root>/_system/dbt`` so a read-only checkout works.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from deltalake import DeltaTable

from lakehouse import progress, uptodate
from lakehouse.catalog import Catalog, deid_properties, gold_purge_note, is_delta_table, schema_ddl
from lakehouse.config import Settings
from lakehouse.engine import get_spark
from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.logs import get_logger
from lakehouse.runlog import Run
from lakehouse.status import table_rows
from silver.deid.keys import key_version
from silver.schemas import TABLES as SILVER_TABLES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = get_logger(__name__)

PROJECT_DIR = Path(str(files("dbt_project")))  # package data: the same in a checkout and an installed wheel
BUILD_TYPES = ("seed", "snapshot", "model", "test")
CODE_FOLDERS = ("dbt_project", "gold", "lakehouse")


@dataclass(frozen=True)
class DbtPaths:
    project: Path
    profiles: Path
    target: Path
    logs: Path


def dbt_paths(settings: Settings) -> DbtPaths:
    """Where dbt reads the project and writes its artifacts (never into the checkout)."""
    base = settings.system_dir / "dbt"  # local (an object-store root's work folder)
    return DbtPaths(PROJECT_DIR, PROJECT_DIR, base / "target", base / "logs")


def dbt_args(settings: Settings, command: list[str], extra_vars: dict[str, Any] | None = None) -> list[str]:
    paths = dbt_paths(settings)
    # deid_profile: marts whose grain a profile cannot give (days under safe_harbor) say so instead of zeros
    variables = {"lakehouse_root": settings.root_uri.rstrip("/"), "deid_profile": settings.deid_profile,
                 # calendar days of the marts and dim_date keys are the facility's local days
                 "facility_timezone": settings.facility_timezone, **(extra_vars or {})}
    return [
        *command,
        "--project-dir", str(paths.project),
        "--profiles-dir", str(paths.profiles),
        "--target", settings.dbt_target,
        "--target-path", str(paths.target),
        "--log-path", str(paths.logs),
        "--vars", json.dumps(variables),
    ]


def _runner(callbacks: list[Callable[[Any], None]] | None = None, manifest: Any = None) -> Any:
    try:
        # deferred: dbt takes 3-6 s to import here (measured); only a Gold build runs it
        from dbt.cli.main import dbtRunner
    except ImportError as exc:  # pragma: no cover - dbt is a declared dependency
        raise ConfigError("dbt is not installed: pip install 'dbt-core>=1.11,<1.12' 'dbt-spark[session]'") from exc
    return dbtRunner(manifest=manifest, callbacks=callbacks or [])


def require_silver(settings: Settings) -> list[str]:
    """The Silver tables the dbt sources declare; fail with the fix when any is missing."""
    names = [f"silver.{t}" for t in SILVER_TABLES]
    missing = [n for n in names if not is_delta_table(settings.table_path("silver", n.split(".", 1)[1]))]
    if missing:
        raise LakehouseError(
            f"Gold needs the Silver tables {', '.join(missing)} under {settings.root_path}: "
            "run `lakehouse silver` first"
        )
    return names


def sync_gold_registrations(spark: SparkSession, settings: Settings) -> None:
    """Drop engine registrations of gold.* that point outside this root (an earlier root in this process),
    so dbt never merges into another lakehouse's table; then register this root's tables."""
    try:
        rows = spark.sql("SHOW TABLE EXTENDED IN gold LIKE '*'").collect()
    except Exception:  # noqa: BLE001 - no gold schema yet
        rows = []
    for row in rows:
        info = str(row["information"] or "")
        location = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                         if line.startswith("Location:")), None)
        expected = str(settings.table_path("gold", row["tableName"]))
        if location is not None and location.rstrip("/") != expected.rstrip("/"):
            kind = "VIEW" if "Type: VIEW" in info else "TABLE"
            spark.sql(f"DROP {kind} IF EXISTS `gold`.`{row['tableName']}`")  # external: files stay
    catalog = Catalog(spark, settings)
    for name in catalog.register_all():
        if name.startswith("gold."):
            declare_schema(spark, catalog, name)


def declare_schema(spark: SparkSession, catalog: Catalog, name: str) -> None:
    """Re-register a table with its schema spelled out when the engine's catalog shows no columns.

    Sail infers the schema of ``CREATE TABLE ... LOCATION`` (no column list) at query time, so DESCRIBE and
    SHOW TABLE EXTENDED list no columns; dbt-spark reads columns from DESCRIBE (incremental merges, snapshots,
    docs). Declaring the columns read from the Delta log makes DESCRIBE complete; data and files are untouched.
    """
    if spark.sql(f"DESCRIBE TABLE {name}").collect():
        return
    location = catalog.path(name)
    columns = schema_ddl(spark.read.format("delta").load(str(location)).schema)
    spark.sql(f"DROP TABLE IF EXISTS {name}")  # external: the files stay
    try:
        spark.sql(f"CREATE TABLE {name} ({columns}) USING delta LOCATION '{location}'")
    except Exception as exc:  # noqa: BLE001 - e.g. ARRAY<...> whose elements are NOT NULL, which DDL cannot say
        log.debug("%s keeps an inferred schema: %s", name, str(exc).splitlines()[0] if str(exc) else exc)
        spark.sql(f"CREATE TABLE {name} USING delta LOCATION '{location}'")


def gold_versions(settings: Settings) -> dict[str, int]:
    gold_dir = settings.layer_path("gold")
    if not gold_dir.is_dir():
        return {}
    return {p.name: int(DeltaTable(str(p)).version()) for p in sorted(gold_dir.iterdir()) if is_delta_table(p)}


class _ProgressCallback:
    """Turns dbt's NodeStart/NodeFinished events into progress events, one per seed, snapshot, model and test
    (status, rows of the Delta table it wrote, dbt's execution time)."""

    def __init__(self, settings: Settings, total: int | None) -> None:
        self.settings = settings
        self.total = total
        self.finished = itertools.count(1)

    def __call__(self, event: Any) -> None:
        name = event.info.name
        if name not in ("NodeStart", "NodeFinished"):
            return
        node = event.data.node_info
        item = f"{node.resource_type} {node.node_name}"
        if name == "NodeStart":
            progress.start("gold", item)
            return
        result = event.data.run_result
        details: dict[str, Any] = {"status": str(result.status), "kind": str(node.resource_type)}
        path = self.settings.table_path("gold", node.node_name)
        if node.resource_type in ("model", "seed", "snapshot") and is_delta_table(path):
            details["rows"] = table_rows(DeltaTable(str(path)))
        if result.num_failures:
            details["failures"] = int(result.num_failures)
        n = next(self.finished)
        details["node"] = f"{n}/{self.total}" if self.total else str(n)
        progress.done("gold", item, seconds=float(result.execution_time), **details)


def _parse(settings: Settings) -> Any:
    result = _runner().invoke(dbt_args(settings, ["parse", "--quiet"]))
    if not result.success:
        raise LakehouseError(f"dbt could not parse {PROJECT_DIR}: {_first_line(result.exception)}")
    return result.result


def _first_line(value: object) -> str:
    text = str(value or "unknown error").strip()
    return text.splitlines()[0] if text else "unknown error"


def _failure_message(results: list[Any], exception: BaseException | None) -> str:
    failed = [r for r in results if str(r.status) in ("error", "fail", "runtime error")]
    if not failed:
        return f"dbt build failed: {_first_line(exception)}"
    parts = []
    for r in failed[:3]:
        detail = _first_line(r.message)
        if str(r.status) == "fail" and r.failures:
            detail = f"{r.failures} failing rows"
        elif "out of sync" in str(r.message):
            detail = (f"its columns changed since gold.{r.node.name} was built; rebuild it with "
                      f"`dbt build --full-refresh --select {r.node.name}` or delete <root>/gold/{r.node.name}")
        parts.append(f"{r.node.resource_type} {r.node.name} {r.status}: {detail}")
    more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
    return "dbt build failed: " + "; ".join(parts) + more


def summarize(results: list[Any]) -> dict[str, dict[str, int]]:
    """Counts per resource type and status, e.g. {"model": {"success": 15}, "test": {"pass": 80}}."""
    counts: dict[str, Counter[str]] = {}
    for r in results:
        counts.setdefault(str(r.node.resource_type), Counter())[str(r.status)] += 1
    return {kind: dict(c) for kind, c in sorted(counts.items())}


def dbt_tables() -> list[str]:
    """The Gold tables dbt owns: one per model, snapshot and seed of the project."""
    names = {p.stem for folder in ("models", "snapshots") for p in (PROJECT_DIR / folder).rglob("*.sql")}
    names |= {p.stem for p in (PROJECT_DIR / "seeds").rglob("*.csv")}
    for path in (PROJECT_DIR / "snapshots").rglob("*.yml"):
        names |= {s["name"] for s in (yaml.safe_load(path.read_text()) or {}).get("snapshots", [])}
    return [f"gold.{n}" for n in sorted(names)]


def fingerprint(settings: Settings, silver: list[str]) -> dict[str, Any]:
    return {**uptodate.fingerprint(settings, None, uptodate.data_versions(settings, silver),
                                   uptodate.data_versions(settings, dbt_tables()), CODE_FOLDERS),
            "as_of_day": date.today().isoformat()}


def build_gold(settings: Settings, run: Run, select: list[str] | None = None,
               full_refresh: bool = False, force: bool = False) -> dict[str, Any]:
    """``dbt build`` (seeds, snapshots, models, tests) into ``<root>/gold``; records what it read and wrote.

    A whole build is skipped when Silver, the Gold tables, the dbt project, the configuration and the key are as
    the last completed build left them (see lakehouse.uptodate), unless ``force``.
    """
    silver = require_silver(settings)
    for name, version in uptodate.table_versions(settings, silver).items():
        run.read(name, version)
    whole = not select and not full_refresh
    if whole:
        current = fingerprint(settings, silver)
        previous = None if force else uptodate.unchanged_since(settings, "gold", current)
        if previous is not None:
            run.metric(uptodate.metric_name("gold"), current)
            log.info("gold: up to date (Silver, dbt project and configuration unchanged since run %s)",
                     previous["run_id"])
            progress.done("gold", "all models", status="up to date", since=f"run {previous['run_id'][:8]}")
            return {"up_to_date": True, "since_run": previous["run_id"], "changed_tables": []}
    spark = get_spark(settings)  # after the up-to-date check: a run with nothing new starts no engine
    catalog = Catalog(spark, settings)
    progress.start("gold", "dbt parse")
    sync_gold_registrations(spark, settings)
    before = gold_versions(settings)

    manifest = _parse(settings)
    command = ["build"] + (["--select", *select] if select else []) + (["--full-refresh"] if full_refresh else [])
    total = sum(1 for n in manifest.nodes.values() if str(n.resource_type) in BUILD_TYPES) + len(manifest.unit_tests)
    progress.done("gold", "dbt parse", nodes=total)
    result = _runner([_ProgressCallback(settings, None if select else total)], manifest).invoke(
        dbt_args(settings, [*command, "--quiet"]))
    results = list(getattr(result.result, "results", None) or [])
    if not result.success:
        raise LakehouseError(_failure_message(results, result.exception))

    catalog.register_all()
    properties = deid_properties(settings, key_version(settings))  # which profile and key built each table
    for name in gold_versions(settings):
        catalog.set_properties(f"gold.{name}", properties)
    _retire(settings, catalog, run)
    _purge_if_silver_purged(settings, catalog, run)
    after = gold_versions(settings)
    tables: dict[str, dict[str, Any]] = {}
    for name, version in after.items():
        rows = table_rows(DeltaTable(str(settings.table_path("gold", name))))
        changed = before.get(name) != version
        tables[f"gold.{name}"] = {"rows": rows, "version": version, "changed": changed}
        if changed:
            run.wrote(f"gold.{name}", version, rows)
    summary = {"nodes": summarize(results), "tables": tables,
               "changed_tables": sorted(n for n, t in tables.items() if t["changed"])}
    run.metric("dbt", summary["nodes"])
    if whole:
        run.metric(uptodate.metric_name("gold"), fingerprint(settings, silver))
    log.info("gold: %s", summary["nodes"])
    return summary


# Gold tables of earlier releases that no model builds any more (snp_patient: the dbt snapshot that kept every
# published version forever, birth years of patients who later turned 90 included)
RETIRED = ("snp_patient",)


def _retire(settings: Settings, catalog: Catalog, run: Run) -> None:
    for table in RETIRED:
        path = settings.table_path("gold", table)
        if is_delta_table(path):
            catalog.spark.sql(f"DROP TABLE IF EXISTS `gold`.`{table}`")
            shutil.rmtree(path)
            run.metric(f"retired_gold_{table}", True)
            log.warning("gold: retired table gold.%s removed with its history", table)


def _purge_if_silver_purged(settings: Settings, catalog: Catalog, run: Run) -> None:
    """A Silver build that changed published de-identified values (90+, rules, profile, key) purged Silver's
    history and left a note: after this build every Gold table holds the new values, so its history goes too."""
    note = gold_purge_note(settings)
    if not note.is_file():
        return
    reasons = json.loads(note.read_text()).get("reasons", [])
    purged = [catalog.purge_history(f"gold.{name}") for name in sorted(gold_versions(settings))]
    run.metric("gold_purged_history", {"reasons": reasons, "tables": purged})
    note.unlink()
    log.warning("gold: history of %d Gold tables purged (%s); time travel before this run is gone by design",
                len(purged), ", ".join(reasons))


def docs_generate(settings: Settings) -> Path:
    """``dbt docs generate``; returns the static site's index.html (serve it with ``dbt docs serve``)."""
    spark = get_spark(settings)
    sync_gold_registrations(spark, settings)
    result = _runner().invoke(dbt_args(settings, ["docs", "generate", "--quiet"]))
    if not result.success:
        raise LakehouseError(f"dbt docs generate failed: {_first_line(result.exception)}")
    index = dbt_paths(settings).target / "index.html"
    if not index.exists():
        raise LakehouseError(f"dbt docs generate wrote no {index}")
    return index
