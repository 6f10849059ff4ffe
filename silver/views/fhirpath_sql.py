"""Compile a FHIRPath AST to a Spark SQL expression of type ``array<string>`` (see silver.views.sql)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from silver.views import sql as S
from silver.views.errors import UnsupportedFhirPathError, ViewDefinitionError
from silver.views.fhirpath import (
    Binary,
    Call,
    Constant,
    EmptyLiteral,
    Indexer,
    Literal,
    Member,
    Node,
    Unary,
    Variable,
    parse,
)

# FHIR R4/R5 choice elements ``name[x]``: navigating ``name`` without ofType() returns whichever type is present.
CHOICE_ELEMENTS = {
    "value", "deceased", "multipleBirth", "effective", "onset", "abatement", "occurrence", "performed", "born",
    "age", "medication", "reported", "timing", "serviced", "identified", "asNeeded", "defaultValue", "fixed",
    "pattern", "minValue", "maxValue", "product", "location", "answer", "allowed", "used", "collected",
    "time", "rate", "dose", "bodySite", "subject", "doseNumber", "seriesDoses", "probability", "when",
    "diagnosis", "procedure", "citeAs", "detail", "target", "event", "outcome",
}
TIME_TYPES = {"date", "dateTime", "instant", "time"}
NUMERIC_TYPES = {"decimal", "integer", "integer64", "positiveInt", "unsignedInt"}

# Element types of common FHIR datatypes and backbone elements. Navigating from an item of a known type needs
# no choice-element lookup (Quantity.value is a decimal, not value[x]), which keeps the generated SQL small.
DATATYPE_ELEMENTS: dict[str, dict[str, str]] = {
    "Quantity": {"value": "decimal", "comparator": "code", "unit": "string", "system": "uri", "code": "code"},
    "Range": {"low": "Quantity", "high": "Quantity"},
    "Ratio": {"numerator": "Quantity", "denominator": "Quantity"},
    "Period": {"start": "dateTime", "end": "dateTime"},
    "Identifier": {"use": "code", "type": "CodeableConcept", "system": "uri", "value": "string", "period": "Period",
                   "assigner": "Reference"},
    "ContactPoint": {"system": "code", "value": "string", "use": "code", "rank": "positiveInt", "period": "Period"},
    "CodeableConcept": {"coding": "Coding", "text": "string"},
    "Coding": {"system": "uri", "version": "string", "code": "code", "display": "string", "userSelected": "boolean"},
    "Reference": {"reference": "string", "type": "uri", "identifier": "Identifier", "display": "string"},
    "HumanName": {"use": "code", "text": "string", "family": "string", "given": "string", "prefix": "string",
                  "suffix": "string", "period": "Period"},
    "Address": {"use": "code", "type": "code", "text": "string", "line": "string", "city": "string",
                "district": "string", "state": "string", "postalCode": "string", "country": "string",
                "period": "Period"},
    "ObservationReferenceRange": {"low": "Quantity", "high": "Quantity", "type": "CodeableConcept",
                                  "appliesTo": "CodeableConcept", "age": "Range", "text": "string"},
}
# Elements whose type is the same wherever they occur in FHIR R4 (used when the item's type is unknown).
UNIFORM_ELEMENT_TYPES = {
    "identifier": "Identifier", "telecom": "ContactPoint", "coding": "Coding", "referenceRange":
    "ObservationReferenceRange", "valueRange": "Range",
}
# Choice elements at the root of common R4 resources (other resource types fall back to CHOICE_ELEMENTS).
RESOURCE_CHOICES: dict[str, set[str]] = {
    "Patient": {"deceased", "multipleBirth"}, "Observation": {"effective", "value"}, "Encounter": set(),
    "Condition": {"onset", "abatement"}, "Procedure": {"performed"}, "MedicationRequest": {"reported", "medication"},
    "DiagnosticReport": {"effective"}, "ImagingStudy": set(), "Practitioner": set(), "Organization": set(),
    "AllergyIntolerance": {"onset"}, "Immunization": {"occurrence"}, "QuestionnaireResponse": set(),
}
# type names a choice suffix can carry (valueQuantity -> Quantity, effectiveDateTime -> dateTime)
CHOICE_SUFFIX_TYPES = {t[0].upper() + t[1:]: t for t in (
    *S.STRING_PRIMITIVES, *S.NUMBER_OR_BOOLEAN_PRIMITIVES, *DATATYPE_ELEMENTS, "Attachment", "Age", "Duration",
    "SampledData", "Timing", "Annotation", "Money", "Count", "Distance")}


def element_type(source_type: str | None, name: str) -> tuple[str | None, bool]:
    """(static type of ``name`` when known, whether ``name`` may be a choice element ``name[x]``)."""
    if source_type in DATATYPE_ELEMENTS:
        return DATATYPE_ELEMENTS[source_type].get(name), False
    if source_type in RESOURCE_CHOICES:
        choice = name in RESOURCE_CHOICES[source_type]
    else:
        choice = name in CHOICE_ELEMENTS
    if choice:
        return None, True
    if name in UNIFORM_ELEMENT_TYPES:
        return UNIFORM_ELEMENT_TYPES[name], False
    for base in CHOICE_ELEMENTS:
        if name.startswith(base) and name[len(base):] in CHOICE_SUFFIX_TYPES:
            return CHOICE_SUFFIX_TYPES[name[len(base):]], False
    return None, False


@dataclass(frozen=True)
class Context:
    """What an expression is evaluated against: the resource, one item, or nothing (forEachOrNull's null row)."""

    kind: str  # root | item | empty
    text: str  # SQL: JSON text of the item
    variant: str  # SQL: the parsed item
    row_index: str  # SQL: %rowIndex
    type: str | None = None  # static FHIR type of the item when known
    # the item is a column of the row (the resource, a forEach item exploded by the DataFrame), not a lambda
    # variable: navigation from it can use JSON paths and lazily evaluated CASE branches (see routed_child)
    row_level: bool = False

    @classmethod
    def root(cls, resource_type: str | None = None) -> Context:
        return cls("root", "__raw", "__v", "0", resource_type, row_level=True)

    @classmethod
    def item(cls, var: str, row_index: str, fhir_type: str | None = None) -> Context:
        return cls("item", var, f"parse_json({var})", row_index, fhir_type)

    @classmethod
    def empty(cls) -> Context:
        return cls("empty", "CAST(NULL AS STRING)", "CAST(NULL AS STRING)", "0")


@dataclass(frozen=True)
class Coll:
    sql: str  # array<string>
    type: str | None = None  # static FHIR type when known (after ofType(), or a function's result type)
    variant: str | None = None  # parsed single item, when the collection is one known item
    boolean: str | None = None  # the same value as a nullable SQL boolean, for boolean-valued expressions
    single: bool = False  # at most one item by construction (no cardinality check needed)
    row_level: bool = False  # ``variant`` is a column of the row (see Context.row_level)
    # navigation from a row-level parsed value (variant column, JSON path, the same without lambdas): see child()
    route: tuple[str, str, str] | None = None

    @property
    def numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


def boolean(value: str) -> Coll:
    return Coll(S.from_bool(value), "boolean", boolean=value, single=True)


def as_bool(coll: Coll) -> str:
    return coll.boolean if coll.boolean is not None else S.to_bool(coll.sql)


class FhirPathCompiler:
    """Compiles the FHIRPath expressions of one view; constants are resolved at compile time."""

    def __init__(self, resource_type: str, constants: dict[str, tuple[Coll, object]]) -> None:
        self.resource_type = resource_type
        self.constants = {name: coll for name, (coll, _) in constants.items()}
        self.constant_values = {name: value for name, (_, value) in constants.items()}
        self.expr = ""

    def compile(self, expr: str, ctx: Context) -> Coll:
        if not isinstance(expr, str):
            raise ViewDefinitionError(f"a FHIRPath expression must be a string, got {expr!r}")
        outer, self.expr = self.expr, expr
        try:
            return self.node(parse(expr), ctx)
        finally:
            self.expr = outer

    def unsupported(self, what: str) -> UnsupportedFhirPathError:
        return UnsupportedFhirPathError(f"FHIRPath {self.expr!r}: {what} is not supported")

    # -- nodes -------------------------------------------------------------------------------

    def this(self, ctx: Context) -> Coll:
        if ctx.kind == "empty":
            return Coll(S.EMPTY)
        return Coll(f"array({ctx.text})", ctx.type, variant=ctx.variant, row_level=ctx.row_level)

    def node(self, node: Node, ctx: Context) -> Coll:
        if isinstance(node, Literal):
            return literal(node)
        if isinstance(node, EmptyLiteral):
            return Coll(S.EMPTY)
        if isinstance(node, Constant):
            return self.constant(node.name, ctx)
        if isinstance(node, Variable):
            if node.name == "this":
                return self.this(ctx)
            raise self.unsupported(f"${node.name}")
        if isinstance(node, Member):
            return self.member(node, ctx)
        if isinstance(node, Indexer):
            return self.indexer(node, ctx)
        if isinstance(node, Call):
            return self.call(node, ctx)
        if isinstance(node, Unary):
            return self.unary(node, ctx)
        if isinstance(node, Binary):
            return self.binary(node, ctx)
        raise self.unsupported(type(node).__name__)  # pragma: no cover

    def constant(self, name: str, ctx: Context) -> Coll:
        if name == "rowIndex":
            return Coll(f"array(CAST({ctx.row_index} AS STRING))", "integer")
        if name in ("resource", "rootResource"):
            return self.this(Context.root(self.resource_type))
        if name not in self.constants:
            raise ViewDefinitionError(f"FHIRPath {self.expr!r}: constant %{name} is not defined in the view")
        return self.constants[name]

    def member(self, node: Member, ctx: Context) -> Coll:
        name = S.check_field_name(node.name, self.expr)
        if node.target is None:
            if ctx.kind == "empty":
                return Coll(S.EMPTY)
            if ctx.kind == "root" and name == self.resource_type:
                return self.this(ctx)
            source = self.this(ctx)
        else:
            source = self.node(node.target, ctx)
        return self.child(source, name)

    def child(self, source: Coll, name: str) -> Coll:
        if source.sql == S.EMPTY:
            return Coll(S.EMPTY)
        child_type, choice = element_type(source.type, name)
        if not choice:
            if source.variant is not None:
                sql = S.field_of_variant(source.variant, name)
                route = (source.variant, f"$.{name}", sql) if source.row_level else None
                return Coll(sql, child_type, route=route)
            if source.route is not None:
                return self.routed_child(source.route, name, child_type)
            return Coll(S.field_of_collection(source.sql, name), child_type)
        # a choice element name[x] without ofType(): whichever type is present (FHIR never has both
        # ``value`` and ``valueX`` in one element, so concatenating the two lookups is exact)
        if source.variant is not None and source.sql.startswith("array("):
            text = source.sql[len("array("):-1]
            return Coll(f"concat({S.field_of_variant(source.variant, name)}, {S.choice_of_text(text, name)})")
        x = S.fresh()
        return Coll(f"flatten(transform({source.sql}, {x} -> concat({S.field_of_variant(f'parse_json({x})', name)}, "
                    f"{S.choice_of_text(x, name)})))")

    def routed_child(self, route: tuple[str, str, str], name: str, child_type: str | None) -> Coll:
        """``a.b.name`` from a row-level value: one ``variant_get`` of ``$.a.b.name`` where no element on the way is
        an array (``$.a[0]``, ``$.a.b[0]`` are NULL for objects, primitives and empty arrays), else per-item
        navigation of the collection ``a.b`` (itself direct where it can be). Both give the same collection; the
        direct one needs no lambda, which on Sail is several times cheaper, and outside lambdas CASE evaluates
        the general branch only where it applies."""
        variant, path, source = route
        deeper = f"{path}.{name}"
        general = S.field_of_collection(source, name)
        steps = path[2:].split(".")
        guards = " AND ".join(f"variant_get({variant}, '$.{'.'.join(steps[:k])}[0]') IS NULL"
                              for k in range(1, len(steps) + 1))
        direct = S.expand(f"variant_get({variant}, {S.sql_string(deeper)})")
        sql = f"CASE WHEN {guards} THEN {direct} ELSE {general} END"
        return Coll(sql, child_type, route=(variant, deeper, sql))

    def indexer(self, node: Indexer, ctx: Context) -> Coll:
        coll = self.node(node.target, ctx)
        index = self.node(node.index, ctx)
        if isinstance(node.index, Literal) and node.index.kind == "integer":
            return Coll(f"slice({coll.sql}, {int(str(node.index.value)) + 1}, 1)", coll.type, single=True)
        pos = f"try_cast(get({index.sql}, 0) AS INT)"
        # every CASE branch may be evaluated (Sail, inside lambdas): keep slice's start valid
        return Coll(S.let(pos, lambda i: (
            f"CASE WHEN {i} >= 0 THEN slice({coll.sql}, greatest(coalesce({i}, 0), 0) + 1, 1) ELSE {S.EMPTY} END"
        ), "i"), coll.type)

    # -- functions ---------------------------------------------------------------------------

    def call(self, node: Call, ctx: Context) -> Coll:
        name, args = node.name, node.args
        if name == "ofType":
            return self.of_type(node, ctx)
        source = self.this(ctx) if node.target is None else self.node(node.target, ctx)
        arity = {
            "where": (1, 1), "exists": (0, 1), "empty": (0, 0), "first": (0, 0), "last": (0, 0), "not": (0, 0),
            "join": (0, 1), "extension": (1, 1), "getResourceKey": (0, 0), "getReferenceKey": (0, 1),
            "count": (0, 0), "lowBoundary": (0, 1), "highBoundary": (0, 1), "all": (1, 1), "distinct": (0, 0),
            "tail": (0, 0), "skip": (1, 1), "take": (1, 1), "hasValue": (0, 0), "single": (0, 0),
        }
        if name not in arity:
            raise self.unsupported(f"function {name}()")
        low, high = arity[name]
        if not low <= len(args) <= high:
            raise ViewDefinitionError(f"FHIRPath {self.expr!r}: {name}() takes {low}..{high} arguments")
        src = source.sql
        if name == "where":
            return Coll(self.filter(src, args[0], ctx, source.type), source.type)
        if name == "exists":
            coll = self.filter(src, args[0], ctx, source.type) if args else src
            return boolean(f"(size({coll}) > 0)")
        if name == "all":
            x = S.fresh()
            cond = self.node(args[0], Context.item(x, ctx.row_index, source.type))
            return boolean(f"forall({src}, {x} -> coalesce({as_bool(cond)}, false))")
        if name == "empty":
            return boolean(f"(size({src}) = 0)")
        if name == "count":
            return Coll(f"array(CAST(size({src}) AS STRING))", "integer", single=True)
        if name == "hasValue":
            return boolean(f"(size({src}) = 1 AND left(get({src}, 0), 1) NOT IN ('{{', '['))")
        if name == "first":
            return Coll(f"slice({src}, 1, 1)", source.type, single=True)
        if name == "last":
            return Coll(f"reverse(slice(reverse({src}), 1, 1))", source.type, single=True)
        if name == "tail":
            return Coll(S.let(src, lambda c: (
                f"CASE WHEN size({c}) < 2 THEN {S.EMPTY} ELSE slice({c}, 2, size({c})) END"), "c"), source.type)
        if name in ("skip", "take"):
            n = self.integer_argument(name, args[0])
            if name == "take":
                return Coll(f"slice({src}, 1, {n})" if n > 0 else S.EMPTY, source.type)
            return Coll(S.let(src, lambda c: (
                f"CASE WHEN size({c}) <= {n} THEN {S.EMPTY} ELSE slice({c}, {n + 1}, size({c})) END"), "c"),
                source.type)
        if name == "single":
            message = f"FHIRPath {self.expr!r}: single() found several items"
            return Coll(S.let(src, lambda c: S.checked(f"size({c}) <= 1", message, c), "c"), source.type)
        if name == "distinct":
            return Coll(f"array_distinct({src})", source.type)
        if name == "not":
            return boolean(f"(NOT {as_bool(source)})")
        if name == "join":
            sep = self.string_argument(name, args[0]) if args else ""
            x = S.fresh()
            joined = f"array_join(transform({src}, {x} -> {S.unquote(x)}), {S.sql_string(sep)})"
            return Coll(f"array({S.quote_json_string(joined)})", "string", single=True)
        if name == "extension":
            url = self.string_argument(name, args[0])
            x = S.fresh()
            ext = self.child(source, "extension").sql
            return Coll(f"filter({ext}, {x} -> get_json_object({x}, '$.url') = {S.sql_string(url)})", "Extension")
        if name == "getResourceKey":
            return Coll(self.child(source, "id").sql, "string")
        if name == "getReferenceKey":
            return self.reference_key(source, args, ctx)
        if name in ("lowBoundary", "highBoundary"):
            x = S.fresh()
            return Coll(f"filter(transform({src}, {x} -> {boundary(x, source.type, name == 'lowBoundary')}), "
                        f"{x} -> {x} IS NOT NULL)", source.type)
        raise self.unsupported(f"function {name}()")  # pragma: no cover

    def filter(self, src: str, criterion: Node, ctx: Context, item_type: str | None = None) -> str:
        x = S.fresh()
        cond = self.node(criterion, Context.item(x, ctx.row_index, item_type))
        return f"filter({src}, {x} -> coalesce({as_bool(cond)}, false))"

    def of_type(self, node: Call, ctx: Context) -> Coll:
        if len(node.args) != 1 or not isinstance(node.args[0], Member) or node.args[0].target is not None:
            raise ViewDefinitionError(f"FHIRPath {self.expr!r}: ofType() takes one type name")
        type_name = node.args[0].name.removeprefix("FHIR.").removeprefix("System.")
        target = node.target
        if isinstance(target, Member):
            # choice element: value.ofType(Quantity) is the element valueQuantity
            suffixed = replace(target, name=target.name + type_name[0].upper() + type_name[1:])
            source = self.this(ctx) if target.target is None else self.node(target.target, ctx)
            if target.target is None and ctx.kind == "empty":
                return Coll(S.EMPTY, type_name)
            return Coll(self.child(source, S.check_field_name(suffixed.name, self.expr)).sql, type_name)
        if type_name[:1].isupper() and (target is None or isinstance(target, Variable)):
            source = self.this(ctx) if target is None else self.node(target, ctx)
            x = S.fresh()
            return Coll(f"filter({source.sql}, {x} -> get_json_object({x}, '$.resourceType') = "
                        f"{S.sql_string(type_name)})", type_name)
        raise self.unsupported("ofType() on anything but an element or a resource")

    def reference_key(self, source: Coll, args: tuple[Node, ...], ctx: Context) -> Coll:
        wanted: str | None = None
        if args:
            if not isinstance(args[0], Member) or args[0].target is not None:
                raise ViewDefinitionError(f"FHIRPath {self.expr!r}: getReferenceKey() takes a resource type name")
            wanted = args[0].name
        x = S.fresh()
        # Type/id, [base]/Type/id[/_history/v], urn:uuid:id (bundle-internal, as Synthea writes), #contained
        pattern = "'(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\\\\-\\\\.]{1,64})(?:/_history/[^/]+)?$'"
        declared = f"get_json_object({x}, '$.type')"

        def key(r: str) -> str:
            if wanted is None:
                return (f"CASE WHEN {r} rlike {pattern} THEN regexp_extract({r}, {pattern}, 2) "
                        f"WHEN {r} rlike '^urn:uuid:' THEN substr({r}, 10) END")
            w = S.sql_string(wanted)
            return (f"CASE WHEN {r} rlike {pattern} THEN "
                    f"CASE WHEN regexp_extract({r}, {pattern}, 1) = {w} THEN regexp_extract({r}, {pattern}, 2) END "
                    f"WHEN {r} rlike '^urn:uuid:' AND coalesce({declared}, {w}) = {w} THEN substr({r}, 10) END")

        ref = f"get_json_object({x}, '$.reference')"
        keys = f"transform({source.sql}, {x} -> {S.let(ref, key, 'rf')})"
        y = S.fresh()
        return Coll(f"transform(filter({keys}, {y} -> {y} IS NOT NULL), {y} -> {S.quote_json_string(y)})", "string")

    def string_argument(self, fn: str, node: Node) -> str:
        if isinstance(node, Literal) and node.kind == "string":
            return str(node.value)
        if isinstance(node, Constant) and isinstance(self.constant_values.get(node.name), str):
            return str(self.constant_values[node.name])
        raise self.unsupported(f"a non-literal argument to {fn}()")

    def integer_argument(self, fn: str, node: Node) -> int:
        if isinstance(node, Literal) and node.kind == "integer":
            return int(str(node.value))
        raise self.unsupported(f"a non-literal argument to {fn}()")

    # -- operators ---------------------------------------------------------------------------

    def unary(self, node: Unary, ctx: Context) -> Coll:
        operand = self.node(node.operand, ctx)
        if node.op == "+":
            return operand
        x = S.fresh()
        return Coll(f"transform({operand.sql}, {x} -> {S.number_text(f'-try_cast({x} AS DOUBLE)')})", operand.type)

    def binary(self, node: Binary, ctx: Context) -> Coll:
        op = node.op
        if op in ("is", "as", "in", "contains", "~", "!~"):
            raise self.unsupported(f"operator {op!r}")
        left, right = self.node(node.left, ctx), self.node(node.right, ctx)
        lb, rb = as_bool(left), as_bool(right)
        if op == "and":
            return boolean(f"({lb} AND {rb})")
        if op == "or":
            return boolean(f"({lb} OR {rb})")
        if op == "xor":
            return boolean(f"({lb} <> {rb})")
        if op == "implies":
            return boolean(f"(NOT {lb} OR {rb})")
        if op == "|":
            return Coll(f"array_distinct(concat({left.sql}, {right.sql}))")
        a, b = f"get({left.sql}, 0)", f"get({right.sql}, 0)"
        if op in ("=", "!=", "<", ">", "<=", ">=") and (left.numeric or right.numeric):
            # a known number on one side: compare by value only (smaller SQL than the text fallback)
            sql_op = "<>" if op == "!=" else op
            return boolean(f"(try_cast({a} AS DOUBLE) {sql_op} try_cast({b} AS DOUBLE))")
        if op in ("=", "!="):
            return boolean(equality(left.sql, right.sql, negate=op == "!="))
        if op in ("<", ">", "<=", ">="):
            # numbers by value, strings/dates as text; an empty operand gives empty (NULL)
            return boolean(f"coalesce(try_cast({a} AS DOUBLE) {op} try_cast({b} AS DOUBLE), "
                           f"{S.unquote(a)} {op} {S.unquote(b)})")
        if op == "&":
            def text(c: str) -> str:
                x = S.fresh()
                return f"coalesce(array_join(transform({c}, {x} -> {S.unquote(x)}), ''), '')"
            return Coll(f"array({S.quote_json_string(f'concat({text(left.sql)}, {text(right.sql)})')})", "string",
                        single=True)
        if op in ("+", "-", "*", "/", "div", "mod"):
            strings = "string" in (left.type, right.type)
            return Coll(arithmetic(op, a, b, strings), "string" if strings else "decimal", single=True)
        raise self.unsupported(f"operator {op!r}")  # pragma: no cover


def equality(left: str, right: str, negate: bool) -> str:
    """SQL nullable boolean for FHIRPath ``=`` on the first items (views compare singletons): empty operand ->
    empty; numbers compare by value, other items by JSON text (the string '1' differs from the number 1)."""
    a, b = f"get({left}, 0)", f"get({right}, 0)"
    result = f"coalesce(try_cast({a} AS DOUBLE) = try_cast({b} AS DOUBLE), {a} = {b})"
    return f"(NOT {result})" if negate else result


def arithmetic(op: str, a: str, b: str, strings: bool) -> str:
    """SQL collection: number op number (string + string concatenates); empty when either side is empty."""
    if op == "+" and strings:
        return f"array_compact(array({S.quote_json_string(f'concat({S.unquote(a)}, {S.unquote(b)})')}))"
    x, y = f"try_cast({a} AS DOUBLE)", f"try_cast({b} AS DOUBLE)"
    value = {
        "+": f"{x} + {y}", "-": f"{x} - {y}", "*": f"{x} * {y}", "/": f"{x} / nullif({y}, 0)",
        "div": f"CAST(floor({x} / nullif({y}, 0)) AS BIGINT)", "mod": f"{x} - {y} * floor({x} / nullif({y}, 0))",
    }[op]
    return f"array_compact(array({S.number_text(value)}))"


def literal(node: Literal) -> Coll:
    if node.kind == "boolean":
        value = "true" if node.value else "false"
        return Coll(f"array('{value}')", "boolean", boolean=value, single=True)
    if node.kind in ("integer", "decimal"):
        return Coll(f"array('{node.value}')", node.kind, single=True)
    fhir_type = node.kind if node.kind in TIME_TYPES else "string"
    return Coll(f"array({S.json_text_literal(node.value)})", fhir_type, single=True)


def constant_value(name: str, constant: dict[str, object]) -> tuple[Coll, object]:
    """A ViewDefinition ``constant`` entry ({name, value[x]}) as a literal collection."""
    values = [(key, value) for key, value in constant.items() if key.startswith("value") and len(key) > 5]
    if len(values) != 1:
        raise ViewDefinitionError(f"constant {name!r} must have exactly one value[x], found {[k for k, _ in values]}")
    key, value = values[0]
    fhir_type = key[5].lower() + key[6:]
    if fhir_type in S.NUMBER_OR_BOOLEAN_PRIMITIVES:
        if isinstance(value, bool) != (fhir_type == "boolean") or not isinstance(value, int | float):
            raise ViewDefinitionError(f"constant {name!r}: {key} has the wrong JSON type ({value!r})")
    elif not isinstance(value, str):
        raise ViewDefinitionError(f"constant {name!r}: {key} must be a string, got {value!r}")
    return Coll(f"array({S.json_text_literal(value)})", fhir_type, single=True), value


def boundary(item: str, fhir_type: str | None, low: bool) -> str:
    """SQL: lowBoundary()/highBoundary() of one item (decimal, date, dateTime, instant, time); NULL otherwise."""
    def decimal(x: str) -> str:
        digits = f"CASE WHEN instr({x}, '.') > 0 THEN length({x}) - instr({x}, '.') ELSE 0 END"
        half = f"try_cast(concat('0.', repeat('0', {digits}), '5') AS DECIMAL(38,18))"
        value = f"try_cast({x} AS DECIMAL(38,18)) {'-' if low else '+'} {half}"
        return f"regexp_replace(regexp_replace(CAST({value} AS STRING), '(\\\\.[0-9]*[1-9])0+$', '$1'), '\\\\.0+$', '')"

    def date(v: str) -> str:
        if low:
            return f"CASE length({v}) WHEN 4 THEN concat({v}, '-01-01') WHEN 7 THEN concat({v}, '-01') ELSE {v} END"
        return (f"CASE length({v}) WHEN 4 THEN concat({v}, '-12-31') "
                f"WHEN 7 THEN CAST(last_day(try_cast(concat({v}, '-01') AS DATE)) AS STRING) ELSE {v} END")

    def time(t: str) -> str:
        pads = ("':00:00.000'", "':00.000'", "'.000'") if low else ("':59:59.999'", "':59.999'", "'.999'")
        return (f"CASE length({t}) WHEN 2 THEN concat({t}, {pads[0]}) WHEN 5 THEN concat({t}, {pads[1]}) "
                f"WHEN 8 THEN concat({t}, {pads[2]}) ELSE rpad({t}, 12, '{'0' if low else '9'}') END")

    def date_time(v: str) -> str:
        tz_default = "'+14:00'" if low else "'-12:00'"
        no_time = f"concat({date(v)}, {'T00:00:00.000' if low else 'T23:59:59.999'!r}, {tz_default})"
        tz = f"regexp_extract({v}, '(Z|[+-][0-9]{{2}}:[0-9]{{2}})$', 1)"
        clock = f"substr({v}, 12, length({v}) - 11 - length({tz}))"
        with_time = f"concat(substr({v}, 1, 11), {time(clock)}, CASE WHEN {tz} = '' THEN {tz_default} ELSE {tz} END)"
        return f"CASE WHEN instr({v}, 'T') = 0 THEN {no_time} ELSE {with_time} END"

    def by_shape(v: str) -> str:
        if fhir_type == "date":
            return date(v)
        if fhir_type in ("dateTime", "instant"):
            return date_time(v)
        if fhir_type == "time":
            return time(v)
        return (f"CASE WHEN {v} rlike '^[0-9]{{4}}(-[0-9]{{2}}){{0,2}}$' THEN {date(v)} "
                f"WHEN {v} rlike '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T' THEN {date_time(v)} "
                f"WHEN {v} rlike '^[0-9]{{2}}(:[0-9]{{2}})' THEN {time(v)} END")

    quoted = S.let(S.unquote(item), lambda v: S.quote_json_string(by_shape(v)), "bd")
    if fhir_type in TIME_TYPES:
        return f"CASE WHEN left({item}, 1) = '\"' THEN {quoted} END"
    return (f"CASE WHEN {S.is_number(item)} THEN {decimal(item)} "
            f"WHEN left({item}, 1) = '\"' THEN {quoted} END")
