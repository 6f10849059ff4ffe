"""Run ViewDefinitions over a DataFrame of FHIR resource JSON (``raw`` column), and load the project's views."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from silver.views import sql as S
from silver.views.compiler import CompiledView, compile_view
from silver.views.errors import ViewDefinitionError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DEFINITIONS_DIR = Path(__file__).resolve().parent / "definitions"
VIEW_NAMES: tuple[str, ...] = tuple(sorted(p.stem for p in DEFINITIONS_DIR.glob("*.json")))


def load_view(name: str) -> dict[str, Any]:
    """The project's ViewDefinition ``silver/views/definitions/<name>.json``."""
    path = DEFINITIONS_DIR / f"{name}.json"
    if not path.is_file():
        raise ViewDefinitionError(f"no ViewDefinition named {name!r}; known: {', '.join(VIEW_NAMES)}")
    view: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return view


def apply_view(compiled: CompiledView, resources: DataFrame, keep: Sequence[str] = ()) -> DataFrame:
    """The compiled view as one plan over ``resources``: filter by resourceType and where, explode rows."""
    missing = [c for c in ("raw", *keep) if c not in resources.columns]
    if missing:
        raise ViewDefinitionError(f"the resources DataFrame lacks columns {missing}")
    clash = sorted(set(keep) & set(compiled.column_names))
    if clash:
        raise ViewDefinitionError(f"view {compiled.name!r}: kept columns {clash} clash with view columns")
    kept = [f"`{c}`" for c in keep]
    for element in compiled.requires:
        # a cheap text test before parsing: the key (a prefix, for choice types such as value[x]) must occur,
        # unless the text has \u escapes, which can spell a key in other characters
        resources = resources.where(f"instr(raw, {S.sql_string(chr(34) + element)}) > 0 "
                                    f"OR instr(raw, {S.sql_string(chr(92) + 'u')}) > 0")
    # Invalid JSON parses to NULL and has no resourceType, so it never matches a view (the Bronze layer
    # quarantines it); try_parse_json keeps one bad row from failing the whole job.
    df = resources.selectExpr(*kept, "raw AS __raw", "try_parse_json(raw) AS __v")
    resource_type = f"variant_get(__v, '$.resourceType', 'string') = {S.sql_string(compiled.resource_type)}"
    condition = " AND ".join(f"({w})" for w in compiled.where) or "true"
    df = df.where(f"CASE WHEN {resource_type} THEN {condition} ELSE false END")
    # single-row parts are plain columns; each array part multiplies the rows (the cross product) by inline,
    # each exploded part (a resource-level forEach) by posexplode of its items
    exploded = [part.explode for part in compiled.parts if part.explode is not None]
    projections = [*kept, *(["__raw", "__v"] if exploded else [])]
    projections += [f"{e.items} AS `{e.text}`" for e in exploded]
    arrays: list[str] = []
    for index, part in enumerate(compiled.parts):
        if part.explode is not None:
            continue
        if part.fields is not None:
            projections += [f"{value} AS `{name}`" for name, value in part.fields]
        else:
            arrays.append(f"__part{index}")
            projections.append(f"{part.sql} AS __part{index}")
    df = df.selectExpr(*projections)
    for index, part in enumerate(compiled.parts):
        if part.explode is None:
            continue
        e = part.explode
        others = [f"`{c}`" for c in df.columns if c != e.text]
        df = df.selectExpr(*others, f"posexplode(`{e.text}`) AS (`{e.index}`, `{e.text}`)")
        df = df.selectExpr(*[f"`{c}`" for c in df.columns], f"parse_json(`{e.text}`) AS `{e.variant}`")
        if part.fields is not None:
            row = [f"{value} AS `{name}`" for name, value in part.fields]
        else:
            arrays.append(f"__part{index}")
            row = [f"{part.sql} AS __part{index}"]
        df = df.selectExpr(*[f"`{c}`" for c in df.columns if c not in (e.text, e.index, e.variant)], *row)
    for name in arrays:
        others = [f"`{c}`" for c in df.columns if c != name]
        df = df.selectExpr(*others, f"inline({name})")
    return df.selectExpr(*kept, *[f"`{c}`" for c in compiled.column_names])


def run_view(spark: SparkSession | None, view_definition: dict[str, Any], resources: DataFrame,
             keep: Sequence[str] = ()) -> DataFrame:
    """Flatten FHIR resources with a SQL-on-FHIR v2 ViewDefinition.

    ``resources`` has a string column ``raw`` (one resource JSON per row); rows of other resource types are
    ignored. ``keep`` names input columns carried into every output row. Raises ViewDefinitionError (or its
    subclasses for FHIRPath) at compile time; a path that yields several values for a non-collection column
    or a non-boolean ``where`` fails the Spark job with a message naming the expression.
    """
    del spark  # the plan is built from ``resources``; the argument keeps the public signature engine-explicit
    return apply_view(compile_view(view_definition), resources, keep)
