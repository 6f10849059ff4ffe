"""Compile a SQL-on-FHIR v2 ViewDefinition to Spark SQL: one ``array<struct>`` of output rows per resource.

Each selection node becomes an expression that yields its rows for one context item; nested selects are
cross-joined with higher-order functions, ``unionAll`` options concatenated, ``forEach``/``forEachOrNull``/
``repeat`` iterate with ``transform``. The caller explodes the rows with ``inline``: one plan, no UDFs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from silver.views import sql as S
from silver.views.errors import ViewDefinitionError
from silver.views.fhirpath_sql import Context, FhirPathCompiler, constant_value

# FHIR type hint of a column -> Spark SQL type; date/time types stay ISO strings (FHIR allows partial dates).
SQL_TYPES = {
    "boolean": "BOOLEAN", "integer": "INT", "positiveInt": "INT", "unsignedInt": "INT", "integer64": "BIGINT",
    "decimal": "DECIMAL(38,18)",
}
COLUMN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
NODE_KEYS = {"column", "select", "forEach", "forEachOrNull", "unionAll", "repeat", "description"}
# a FHIRPath that only navigates child elements by plain names (``component``, ``name.given``)
ELEMENT_CHAIN = re.compile(r"^([a-z][A-Za-z0-9_]*)(?:\.[a-z][A-Za-z0-9_]*)*$")
LITERALS = {"true", "false"}
# levels a repeat expands; deeper trees raise an error instead of losing rows
MAX_REPEAT_DEPTH = 12


@dataclass(frozen=True)
class Explode:
    """A resource-level ``forEach`` done by the DataFrame: one row per item (``posexplode``), the item's JSON text,
    index and parsed value as columns; the node's own rows are then computed per item row."""

    path: str  # the forEach FHIRPath
    items: str  # SQL: the collection, array<string>, over the resource (__raw, __v)
    text: str  # column names given to the item's JSON text, its index and its parsed value
    index: str
    variant: str


@dataclass(frozen=True)
class Rows:
    """The rows a selection yields for one context: exactly one row (``fields``) or an ``array<struct>``.

    With ``explode`` the rows are those of each item of a resource-level ``forEach`` (see :class:`Explode`).
    """

    columns: tuple[tuple[str, str], ...]  # (name, Spark SQL type) in output order
    sql: str | None = None  # array<struct<columns>>
    fields: tuple[tuple[str, str], ...] | None = None  # (name, SQL value) when there is exactly one row
    explode: Explode | None = None

    @property
    def single(self) -> bool:
        return self.fields is not None

    def struct(self) -> str:
        assert self.fields is not None
        return "named_struct(" + ", ".join(f"'{n}', {v}" for n, v in self.fields) + ")"

    def array(self) -> str:
        return f"array({self.struct()})" if self.fields is not None else str(self.sql)


@dataclass(frozen=True)
class CompiledView:
    """``parts`` are cross-joined per resource (single-row parts as plain columns, the others by ``inline``)."""

    name: str
    resource_type: str
    parts: tuple[Rows, ...]
    where: tuple[str, ...]  # SQL boolean conditions on the resource (raise for non-boolean paths)
    # element names a resource must have (some key starting with the name: choice types) to yield any row
    requires: tuple[str, ...] = ()

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [c for part in self.parts for c in part.columns]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]


def convert(item: str, sql_type: str, numeric: bool = False) -> str:
    """SQL: one JSON-text item -> the column's Spark type (NULL when the value does not fit).

    ``numeric``: the item is known to be a JSON number, so its text needs no unquoting.
    """
    text = item if numeric else S.unquote(item)
    if sql_type == "BOOLEAN":
        return f"CASE {item} WHEN 'true' THEN true WHEN 'false' THEN false END"
    if sql_type in ("INT", "BIGINT"):
        return f"try_cast(try_cast({text} AS DECIMAL(38,18)) AS {sql_type})"
    if sql_type.startswith("DECIMAL"):
        return f"try_cast({text} AS {sql_type})"
    return text


