"""FHIR R4: split landed JSON/NDJSON files into one row per resource, verbatim.

The split runs engine-side in a vectorized Arrow UDF (``mapInArrow``) and not in SQL functions, because
Sail's ``from_json`` re-serialises nested objects with numbers as float64 (``1.50`` -> ``1.5``, ``1e2`` ->
``100.0``, long integers lose digits): FHIR decimals keep their precision only if the text is kept as sent.
The UDF walks each document with the C JSON scanner (``raw_decode``) and slices the original text of every
``entry[i].resource``, recursing into nested Bundles. resourceType, id and meta.lastUpdated are then read
engine-side with ``get_json_object``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from bronze.fhir_types import R4_RESOURCE_TYPES
from bronze.quarantine import conform, quarantine_text

MAX_NESTING = 8
SPLIT_SCHEMA = ("source_file string, position bigint, entry_index bigint, entry_path string, bundle_type string, "
                "bundle_id string, full_url string, raw string, reason string")
_ARROW_SCHEMA = pa.schema([
    ("source_file", pa.string()), ("position", pa.int64()), ("entry_index", pa.int64()), ("entry_path", pa.string()),
    ("bundle_type", pa.string()), ("bundle_id", pa.string()), ("full_url", pa.string()), ("raw", pa.string()),
    ("reason", pa.string()),
])
_decoder = json.JSONDecoder()
_WS = " \t\r\n"


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _object_spans(text: str, start: int) -> tuple[dict[str, tuple[int, int]], int]:
    """Spans (start, end) of each member value of the JSON object at ``start``; and the object's end."""
    spans: dict[str, tuple[int, int]] = {}
    i = _skip_ws(text, start + 1)
    if text[i:i + 1] == "}":
        return spans, i + 1
    while True:
        key, i = _decoder.raw_decode(text, _skip_ws(text, i))
        i = _skip_ws(text, i)
        if text[i:i + 1] != ":":
            raise ValueError(f"expected ':' at char {i}")
        vstart = _skip_ws(text, i + 1)
        _, vend = _decoder.raw_decode(text, vstart)
        spans[str(key)] = (vstart, vend)
        i = _skip_ws(text, vend)
        if text[i:i + 1] == ",":
            i += 1
            continue
        if text[i:i + 1] == "}":
            return spans, i + 1
        raise ValueError(f"expected ',' or '}}' at char {i}")


