"""Spark SQL building blocks for FHIRPath collections.

A FHIRPath collection is an ``array<string>`` of JSON texts, one per item, with JSON types kept: strings stay
quoted (``"male"``), numbers and booleans bare (``1.5``, ``true``), complex values as objects. Navigation parses
an item with ``parse_json`` and reads a field with ``variant_get``; ``to_json`` of the variant keeps the JSON type.
Everything is plain SQL (higher-order functions, no UDFs) and avoids functions Sail lacks (zip_with, ...).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable

from silver.views.errors import RUNTIME_ERROR_MARKER, UnsupportedFhirPathError

EMPTY = "CAST(array() AS array<string>)"

_counter = itertools.count()

# FHIR primitive types whose JSON form is a string (choice suffixes and ofType names)
STRING_PRIMITIVES = {
    "string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "date",
    "dateTime", "instant", "time", "xhtml", "integer64",
}
NUMBER_OR_BOOLEAN_PRIMITIVES = {"integer", "decimal", "boolean", "positiveInt", "unsignedInt"}

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def fresh(prefix: str = "x") -> str:
    """A lambda variable name unique in the whole plan (nested lambdas must not shadow each other)."""
    return f"_{prefix}{next(_counter)}"


def sql_string(value: str) -> str:
    """A Spark SQL string literal (backslash escapes are interpreted by the SQL parser)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def json_text_literal(value: object) -> str:
    """SQL literal holding the JSON text of one FHIRPath item."""
    return sql_string(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def let(value: str, body: Callable[[str], str], prefix: str = "l") -> str:
    """``body`` applied to ``value``, inlined (the value may be evaluated more than once).

    Binding with a lambda (``transform(array(value), v -> body)``) would evaluate once, but Sail plans nested
    lambdas in time exponential in their depth (8 levels: seconds, 10: minutes), so repetition is cheaper.
    """
    del prefix
    return body(f"({value})")


def quote_json_string(plain: str) -> str:
    """SQL: a plain string -> its JSON text (quoted, escaped)."""
    return f"regexp_replace(to_json(array({plain})), '^\\\\[|\\\\]$', '')"


def unquote(item: str) -> str:
    """SQL: JSON text of a scalar -> its string value (strings unquoted and unescaped, other JSON kept)."""
    return f"get_json_object(concat('{{\"v\":', {item}, '}}'), '$.v')"


def is_number(item: str) -> str:
    return f"({item} rlike '^-?[0-9]')"


# one JSON string token, quotes and escapes kept
_JSON_STRING_TOKEN = sql_string('"(?:[^"\\\\]|\\\\.)*"')


def expand(variant: str) -> str:
    """SQL: a variant value (or NULL) -> collection of JSON texts (arrays become their items).

    No lambdas and no let-binding: Sail plans nested lambdas in time exponential in their depth, so the
    (cheap) to_json is repeated, and string arrays are split with a regex that keeps each item quoted.
    """
    t = f"to_json({variant})"
    return (f"CASE WHEN {t} IS NULL OR {t} = 'null' THEN {EMPTY} "
            f"WHEN left({t}, 2) = '[\"' THEN regexp_extract_all({t}, {_JSON_STRING_TOKEN}, 0) "
            f"WHEN left({t}, 1) = '[' THEN array_compact(from_json({t}, 'array<string>')) "
            f"ELSE array({t}) END")


def check_field_name(name: str, expr: str) -> str:
    if not _FIELD_NAME.match(name):
        raise UnsupportedFhirPathError(f"FHIRPath {expr!r}: element name {name!r} is not supported")
    return name


def field_of_variant(variant: str, name: str) -> str:
    """SQL: collection of ``name`` values of one parsed item."""
    return expand(f"variant_get({variant}, '$.{name}')")


def field_of_collection(coll: str, name: str) -> str:
    x = fresh()
    return f"flatten(transform({coll}, {x} -> {field_of_variant(f'parse_json({x})', name)}))"


def choice_of_text(item_text: str, base: str) -> str:
    """SQL: the value of choice element ``base[x]`` (any type) of one item given as JSON text.

    The key is found among the item's top-level keys; its JSON type follows from the type suffix.
    """
    string_suffixes = ", ".join(sql_string(s[0].upper() + s[1:]) for s in sorted(STRING_PRIMITIVES))
    keys = f"concat(',', array_join(map_keys(from_json({item_text}, 'map<string,string>')), ','), ',')"
    key = f"regexp_extract({keys}, ',({base}[A-Z][A-Za-z0-9]*),', 1)"
    raw = f"get_json_object({item_text}, concat('$.', {key}))"
    return (f"CASE WHEN {raw} IS NULL THEN {EMPTY} "
            f"WHEN substr({key}, {len(base) + 1}) IN ({string_suffixes}) THEN array({quote_json_string(raw)}) "
            f"ELSE array({raw}) END")


def to_bool(coll: str) -> str:
    """SQL nullable boolean from a collection (FHIRPath singleton evaluation: a non-boolean item is true)."""
    return f"(get({coll}, 0) <> 'false')"


def from_bool(value: str) -> str:
    return f"array_compact(array(CAST({value} AS STRING)))"


def number_text(value: str) -> str:
    """SQL: a numeric SQL value -> JSON number text (NULL stays NULL)."""
    return f"CAST({value} AS STRING)"


def checked(ok: str, message: str, value: str) -> str:
    """SQL: ``value``, failing the job with ``message`` where ``ok`` is false.

    assert_true rather than CASE ... raise_error: Sail evaluates every CASE branch inside lambdas.
    """

    return f"coalesce(assert_true({ok}, {sql_string(f'{RUNTIME_ERROR_MARKER}: {message}')}), {value})"


def single_item(coll: str, message: str) -> str:
    """SQL: the one item of a collection (NULL when empty), failing the job with ``message`` when it has several.

    A fold, so that the collection appears once in the plan (a size check beside ``get`` would repeat it, and with
    it every navigation inside); the fold's lambda mentions only its own variables, so no lambda nests deeper.
    """
    acc, item = fresh("acc"), fresh("it")
    return (f"aggregate({coll}, CAST(NULL AS STRING), ({acc}, {item}) -> coalesce(assert_true({acc} IS NULL, "
            f"{sql_string(f'{RUNTIME_ERROR_MARKER}: {message}')}), {item}))")
