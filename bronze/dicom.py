"""DICOM: one Bronze row per instance, header as PS3.18 F.2 DICOM JSON without pixel data and bulk data.

Headers are read with pydicom inside a ``mapInArrow`` UDF that opens each file by its path: the engine ships
only paths, the pixel data never travels through Spark (an instance can be hundreds of MB), and the reads run
in parallel wherever the engine runs its Python workers (the landing zone must be a file system they can read,
as it is for the embedded engine). Large binary elements other than pixel data become BulkDataURIs that point
back into the landing file. Truncation is detected by a second pass with deferred values: every element must
end inside the file, and an image (Rows present) must have its pixel data.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pydicom
from pydicom.uid import UID
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from bronze.schemas import QUARANTINE_RAW_LIMIT

BULK_THRESHOLD = 1024
PIXEL_DATA = 0x7FE00010
_FIELDS = [
    ("sop_instance_uid", pa.string()), ("sop_class_uid", pa.string()), ("series_instance_uid", pa.string()),
    ("study_instance_uid", pa.string()), ("modality", pa.string()), ("patient_id", pa.string()),
    ("study_date", pa.string()), ("transfer_syntax_uid", pa.string()), ("rows", pa.int32()), ("columns", pa.int32()),
    ("number_of_frames", pa.int32()), ("header_json", pa.string()), ("source_file", pa.string()),
    ("file_size", pa.int64()), ("content_hash", pa.string()), ("reason", pa.string()), ("raw", pa.string()),
]
_ARROW_SCHEMA = pa.schema(_FIELDS)
READ_SCHEMA = ", ".join(f"{name} {'int' if t == pa.int32() else 'bigint' if t == pa.int64() else 'string'}"
                        for name, t in _FIELDS)


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _int(value: Any) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def truncation(path: str, size: int) -> str | None:
    """Why the file is incomplete, or None. Reads structure only (values over 1 KiB are deferred)."""
    ds = pydicom.dcmread(path, defer_size=1024, force=True)
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if tell is not None and length is not None and length != 0xFFFFFFFF and tell + length > size:
            return f"truncated DICOM: element {tag} needs {tell + length} bytes, the file has {size}"
    if PIXEL_DATA not in ds and ("Rows" in ds or "Image Storage" in _sop_class_name(ds)):
        return "truncated DICOM: an image instance without pixel data (7FE0,0010)"
    if PIXEL_DATA in ds and "Rows" in ds:
        return _pixel_truncation(ds, path, size)
    return None


def _sop_class_name(ds: Any) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
    return UID(str(uid)).name if uid else ""


def _pixel_truncation(ds: Any, path: str, size: int) -> str | None:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta else None
    if syntax is not None and syntax.is_compressed:  # encapsulated: must end with a sequence delimiter
        with open(path, "rb") as fh:
            fh.seek(max(size - 4096, 0))
            tail = fh.read().rstrip(b"\x00")
        if b"\xfe\xff\xdd\xe0" not in tail[-16:]:
            return "truncated DICOM: encapsulated pixel data has no sequence delimiter at the end of the file"
        return None
    frames = _int(ds.get("NumberOfFrames")) or 1
    expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
                * ((int(ds.get("BitsAllocated", 8)) + 7) // 8) * frames)
    actual = len(ds.PixelData)
    if actual < expected:
        return f"truncated DICOM: pixel data has {actual} bytes, {expected} expected"
    return None


def read_instance(path: str, source_file: str, size: int, content_hash: str) -> dict[str, Any]:
    row: dict[str, Any] = {"source_file": source_file, "file_size": size, "content_hash": content_hash,
                           "reason": None, "raw": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if ds.preamble is None or not ds.file_meta.get("TransferSyntaxUID"):
                raise ValueError("no DICOM Part 10 preamble/DICM/file meta: transfer syntax unknown, not accepted")
            if not _str(ds.get("SOPInstanceUID")):
                raise ValueError("no SOP Instance UID (0008,0018): not a readable DICOM instance")
            reason = truncation(path, size)
            if reason:
                raise ValueError(reason)

            def bulk_uri(elem: Any) -> str:
                return f"{source_file}#tag={elem.tag:08X}"

            header = ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=bulk_uri)
    except Exception as exc:  # noqa: BLE001 - any reader error makes the file a quarantine item
        with open(path, "rb") as fh:
            head = fh.read(QUARANTINE_RAW_LIMIT)
        return {**row, "reason": f"{exc.__class__.__name__}: {exc}"[:1000], "raw": base64.b64encode(head).decode()}
    meta = getattr(ds, "file_meta", None)
    return {
        **row,
        "sop_instance_uid": _str(ds.get("SOPInstanceUID")),
        "sop_class_uid": _str(ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)),
        "series_instance_uid": _str(ds.get("SeriesInstanceUID")),
        "study_instance_uid": _str(ds.get("StudyInstanceUID")),
        "modality": _str(ds.get("Modality")),
        "patient_id": _str(ds.get("PatientID")),
        "study_date": _str(ds.get("StudyDate")),
        "transfer_syntax_uid": _str(meta.get("TransferSyntaxUID")) if meta else None,
        "rows": _int(ds.get("Rows")),
        "columns": _int(ds.get("Columns")),
        "number_of_frames": _int(ds.get("NumberOfFrames")) or (1 if "Rows" in ds else None),
        "header_json": json.dumps(header, separators=(",", ":"), ensure_ascii=False),
    }


def _read_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        rows = [read_instance(p, s, n, h) for p, s, n, h in zip(
            batch.column("abs_path").to_pylist(), batch.column("source_file").to_pylist(),
            batch.column("file_size").to_pylist(), batch.column("content_hash").to_pylist(), strict=True)]
        yield pa.RecordBatch.from_pylist(rows, schema=_ARROW_SCHEMA)


def read_headers(files: DataFrame, run_id: str) -> DataFrame:
    """(abs_path, source_file, file_size, content_hash) rows -> Bronze columns plus ``reason`` and ``raw``."""
    read = files.select("abs_path", "source_file", "file_size", "content_hash").mapInArrow(_read_batches, READ_SCHEMA)
    return read.select("*", F.lit(run_id).alias("ingest_run_id"), F.current_timestamp().alias("ingested_at"))


def good_and_bad(items: DataFrame, run_id: str) -> tuple[DataFrame, DataFrame]:
    """Rows of :func:`read_headers` -> (Bronze rows, quarantine rows)."""
    good = items.filter(F.col("reason").isNull()).drop("reason", "raw")
    bad = items.filter(F.col("reason").isNotNull()).select(
        "reason", "source_file", F.lit(0).cast("bigint").alias("position"), "raw",
        F.lit("base64").alias("raw_encoding"), F.col("file_size").alias("raw_size"),
        (F.col("file_size") > QUARANTINE_RAW_LIMIT).alias("raw_truncated"), "content_hash",
        F.lit(run_id).alias("ingest_run_id"), F.current_timestamp().alias("quarantined_at"))
    return good, bad


def read_instances(files: DataFrame, run_id: str) -> tuple[DataFrame, DataFrame]:
    """(abs_path, source_file, file_size, content_hash) rows -> (Bronze rows, quarantine rows)."""
    return good_and_bad(read_headers(files, run_id), run_id)