def _array_spans(text: str, start: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    i = _skip_ws(text, start + 1)
    if text[i:i + 1] == "]":
        return spans
    while True:
        vstart = _skip_ws(text, i)
        _, vend = _decoder.raw_decode(text, vstart)
        spans.append((vstart, vend))
        i = _skip_ws(text, vend)
        if text[i:i + 1] == ",":
            i += 1
            continue
        return spans


def split_document(text: str, start: int, end: int, source_file: str, position: int | None,
                   path: str = "", depth: int = 0) -> Iterator[dict[str, Any]]:
    """Rows for one JSON value text[start:end] that parsed already: a resource, or a Bundle to explode."""
    base = {"source_file": source_file, "position": position, "entry_index": None, "entry_path": path or None,
            "bundle_type": None, "bundle_id": None, "full_url": None}
    if text[start:start + 1] != "{":
        yield {**base, "raw": text[start:end], "reason": "JSON value is not an object"}
        return
    spans, _ = _object_spans(text, start)
    rtype = _value(text, spans.get("resourceType"))
    if not isinstance(rtype, str) or not rtype:
        yield {**base, "raw": text[start:end], "reason": "resource has no resourceType"}
        return
    if rtype not in R4_RESOURCE_TYPES:
        yield {**base, "raw": text[start:end], "reason": f"resourceType {rtype[:100]!r} is not a FHIR R4 type"}
        return
    if rtype != "Bundle" or depth >= MAX_NESTING or "entry" not in spans:
        yield {**base, "raw": text[start:end], "reason": None}
        return
    btype, bid = _value(text, spans.get("type")), _value(text, spans.get("id"))
    estart, eend = spans["entry"]
    if text[estart:estart + 1] != "[":
        yield {**base, "raw": text[start:end], "reason": "Bundle.entry is not an array"}
        return
    for idx, (s, e) in enumerate(_array_spans(text, estart)):
        entry_path = f"{path}.{idx}" if path else str(idx)
        if depth == 0 and position is None:
            base["position"] = idx
        row = {**base, "entry_index": idx, "entry_path": entry_path, "bundle_type": btype, "bundle_id": bid}
        if text[s:s + 1] != "{":
            yield {**row, "raw": text[s:e], "reason": f"Bundle entry {entry_path} is not an object"}
            continue
        espans, _ = _object_spans(text, s)
        row["full_url"] = _value(text, espans.get("fullUrl"))
        if "resource" not in espans:
            yield {**row, "raw": text[s:e], "reason": f"Bundle entry {entry_path} has no resource"}
            continue
        rs, re_ = espans["resource"]
        for sub in split_document(text, rs, re_, source_file, base["position"], entry_path, depth + 1):
            if sub["entry_path"] == entry_path:  # the entry's own resource (not a nested bundle's entry)
                sub.update(entry_index=idx, bundle_type=btype, bundle_id=bid, full_url=row["full_url"])
            if sub["reason"] and not sub["reason"].startswith("Bundle entry"):
                sub["reason"] = f"Bundle entry {entry_path}: {sub['reason']}"
            yield sub


def _value(text: str, span: tuple[int, int] | None) -> Any:
    return None if span is None else json.loads(text[span[0]:span[1]])


def split_file(source_file: str, text: str) -> Iterator[dict[str, Any]]:
    """One file: a single JSON document (pretty-printed or not), or NDJSON (one document per line)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    start = _skip_ws(text, 0)
    whole_error: str | None = None
    try:
        _, end = _decoder.raw_decode(text, start)
        if _skip_ws(text, end) == len(text):
            try:
                rows = list(split_document(text, start, end, source_file, None))
                for row in rows:
                    row["position"] = 0 if row["position"] is None else row["position"]
                yield from rows
            except ValueError as exc:
                yield _bad(source_file, 0, text, f"invalid JSON: {exc}")
            return
    except ValueError as exc:
        whole_error = f"invalid JSON: {exc}"
    lines = text.split("\n")
    first = next((ln for ln in lines if ln.strip()), "")
    if whole_error is not None and not _parses(first):
        yield _bad(source_file, 0, text, whole_error)  # one broken document, not NDJSON
        return
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            s = _skip_ws(line, 0)
            _, e = _decoder.raw_decode(line, s)
            if _skip_ws(line, e) != len(line):
                raise ValueError(f"extra data after the JSON value at char {e}")
            yield from split_document(line, s, e, source_file, number)
        except ValueError as exc:
            yield _bad(source_file, number, line, f"invalid JSON on line {number}: {exc}")


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def _bad(source_file: str, position: int, raw: str, reason: str) -> dict[str, Any]:
    return {"source_file": source_file, "position": position, "entry_index": None, "entry_path": None,
            "bundle_type": None, "bundle_id": None, "full_url": None, "raw": raw, "reason": reason}


def _split_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        rows: list[dict[str, Any]] = []
        for source_file, content in zip(batch.column("source_file").to_pylist(), batch.column("content").to_pylist(),
                                        strict=True):
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError as exc:
                rows.append(_bad(source_file, 0, content.decode("iso-8859-1"), f"not UTF-8 (FHIR JSON must be): {exc}"))
                continue
            rows.extend(split_file(source_file, text))
            if len(rows) >= 50_000:
                yield pa.RecordBatch.from_pylist(rows, schema=_ARROW_SCHEMA)
                rows = []
        if rows:
            yield pa.RecordBatch.from_pylist(rows, schema=_ARROW_SCHEMA)


def split_resources(files: DataFrame, run_id: str) -> tuple[DataFrame, DataFrame]:
    """binaryFile rows (+source_file) -> (Bronze rows incl. duplicates within the batch, quarantine rows)."""
    split = files.select("source_file", "content").mapInArrow(_split_batches, SPLIT_SCHEMA)
    good = split.filter(F.col("reason").isNull())
    resources = good.select(
        F.get_json_object("raw", "$.resourceType").alias("resource_type"),
        F.get_json_object("raw", "$.id").alias("resource_id"),
        F.get_json_object("raw", "$.meta.lastUpdated").alias("last_updated"),
        "raw", "source_file", "bundle_type", "bundle_id", "full_url", "entry_index", "entry_path", "position",
        F.sha2("raw", 256).alias("content_hash"),
        F.lit(run_id).alias("ingest_run_id"),
        F.current_timestamp().alias("ingested_at"),
    )
    bad = split.filter(F.col("reason").isNotNull())
    quarantine = conform(bad.select(*quarantine_text(F.col("reason"), F.col("source_file"), F.col("position"),
                                                     F.col("raw"), run_id)))
    return resources, quarantine