class ViewCompiler:
    def __init__(self, view: Any) -> None:
        if not isinstance(view, dict):
            raise ViewDefinitionError(f"a ViewDefinition must be a JSON object, got {type(view).__name__}")
        self.view = view
        self.name = str(view.get("name") or "view")
        resource = view.get("resource")
        if not isinstance(resource, str) or not re.match(r"^[A-Z][A-Za-z]+$", resource):
            raise ViewDefinitionError(
                f"view {self.name!r}: 'resource' must name a FHIR resource type, got {resource!r}")
        self.resource_type = resource
        select = view.get("select")
        if not isinstance(select, list) or not select:
            raise ViewDefinitionError(f"view {self.name!r}: 'select' must be a non-empty list")
        constants: dict[str, tuple[Any, object]] = {}
        for entry in view.get("constant") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ViewDefinitionError(f"view {self.name!r}: each constant needs a name, got {entry!r}")
            constants[entry["name"]] = constant_value(entry["name"], entry)
        self.fp = FhirPathCompiler(resource, constants)

    def compile(self) -> CompiledView:
        root = Context.root(self.resource_type)
        parts = tuple(p for p in self.top_parts({"select": self.view["select"]}, root) if p.columns)
        names = [name for part in parts for name, _ in part.columns]
        if not names:
            raise ViewDefinitionError(f"view {self.name!r} defines no columns")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ViewDefinitionError(f"view {self.name!r}: duplicate column names {duplicates}")
        where = []
        for entry in self.view.get("where") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise ViewDefinitionError(f"view {self.name!r}: each where needs a path, got {entry!r}")
            compiled = self.fp.compile(entry["path"], root)
            if compiled.boolean is not None:
                where.append(f"coalesce({compiled.boolean}, false)")
                continue
            c = compiled.sql
            message = f"where path {entry['path']!r} did not return a single boolean"
            where.append(S.checked(f"size({c}) = 0 OR (size({c}) = 1 AND get({c}, 0) IN ('true', 'false'))",
                                   message, f"coalesce(get({c}, 0) = 'true', false)"))
        return CompiledView(self.name, self.resource_type, parts, tuple(where), required_elements(parts))

    # -- selection nodes ---------------------------------------------------------------------

    def top_parts(self, node: dict[str, Any], ctx: Context) -> list[Rows]:
        """Resource-level selections, split as far as possible: their cross product is done by the DataFrame
        (columns side by side, ``inline`` per array part), which keeps lambdas shallow."""
        if "forEach" in node and not any(key in node for key in ("forEachOrNull", "repeat")):
            return [self.exploded_rows(node, ctx)]
        if any(key in node for key in ("forEach", "forEachOrNull", "repeat")):
            return [self.node_rows(node, ctx)]
        self.check_node(node)
        parts = [self.own_columns(node, ctx)]
        for sub in node.get("select") or []:
            parts.extend(self.top_parts(sub, ctx))
        if node.get("unionAll"):
            parts.append(self.union_rows(node["unionAll"], ctx))
        return parts

    def exploded_rows(self, node: dict[str, Any], ctx: Context) -> Rows:
        """A resource-level ``forEach`` as rows of the DataFrame rather than a ``transform`` lambda: expressions
        per item then run outside any lambda, where Sail evaluates them several times faster (nested lambdas
        are what cost) and CASE branches are evaluated only where they apply."""
        self.check_node(node)
        path = self.path_of(node, "forEach")
        compiled = self.fp.compile(path, ctx)
        n = S.fresh("fe")
        explode = Explode(path, compiled.sql, f"_{n}_item", f"_{n}_index", f"_{n}_value")
        item = Context("item", explode.text, explode.variant, explode.index, compiled.type, row_level=True)
        return replace(self.plain_rows(node, item), explode=explode)

    def path_of(self, node: dict[str, Any], key: str) -> str:
        path = node[key]
        if not isinstance(path, str):
            raise ViewDefinitionError(f"view {self.name!r}: {key} must be a FHIRPath string, got {path!r}")
        return path

    def check_node(self, node: Any) -> None:
        if not isinstance(node, dict):
            raise ViewDefinitionError(f"view {self.name!r}: a select entry must be an object, got {node!r}")
        unknown = set(node) - NODE_KEYS
        if unknown:
            raise ViewDefinitionError(f"view {self.name!r}: unknown select keys {sorted(unknown)}")
        if not isinstance(node.get("select", []), list):
            raise ViewDefinitionError(f"view {self.name!r}: select must be a list")

    def node_rows(self, node: Any, ctx: Context) -> Rows:
        self.check_node(node)
        iterators = [key for key in ("forEach", "forEachOrNull", "repeat") if key in node]
        if len(iterators) > 1:
            raise ViewDefinitionError(f"view {self.name!r}: a select can have only one of {iterators}")
        if not iterators:
            return self.plain_rows(node, ctx)
        key = iterators[0]
        if key == "repeat":
            paths = node["repeat"]
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
                raise ViewDefinitionError(f"view {self.name!r}: repeat must be a list of FHIRPath strings")
            items, item_type = self.repeat_items(paths, ctx), None
        else:
            compiled = self.fp.compile(self.path_of(node, key), ctx)
            items, item_type = compiled.sql, compiled.type
        x, i = S.fresh("it"), S.fresh("ix")
        inner = self.plain_rows(node, Context.item(x, i, item_type))

        def each(source: str) -> str:
            if inner.single:
                return f"transform({source}, ({x}, {i}) -> {inner.struct()})"
            return f"flatten(transform({source}, ({x}, {i}) -> {inner.array()}))"

        if key != "forEachOrNull":
            return Rows(inner.columns, sql=each(items))
        empty = self.plain_rows(node, Context.empty())
        null_row = "named_struct(" + ", ".join(f"'{n}', CAST(NULL AS {t})" for n, t in inner.columns) + ")"
        when_empty = empty.array() if empty.single else (
            f"CASE WHEN size({empty.sql}) = 0 THEN array({null_row}) ELSE {empty.sql} END")
        return Rows(inner.columns, sql=f"CASE WHEN size({items}) = 0 THEN {when_empty} ELSE {each(items)} END")

    def repeat_items(self, paths: list[str], ctx: Context) -> str:
        """Depth-first, pre-order: every item reachable by applying the paths again and again.

        One ``aggregate`` pass per tree level expands the not-yet-expanded items in place (so pre-order is
        kept); the lambda nesting stays constant whatever the depth. Trees deeper than MAX_REPEAT_DEPTH fail
        the job with a message naming the paths instead of losing rows.
        """
        acc, e, c, lvl = S.fresh("acc"), S.fresh("e"), S.fresh("c"), S.fresh("lv")
        below = self.children(paths, Context.item(f"{e}.item", "0"))

        def pending(items: str) -> str:
            return f"transform({items}, {c} -> named_struct('item', {c}, 'done', false))"

        expanded = (f"concat(array(named_struct('item', {e}.item, 'done', true)), {pending(below)})")
        step = f"flatten(transform({acc}, {e} -> IF({e}.done, array({e}), {expanded})))"
        message = f"repeat {paths} is nested deeper than {MAX_REPEAT_DEPTH} levels"
        finish = S.checked(f"forall({acc}, {e} -> {e}.done)", message, f"transform({acc}, {e} -> {e}.item)")
        start = pending(self.children(paths, ctx))
        return f"aggregate(sequence(1, {MAX_REPEAT_DEPTH}), {start}, ({acc}, {lvl}) -> {step}, {acc} -> {finish})"

    def children(self, paths: list[str], ctx: Context) -> str:
        parts = [self.fp.compile(p, ctx).sql for p in paths]
        return parts[0] if len(parts) == 1 else f"concat({', '.join(parts)})"

    def own_columns(self, node: dict[str, Any], ctx: Context) -> Rows:
        columns = node.get("column") or []
        if not isinstance(columns, list):
            raise ViewDefinitionError(f"view {self.name!r}: column must be a list")
        values = [self.column(col, ctx) for col in columns]
        return Rows(tuple((n, t) for n, _, t in values), fields=tuple((n, v) for n, v, _ in values))

    def plain_rows(self, node: dict[str, Any], ctx: Context) -> Rows:
        parts = [self.own_columns(node, ctx)]
        for sub in node.get("select") or []:
            parts.append(self.node_rows(sub, ctx))
        if node.get("unionAll"):
            parts.append(self.union_rows(node["unionAll"], ctx))
        rows = parts[0]
        for part in parts[1:]:
            rows = cross(rows, part)
        return rows

    def union_rows(self, options: Any, ctx: Context) -> Rows:
        if not isinstance(options, list) or not options:
            raise ViewDefinitionError(f"view {self.name!r}: unionAll must be a non-empty list")
        branches = [self.node_rows(option, ctx) for option in options]
        first = branches[0].columns
        for branch in branches[1:]:
            if [n for n, _ in branch.columns] != [n for n, _ in first]:
                raise ViewDefinitionError(
                    f"view {self.name!r}: unionAll options must have the same columns in the same order: "
                    f"{[n for n, _ in first]} vs {[n for n, _ in branch.columns]}")
            if branch.columns != first:
                raise ViewDefinitionError(
                    f"view {self.name!r}: unionAll column types differ: {first} vs {branch.columns}")
        return Rows(first, sql=f"concat({', '.join(b.array() for b in branches)})")

    def column(self, col: Any, ctx: Context) -> tuple[str, str, str]:
        if not isinstance(col, dict):
            raise ViewDefinitionError(f"view {self.name!r}: a column must be an object, got {col!r}")
        name, path = col.get("name"), col.get("path")
        if not isinstance(name, str) or not COLUMN_NAME.match(name):
            raise ViewDefinitionError(f"view {self.name!r}: invalid column name {name!r}")
        if not isinstance(path, str):
            raise ViewDefinitionError(f"view {self.name!r}: column {name!r} needs a FHIRPath 'path'")
        fhir_type = col.get("type")
        sql_type = SQL_TYPES.get(fhir_type, "STRING") if isinstance(fhir_type, str) else "STRING"
        compiled = self.fp.compile(path, ctx)
        coll = compiled.sql
        if compiled.single and col.get("collection") is not True:
            # at most one value by construction: no cardinality check needed
            if compiled.boolean is not None and sql_type == "BOOLEAN":
                return name, compiled.boolean, sql_type
            return name, convert(f"get({coll}, 0)", sql_type, compiled.numeric), sql_type
        if col.get("collection") is True:
            x = S.fresh()
            return name, f"transform({coll}, {x} -> {convert(x, sql_type)})", f"ARRAY<{sql_type}>"
        message = f"column {name!r} (path {path!r}) returned several values; set collection: true"
        return name, convert(S.single_item(coll, message), sql_type), sql_type


