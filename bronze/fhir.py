"""FHIR R4: split landed JSON/NDJSON files into one row per resource, verbatim.

The split runs engine-side in a vectorized Arrow UDF (``mapInArrow``) and not in SQL functions, because
Sail's ``from_json`` re-serialises nested objects with numbers as float64 (``1.50`` -> ``1.5``, ``1e2`` ->
``100.0``, long integers lose digits): FHIR decimals keep their precision only if the text is kept as sent.
The UDF walks each document with the C JSON scanner (``raw_decode``) and slices the original text of every
``entry[i].resource``, recursing into nested Bundles. Each byte is decoded once; resourceType, id,
meta.lastUpdated and the SHA-256 of the verbatim text come from that same pass (as ``get_json_object``/``sha2``
would give them, at a fraction of the cost of re-parsing the text engine-side).
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from bronze.fhir_types import R4_RESOURCE_TYPES
from bronze.quarantine import quarantine_text
from bronze.schemas import QUARANTINE_SCHEMA
from lakehouse.catalog import conform

MAX_NESTING = 8
SPLIT_SCHEMA = ("source_file string, position bigint, entry_index bigint, entry_path string, bundle_type string, "
                "bundle_id string, full_url string, raw string, reason string, resource_type string, "
                "resource_id string, last_updated string, content_hash string")
_ARROW_SCHEMA = pa.schema([
    ("source_file", pa.string()), ("position", pa.int64()), ("entry_index", pa.int64()), ("entry_path", pa.string()),
    ("bundle_type", pa.string()), ("bundle_id", pa.string()), ("full_url", pa.string()), ("raw", pa.string()),
    ("reason", pa.string()), ("resource_type", pa.string()), ("resource_id", pa.string()),
    ("last_updated", pa.string()), ("content_hash", pa.string()),
])
_decoder = json.JSONDecoder()
_WS = re.compile(r"[ \t\r\n]*")
# members whose array of objects is walked member by member, so that a Bundle is decoded once in total
_EXPANDED = "entry"


def _skip_ws(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


@dataclass
class _Member:
    start: int
    end: int
    value: Any = None  # decoded value (None for an expanded array: see ``items``)
    items: list[tuple[int, int, dict[str, _Member] | None]] | None = None  # expanded array elements


def _object_members(text: str, start: int) -> tuple[dict[str, _Member], int]:
    """Members of the JSON object at ``start`` with their spans and decoded values; and the object's end.

    Each byte is decoded once: an ``entry`` array is walked element by element (and each element object
    member by member) instead of being decoded as a whole and then again per entry.
    """
    members: dict[str, _Member] = {}
    i = _skip_ws(text, start + 1)
    if text[i:i + 1] == "}":
        return members, i + 1
    while True:
        key, i = _decoder.raw_decode(text, _skip_ws(text, i))
        if not isinstance(key, str):
            raise ValueError(f"expected a string key at char {i}")
        i = _skip_ws(text, i)
        if text[i:i + 1] != ":":
            raise ValueError(f"expected ':' at char {i}")
        vstart = _skip_ws(text, i + 1)
        if key == _EXPANDED and text[vstart:vstart + 1] == "[":
            items, vend = _array_items(text, vstart)
            members[key] = _Member(vstart, vend, items=items)
        else:
            value, vend = _decoder.raw_decode(text, vstart)
            members[key] = _Member(vstart, vend, value)
        i = _skip_ws(text, vend)
        if text[i:i + 1] == ",":
            i += 1
            continue
        if text[i:i + 1] == "}":
            return members, i + 1
        raise ValueError(f"expected ',' or '}}' at char {i}")


def _array_items(text: str, start: int) -> tuple[list[tuple[int, int, dict[str, _Member] | None]], int]:
    """Elements of the JSON array at ``start``: (start, end, members if the element is an object); and the end."""
    items: list[tuple[int, int, dict[str, _Member] | None]] = []
    i = _skip_ws(text, start + 1)
    if text[i:i + 1] == "]":
        return items, i + 1
    while True:
        vstart = _skip_ws(text, i)
        if text[vstart:vstart + 1] == "{":
            members, vend = _object_members(text, vstart)
            items.append((vstart, vend, members))
        else:
            _, vend = _decoder.raw_decode(text, vstart)
            items.append((vstart, vend, None))
        i = _skip_ws(text, vend)
        if text[i:i + 1] == ",":
            i += 1
            continue
        if text[i:i + 1] == "]":
            return items, i + 1
        raise ValueError(f"expected ',' or ']' at char {i}")


def _resource_reason(resource: Any) -> str | None:
    """Why a decoded JSON value is not a FHIR R4 resource, or None."""
    if not isinstance(resource, dict):
        return "JSON value is not an object"
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return "resource has no resourceType"
    if rtype not in R4_RESOURCE_TYPES:
        return f"resourceType {rtype[:100]!r} is not a FHIR R4 type"
    return None


def _identity(resource: Any) -> dict[str, str | None]:
    """resourceType, id and meta.lastUpdated of a decoded resource, as get_json_object renders them."""
    if not isinstance(resource, dict):
        return {}
    meta = resource.get("meta")
    return {"resource_type": _json_text(resource.get("resourceType")), "resource_id": _json_text(resource.get("id")),
            "last_updated": _json_text(meta.get("lastUpdated")) if isinstance(meta, dict) else None}


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:  # a lone surrogate escape ("\ud800") is no text: keep the escape as sent
            return json.dumps(value)[1:-1]
    return json.dumps(value, separators=(",", ":"))


def parse_value(text: str, start: int) -> tuple[dict[str, _Member] | None, int]:
    """Parse the JSON value at ``start`` once: its members if it is an object, and its end (ValueError if invalid)."""
    if text[start:start + 1] == "{":
        return _object_members(text, start)
    _, end = _decoder.raw_decode(text, start)
    return None, end


def split_document(text: str, start: int, end: int, source_file: str, position: int | None,
                   path: str = "", depth: int = 0,
                   members: dict[str, _Member] | None = None) -> Iterator[dict[str, Any]]:
    """Rows for one JSON value text[start:end] that parsed already: a resource, or a Bundle to explode."""
    base = {"source_file": source_file, "position": position, "entry_index": None, "entry_path": path or None,
            "bundle_type": None, "bundle_id": None, "full_url": None}
    if text[start:start + 1] != "{":
        yield {**base, "raw": text[start:end], "reason": "JSON value is not an object"}
        return
    if members is None:
        members, _ = _object_members(text, start)
    rtype_member = members.get("resourceType")
    reason = _resource_reason({"resourceType": rtype_member.value if rtype_member else None})
    if reason:
        yield {**base, "raw": text[start:end], "reason": reason}
        return
    entry = members.get("entry")
    if rtype_member.value != "Bundle" or depth >= MAX_NESTING or entry is None:  # type: ignore[union-attr]
        decoded = {key: m.value for key, m in members.items() if key in ("resourceType", "id", "meta")}
        yield {**base, "raw": text[start:end], "reason": None, **_identity(decoded)}
        return
    btype, bid = _member_value(members, "type"), _member_value(members, "id")
    if entry.items is None:
        yield {**base, "raw": text[start:end], "reason": "Bundle.entry is not an array"}
        return
    for idx, (s, e, entry_members) in enumerate(entry.items):
        entry_path = f"{path}.{idx}" if path else str(idx)
        if depth == 0 and position is None:
            base["position"] = idx
        row = {**base, "entry_index": idx, "entry_path": entry_path, "bundle_type": btype, "bundle_id": bid}
        if entry_members is None:
            yield {**row, "raw": text[s:e], "reason": f"Bundle entry {entry_path} is not an object"}
            continue
        row["full_url"] = _member_value(entry_members, "fullUrl")
        resource = entry_members.get("resource")
        if resource is None:
            yield {**row, "raw": text[s:e], "reason": f"Bundle entry {entry_path} has no resource"}
            continue
        rs, re_ = resource.start, resource.end
        value = resource.value
        if isinstance(value, dict) and value.get("resourceType") == "Bundle" and "entry" in value:
            subs: Iterator[dict[str, Any]] = split_document(text, rs, re_, source_file, base["position"],
                                                            entry_path, depth + 1)
        else:  # a plain resource: decoded already, no need to walk it again
            subs = iter([{**base, "entry_path": entry_path, "raw": text[rs:re_],
                          "reason": _resource_reason(value), **_identity(value)}])
        for sub in subs:
            if sub["entry_path"] == entry_path:  # the entry's own resource (not a nested bundle's entry)
                sub.update(entry_index=idx, bundle_type=btype, bundle_id=bid, full_url=row["full_url"])
            if sub["reason"] and not sub["reason"].startswith("Bundle entry"):
                sub["reason"] = f"Bundle entry {entry_path}: {sub['reason']}"
            yield sub


def _member_value(members: dict[str, _Member], key: str) -> str | None:
    member = members.get(key)
    return None if member is None else _json_text(member.value)  # a string column, whatever JSON type was sent


def _json_error(text: str, start: int, exc: ValueError | RecursionError) -> str:
    """The standard decoder's message for invalid JSON at ``start`` (clearer than the walker's own)."""
    if isinstance(exc, RecursionError):  # deeper than the interpreter's recursion limit: must not crash the split
        return f"JSON nested too deeply to parse ({exc})"
    try:
        _decoder.raw_decode(text, start)
    except (ValueError, RecursionError) as std:
        return str(std)
    return str(exc)


def split_file(source_file: str, text: str) -> Iterator[dict[str, Any]]:
    """One file: a single JSON document (pretty-printed or not), or NDJSON (one document per line)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    start = _skip_ws(text, 0)
    whole_error: str | None = None
    try:
        members, end = parse_value(text, start)
        if _skip_ws(text, end) == len(text):
            rows = list(split_document(text, start, end, source_file, None, members=members))
            for row in rows:
                row["position"] = 0 if row["position"] is None else row["position"]
            yield from rows
            return
    except (ValueError, RecursionError) as exc:
        whole_error = f"invalid JSON: {_json_error(text, start, exc)}"
    lines = text.split("\n")
    first = next((ln for ln in lines if ln.strip()), "")
    if whole_error is not None and not _parses(first):
        yield _bad(source_file, 0, text, whole_error)  # one broken document, not NDJSON
        return
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        s = _skip_ws(line, 0)
        try:
            members, e = parse_value(line, s)
            if _skip_ws(line, e) != len(line):
                raise ValueError(f"extra data after the JSON value at char {e}")
            rows = list(split_document(line, s, e, source_file, number, members=members))
        except (ValueError, RecursionError) as exc:
            yield _bad(source_file, number, line, f"invalid JSON on line {number}: {_json_error(line, s, exc)}")
            continue
        yield from rows


