"""What the ``lakehouse view`` commands do: run a ViewDefinition over Bronze, run the official test suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.catalog import Catalog
from lakehouse.engine import get_spark
from silver.common import latest_fhir
from silver.views.conformance import run_conformance
from silver.views.engine import load_view, run_view
from silver.views.errors import ViewDefinitionError

if TYPE_CHECKING:
    from lakehouse.config import Settings

# the official SQL-on-FHIR v2 test suite (MIT), vendored: see sql_on_fhir_tests/SOURCE.md
DEFAULT_SUITE = Path(__file__).resolve().parent / "sql_on_fhir_tests"
BRONZE_FHIR = "bronze.fhir_resources"


def view_definition(name_or_file: str) -> dict[str, Any]:
    """A project view by name (``patient``) or a ViewDefinition JSON file."""
    path = Path(name_or_file)
    if path.suffix == ".json" and path.is_file():
        try:
            view: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ViewDefinitionError(f"{path} is not valid JSON: {exc}") from None
        return view
    return load_view(name_or_file)


def run_view_on_bronze(settings: Settings, name_or_file: str,
                       limit: int = 10) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, first ``limit`` rows) of a ViewDefinition over the latest version of each resource of
    bronze.fhir_resources (the version Silver reads: :func:`silver.common.latest_fhir`)."""

    view = view_definition(name_or_file)
    spark = get_spark(settings)
    resources = latest_fhir(Catalog(spark, settings).read(BRONZE_FHIR))
    df = run_view(spark, view, resources, keep=("source_file",))
    return df.columns, [row.asDict(recursive=True) for row in df.limit(limit).collect()]


def conformance(settings: Settings, suite: Path | None, report: Path | None) -> dict[str, Any]:
    """Run a copy of the SQL-on-FHIR v2 test suite; see ``run_conformance`` for the result."""

    suite_dir = suite or DEFAULT_SUITE
    if not suite_dir.is_dir():
        raise ViewDefinitionError(f"SQL-on-FHIR test suite directory {suite_dir} not found; pass --suite DIR "
                                  "(the tests/ folder of github.com/FHIR/sql-on-fhir-v2)")
    return run_conformance(get_spark(settings), suite_dir, report)
