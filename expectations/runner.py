"""Table-level validation with Great Expectations 1.x: suite JSON -> Checkpoint on a Spark DataFrame -> results.

``validate`` runs one table's suite in the ephemeral GX context of the run; ``write_results`` appends the results
to ``_system.dq_results`` (Delta), renders GX Data Docs under ``<root>/_system/data_docs/`` and fails the run
(``LakehouseError``) when a critical expectation failed. Referential expectations run when their reference
tables are given (or registered as ``silver.<table>``); otherwise they are left out and reported as skipped.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expectations.suites import LATEST_TIME_PARAMETER, is_referential, latest_plausible_time, load_suite
from lakehouse.errors import DataQualityError, LakehouseError
from lakehouse.logs import get_logger

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lakehouse.catalog import Catalog

log = get_logger(__name__)

DQ_TABLE = "_system.dq_results"
DQ_SCHEMA = ("run_id STRING, table STRING, expectation STRING, expectation_type STRING, category STRING, "
             "severity STRING, success BOOLEAN, unexpected_count BIGINT, observed STRING, evaluated_at TIMESTAMP")
DOCS_SITE = "lakehouse"

# the GX context of the current run: its in-memory stores hold every suite validated in this run (for Data Docs)
_context: dict[str, Any] = {}


def _gx_context(run_id: str) -> Any:
    if _context.get("run_id") != run_id:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        # deferred: great_expectations takes 10-20 s to import here (measured); only a Silver build validates
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        _context.clear()
        _context.update(run_id=run_id, context=context, source=context.data_sources.add_spark(name="silver"),
                        tables=[])
    return _context["context"]


def _reference_views(spark: SparkSession, suite: dict[str, Any],
                     reference: Mapping[str, DataFrame] | None) -> tuple[dict[str, str], list[str]]:
    """Temp view per referenced table, and the rules that cannot run (no reference)."""
    views, skipped = {}, []
    for exp in suite["expectations"]:
        if not is_referential(exp):
            continue
        target = exp["meta"]["reference"]["table"]
        if target in views:
            continue
        frame = reference.get(target) if reference else None
        if frame is None and spark.catalog.tableExists(f"silver.{target}"):
            frame = spark.table(f"silver.{target}")
        if frame is None:
            skipped.append(exp["meta"]["rule"])
            continue
        view = f"_dq_ref_{target}_{uuid.uuid4().hex[:8]}"
        frame.createOrReplaceTempView(view)
        views[target] = view
    return views, skipped


def _observed(result: dict[str, Any]) -> str | None:
    if "observed_value" in result:
        return json.dumps(result["observed_value"], default=str)
    if "unexpected_count" in result:
        percent = result.get("unexpected_percent")
        tail = f" ({percent:.2f}%)" if isinstance(percent, float) else ""
        return f"{result['unexpected_count']} unexpected of {result.get('element_count')}{tail}"
    return None


def validate(spark: SparkSession, df: DataFrame, table: str, run_id: str,
             reference: Mapping[str, DataFrame] | None = None, latest_time: datetime | None = None) -> dict[str, Any]:
    """Run the suite of ``silver.<table>`` on ``df`` with a GX Checkpoint; returns the per-expectation results.

    ``{"run_id", "table", "suite", "success", "evaluated_at", "results": [{"expectation", "expectation_type",
    "category", "severity", "row_level", "success", "unexpected_count", "observed"}]}``; skipped referential rules
    appear with ``success`` None.
    """
    # deferred: great_expectations takes 10-20 s to import here (measured); only a Silver build validates
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier

    suite_json = load_suite(table)
    views, skipped = _reference_views(spark, suite_json, reference)
    runnable = []
    for exp in suite_json["expectations"]:
        if is_referential(exp):
            target = exp["meta"]["reference"]["table"]
            if target not in views:
                continue
            query = exp["kwargs"]["unexpected_rows_query"].replace(f"{{reference:{target}}}", views[target])
            exp["kwargs"]["unexpected_rows_query"] = query
        runnable.append(exp)
    suite_json["expectations"] = runnable
    meta_by_rule = {e["meta"]["rule"]: e for e in runnable}

    context = _gx_context(run_id)
    name = f"silver.{table}"
    for store in (context.checkpoints, context.validation_definitions, context.suites):
        try:
            store.delete(name)  # validating a table again in the same run replaces its previous definitions
        except Exception:  # noqa: BLE001 - GX raises different types for "not found"
            pass
    suite = context.suites.add(ExpectationSuite(**suite_json))
    source = _context["source"]
    try:
        asset = source.get_asset(table)
    except LookupError:
        asset = source.add_dataframe_asset(table)
    batch = next(iter(asset.batch_definitions), None) or asset.add_batch_definition_whole_dataframe("all")
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name=name, validation_definitions=[definition],
                                                       result_format={"result_format": "SUMMARY"}))
    evaluated_at = datetime.now(UTC)
    try:
        run = checkpoint.run(batch_parameters={"dataframe": df},
                             expectation_parameters={LATEST_TIME_PARAMETER: latest_time or latest_plausible_time()},
                             run_id=RunIdentifier(run_name=run_id, run_time=evaluated_at))
    finally:
        for view in views.values():
            spark.catalog.dropTempView(view)
    if table not in _context["tables"]:
        _context["tables"].append(table)

    results = []
    for validation in run.run_results.values():
        for r in validation.results:
            meta = r.expectation_config.meta or {}
            raised = bool(r.exception_info.get("raised_exception")) if r.exception_info else False
            res = dict(r.result or {})
            observed = _observed(res)
            if raised:
                observed = f"error: {r.exception_info.get('exception_message')}"
            results.append({
                "expectation": meta.get("rule", r.expectation_config.type),
                "expectation_type": r.expectation_config.type,
                "category": meta.get("category"), "severity": meta.get("severity"),
                "row_level": bool(meta.get("row_level")), "success": bool(r.success) and not raised,
                "unexpected_count": res.get("unexpected_count", res.get("observed_value")
                                            if r.expectation_config.type == "unexpected_rows_expectation" else None),
                "observed": observed,
            })
    for rule in skipped:
        exp = next(e for e in load_suite(table)["expectations"] if e["meta"]["rule"] == rule)
        results.append({"expectation": rule, "expectation_type": exp["type"], "category": exp["meta"]["category"],
                        "severity": exp["meta"]["severity"], "row_level": True, "success": None,
                        "unexpected_count": None, "observed": "skipped: reference table not available"})
    order = {rule: i for i, rule in enumerate(meta_by_rule)}
    results.sort(key=lambda x: order.get(x["expectation"], len(order)))
    return {"run_id": run_id, "table": f"silver.{table}", "suite": name, "evaluated_at": evaluated_at,
            "success": all(x["success"] is not False for x in results), "results": results}


def critical_failures(results: dict[str, Any] | Sequence[dict[str, Any]]) -> list[str]:
    """``table: rule (observed)`` for every failed critical expectation."""
    runs = [results] if isinstance(results, dict) else list(results)
    return [f"{run['table']}: {x['expectation']} ({x['observed']})" for run in runs for x in run["results"]
            if x["severity"] == "critical" and x["success"] is False]


def build_data_docs(system_dir: Path) -> Path:
    """Render GX Data Docs of every suite validated in the current run; returns ``index.html``."""
    if "context" not in _context:
        raise LakehouseError("no validation has run in this process: nothing to render as Data Docs")
    context = _context["context"]
    docs = system_dir / "data_docs"
    site = {"class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)}}
    if DOCS_SITE in (context.variables.data_docs_sites or {}):
        context.update_data_docs_site(DOCS_SITE, site)
    else:
        context.add_data_docs_site(DOCS_SITE, site)
    context.build_data_docs(site_names=[DOCS_SITE])
    index = docs / "index.html"
    if not index.is_file():
        raise LakehouseError(f"GX did not write Data Docs at {index}")
    return index


def write_results(catalog: Catalog, results: dict[str, Any] | Sequence[dict[str, Any]],
                  fail_on_critical: bool = True) -> dict[str, Any]:
    """Append results to ``_system.dq_results``, render Data Docs, then raise if a critical expectation failed.

    Returns ``{"rows": n, "data_docs": path, "critical_failures": [...]}``.
    """
    runs = [results] if isinstance(results, dict) else list(results)
    rows = [(run["run_id"], run["table"], x["expectation"], x["expectation_type"], x["category"], x["severity"],
             x["success"], None if x["unexpected_count"] is None else int(x["unexpected_count"]), x["observed"],
             run["evaluated_at"])
            for run in runs for x in run["results"]]
    if rows:
        df = catalog.spark.createDataFrame(rows, DQ_SCHEMA)
        if not catalog.exists(DQ_TABLE):
            catalog.create(DQ_TABLE, DQ_SCHEMA)
        catalog.append(df, DQ_TABLE)
    index = build_data_docs(catalog.settings.system_dir)
    failures = critical_failures(runs)
    summary = {"rows": len(rows), "data_docs": str(index), "critical_failures": failures}
    if failures and fail_on_critical:
        raise DataQualityError(f"{len(failures)} critical data quality check(s) failed: " + "; ".join(failures)
                             + f". Results: {DQ_TABLE}; report: {index}")
    return summary