def content_hash(raw: str) -> str:
    """sha256 of the resource's canonical JSON (keys sorted, no insignificant whitespace, decimals as written).

    The same resource pretty-printed in one bundle and compact in another is one distinct content, stored once;
    ``raw`` keeps the text as first received.
    """
    try:
        canonical = json.dumps(json.loads(raw, parse_float=str), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False)
    except (ValueError, RecursionError):
        canonical = raw
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except (ValueError, RecursionError):
        return False


def _bad(source_file: str, position: int, raw: str, reason: str) -> dict[str, Any]:
    return {"source_file": source_file, "position": position, "entry_index": None, "entry_path": None,
            "bundle_type": None, "bundle_id": None, "full_url": None, "raw": raw, "reason": reason}


def _split_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        rows: list[dict[str, Any]] = []
        for source_file, content in zip(batch.column("source_file").to_pylist(), batch.column("content").to_pylist(),
                                        strict=True):
            with _gc_paused():
                split = _split_content(source_file, content)
            for row in split:
                if row["reason"] is None:  # hashed here, where the text is at hand
                    row["content_hash"] = content_hash(row["raw"])
            rows.extend(split)
            if len(rows) >= 50_000:
                yield pa.RecordBatch.from_pylist(rows, schema=_ARROW_SCHEMA)
                rows = []
        if rows:
            yield pa.RecordBatch.from_pylist(rows, schema=_ARROW_SCHEMA)