def cross(left: Rows, right: Rows) -> Rows:
    """Every row of ``left`` combined with every row of ``right`` (columns of both, in order)."""
    columns = left.columns + right.columns
    if left.fields is not None and right.fields is not None:
        return Rows(columns, fields=left.fields + right.fields)
    a, b = S.fresh("a"), S.fresh("b")
    if left.fields is not None:
        fields = [f"'{n}', {v}" for n, v in left.fields] + [f"'{n}', {b}.`{n}`" for n, _ in right.columns]
        return Rows(columns, sql=f"transform({right.sql}, {b} -> named_struct({', '.join(fields)}))")
    if right.fields is not None:
        fields = [f"'{n}', {a}.`{n}`" for n, _ in left.columns] + [f"'{n}', {v}" for n, v in right.fields]
        return Rows(columns, sql=f"transform({left.sql}, {a} -> named_struct({', '.join(fields)}))")
    fields = [f"'{n}', {a}.`{n}`" for n, _ in left.columns] + [f"'{n}', {b}.`{n}`" for n, _ in right.columns]
    sql = f"flatten(transform({left.sql}, {a} -> transform({right.sql}, {b} -> named_struct({', '.join(fields)}))))"
    return Rows(columns, sql=sql)


def required_elements(parts: tuple[Rows, ...]) -> tuple[str, ...]:
    """Child elements without which a resource yields no row: the first step of each resource-level ``forEach``
    that only navigates by element names (an empty collection yields no row, and the cross product with no row
    is none)."""
    required = set()
    for part in parts:
        match = ELEMENT_CHAIN.match(part.explode.path.strip()) if part.explode is not None else None
        if match and match.group(1) not in LITERALS:
            required.add(match.group(1))
    return tuple(sorted(required))


def compile_view(view: Any) -> CompiledView:
    """Validate and compile a ViewDefinition (dict); raises ViewDefinitionError naming what is wrong."""
    return ViewCompiler(view).compile()
