"""Run the official SQL-on-FHIR v2 test suite (a directory of test JSON files) and write ``test_report.json``."""

from __future__ import annotations

import json
import math
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from silver.views.compiler import compile_view
from silver.views.engine import apply_view
from silver.views.errors import RUNTIME_ERROR_MARKER, ViewDefinitionError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _normalize(value: Any) -> Any:
    """Engine values and expected JSON values in one comparable form (numbers as rounded floats)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = float(value)
        return round(number, 9) if math.isfinite(number) else str(number)
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if hasattr(value, "asDict"):
        return _normalize(value.asDict(recursive=True))
    if isinstance(value, list | tuple):
        return [_normalize(v) for v in value]
    return str(value)


def _canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(_normalize(r), sort_keys=True) for r in rows)


def _is_view_error(exc: BaseException) -> bool:
    return isinstance(exc, ViewDefinitionError) or RUNTIME_ERROR_MARKER in str(exc)


def run_case(resources: DataFrame, case: dict[str, Any]) -> tuple[bool, str | None]:
    """(passed, reason) for one test case."""
    expect_error = bool(case.get("expectError"))
    try:
        compiled = compile_view(case.get("view"))
        df = apply_view(compiled, resources)
        rows = [row.asDict(recursive=True) for row in df.collect()]
        columns = df.columns
    except Exception as exc:  # noqa: BLE001 - any failure is a test result, classified below
        if expect_error and _is_view_error(exc):
            return True, None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return False, f"{type(exc).__name__}: {first[:500]}"
    if expect_error:
        return False, "expected an error, the view ran"
    if "expectColumns" in case and columns != case["expectColumns"]:
        return False, f"columns {columns} != expected {case['expectColumns']}"
    if "expectCount" in case and "expect" not in case:
        ok = len(rows) == case["expectCount"]
        return ok, None if ok else f"{len(rows)} rows != expected count {case['expectCount']}"
    expected = case.get("expect", [])
    if _canonical(rows) != _canonical(expected):
        return False, f"rows differ: got {json.dumps(_normalize(rows))[:600]}"
    return True, None


def _resources_frame(spark: SparkSession, resources: list[Any]) -> DataFrame:
    return spark.createDataFrame([(json.dumps(r),) for r in resources], "raw STRING")


def run_conformance(spark: SparkSession, suite_dir: Path, report_path: Path | None = None) -> dict[str, Any]:
    """Run every case of every ``*.json`` test file in ``suite_dir``.

    Returns ``{"passed", "failed", "total", "seconds", "failures": [{file, name, reason}], "report"}`` where
    ``report`` is the suite's test_report format ({file: {"tests": [{name, result: {passed, reason?}}]}});
    it is also written to ``report_path`` when given.
    """
    suite_dir = Path(suite_dir)
    files = sorted(p for p in suite_dir.glob("*.json") if p.name not in ("tests.schema.json", "test_report.json"))
    if not files:
        raise FileNotFoundError(f"no SQL-on-FHIR test files (*.json) in {suite_dir}")
    started = time.monotonic()
    report: dict[str, Any] = {}
    failures: list[dict[str, str]] = []
    passed = total = 0
    for path in files:
        suite = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(suite, dict) or "tests" not in suite:
            continue
        resources = _resources_frame(spark, suite.get("resources", []))
        entries = []
        for case in suite["tests"]:
            ok, reason = run_case(resources, case)
            result: dict[str, Any] = {"passed": ok}
            if reason:
                result["reason"] = reason
                failures.append({"file": path.name, "name": case.get("title", ""), "reason": reason})
            entries.append({"name": case.get("title", ""), "result": result})
            total += 1
            passed += ok
        report[path.name] = {"tests": entries}
    if report_path is not None:
        report_path = Path(report_path)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return {"passed": passed, "failed": total - passed, "total": total,
            "seconds": round(time.monotonic() - started, 2), "failures": failures, "report": report}


def passing_case_ids(report: dict[str, Any]) -> list[str]:
    """``file:title`` of every passed case in a test_report-format dict (the ids the conformance floor keeps)."""
    return sorted(f"{file}:{test['name']}" for file, entry in report.items()
                  for test in entry.get("tests", []) if test.get("result", {}).get("passed"))