def _split_content(source_file: str, content: bytes) -> list[dict[str, Any]]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [_bad(source_file, 0, content.decode("iso-8859-1"), f"not UTF-8 (FHIR JSON must be): {exc}")]
    return list(split_file(source_file, text))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Decoded documents are acyclic: cyclic GC passes over millions of fresh objects only cost time (~30%)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def split_files(files: DataFrame) -> DataFrame:
    """binaryFile rows (+source_file) -> one row per resource or bad item (``SPLIT_SCHEMA``; reason null = good)."""
    return files.select("source_file", "content").mapInArrow(_split_batches, SPLIT_SCHEMA)


def annotate(split: DataFrame, run_id: str) -> DataFrame:
    """Split rows -> Bronze columns plus ``reason`` (null when the resource is good)."""
    return split.select(
        "resource_type", "resource_id", "last_updated",
        "raw", "source_file", "bundle_type", "bundle_id", "full_url", "entry_index", "entry_path", "position",
        "content_hash",
        F.lit(run_id).alias("ingest_run_id"),
        F.current_timestamp().alias("ingested_at"),
        "reason",
    )


def good_and_bad(items: DataFrame, run_id: str) -> tuple[DataFrame, DataFrame]:
    """Annotated rows -> (Bronze rows incl. duplicates within the batch, quarantine rows)."""
    resources = items.filter(F.col("reason").isNull()).drop("reason")
    bad = items.filter(F.col("reason").isNotNull())
    quarantine = conform(bad.select(*quarantine_text(F.col("reason"), F.col("source_file"), F.col("position"),
                                                     F.col("raw"), run_id)), QUARANTINE_SCHEMA)
    return resources, quarantine


def split_resources(files: DataFrame, run_id: str) -> tuple[DataFrame, DataFrame]:
    """binaryFile rows (+source_file) -> (Bronze rows incl. duplicates within the batch, quarantine rows)."""
    return good_and_bad(annotate(split_files(files), run_id), run_id)
