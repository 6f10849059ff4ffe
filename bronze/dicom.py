"""DICOM: one Bronze row per instance, header as PS3.18 F.2 DICOM JSON without pixel data and bulk data.

Headers are read with pydicom inside a ``mapInArrow`` UDF that opens each file by its path: the engine ships
only paths, the pixel data never travels through Spark (an instance can be hundreds of MB), and the reads run
in parallel wherever the engine runs its Python workers (the landing zone must be a file system they can read,
as it is for the embedded engine). Large binary elements other than pixel data become BulkDataURIs that point
back into the landing file.

Files are taken as scanners and archives write them: Part 10 or a bare data set without preamble and file meta
(read with ``force=True``; the transfer syntax is then the encoding pydicom infers), little or big endian,
deflated, native or encapsulated pixel data, and objects without pixel data (SR, KO, PR, RT, SEG surfaces,
palettes, waveforms). One pass reads the header up to the pixel data; the pixel data element is then checked
in place, without reading or decoding it:

* native: the bytes the Image Pixel module needs (pydicom's ``get_expected_length``: packed bits for Bits
  Allocated 1, YBR_FULL_422 subsampling, frames, samples); odd-length padding and trailing bytes are allowed;
* encapsulated: a Basic Offset Table item, at least one fragment per frame, every fragment inside the file and
  the sequence delimiter after the last one (never compared with the native length).

A file that cannot go to Bronze is quarantined with a reason that starts with what is wrong: ``not DICOM``,
``unreadable DICOM header``, ``truncated DICOM`` (the file ends before an element or the pixel data it
declares), ``invalid DICOM`` (complete but not interpretable), ``not a DICOM instance`` (DICOMDIR, no SOP
Instance UID) or ``DICOM image without pixel data``.
"""

from __future__ import annotations

import base64
import json
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import pyarrow as pa
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.filereader import data_element_generator
from pydicom.pixels.utils import get_expected_length
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from bronze.schemas import QUARANTINE_RAW_LIMIT

BULK_THRESHOLD = 1024
PIXEL_DATA = 0x7FE00010
PIXEL_TAGS = {PIXEL_DATA: "Pixel Data", 0x7FE00008: "Float Pixel Data", 0x7FE00009: "Double Float Pixel Data"}
UNDEFINED_LENGTH = 0xFFFFFFFF
SEQUENCE_DELIMITER = 0xFFFEE0DD
# image storage classes whose names do not end in "Image Storage" but whose IOD requires pixel data
_PIXEL_IODS = {"Segmentation Storage", "Label Map Segmentation Storage", "Parametric Map Storage"}
_INFERRED_SYNTAX = {(True, True): ImplicitVRLittleEndian, (False, True): ExplicitVRLittleEndian,
                    (False, False): ExplicitVRBigEndian}
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


# a deflated data set is inflated in memory to be read (it has no file offsets): bounded before pydicom sees it,
# so that a small "deflate bomb" cannot take the engine's memory (zlib reaches ~1000:1; real DICOM ~2-20:1)
MAX_INFLATE_RATIO = 100
MIN_INFLATE_LIMIT = 64 << 20
INFLATE_STEP = 1 << 20


class Rejected(Exception):
    """A file that cannot go to Bronze; the message is the quarantine reason."""


def _check_inflated_size(fh: BinaryIO, size: int) -> None:
    """Stream-inflate a deflated data set (``fh`` just after the file meta) counting bytes, holding at most
    ``INFLATE_STEP`` of output at a time; :class:`Rejected` beyond the limit."""
    limit = max(MIN_INFLATE_LIMIT, size * MAX_INFLATE_RATIO)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while chunk := fh.read(INFLATE_STEP):
        data = chunk
        while data:
            total += len(inflater.decompress(data, INFLATE_STEP))
            if total > limit:
                raise Rejected(f"deflated DICOM inflates to more than {limit >> 20} MiB ({MAX_INFLATE_RATIO}x its "
                               f"{size:,} bytes, at least {MIN_INFLATE_LIMIT >> 20} MiB allowed): a decompression "
                               "bomb or a corrupt file")
            data = inflater.unconsumed_tail
        if inflater.eof:
            return


def _bound_deflated(fh: BinaryIO, size: int) -> None:
    """When the file meta names the Deflated Explicit VR Little Endian syntax, check the inflated size; ``fh`` is
    back at the start afterwards."""
    try:
        pydicom.filereader.read_preamble(fh, True)
        meta = pydicom.filereader._read_file_meta_info(fh)
        syntax = meta.get("TransferSyntaxUID")
        if syntax is not None and UID(str(syntax)).is_deflated:
            _check_inflated_size(fh, size)
    except Rejected:
        raise
    except Exception:  # noqa: BLE001 - no readable file meta: pydicom's own read classifies the file
        pass
    finally:
        fh.seek(0)


@dataclass(frozen=True)
class PixelElement:
    tag: int
    length: int  # as declared; UNDEFINED_LENGTH for encapsulated pixel data
    present: int  # bytes of a defined-length value that are in the file
    offset: int | None  # file offset of the value (None in a deflated data set)


@dataclass(frozen=True)
class Header:
    ds: Dataset
    transfer_syntax: UID
    pixels: PixelElement | None


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _int(value: Any) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _name(tag: int) -> str:
    keyword = pydicom.datadict.keyword_for_tag(tag)
    return f"{Tag(tag)}{' ' + keyword if keyword else ''}"


def _sop_class(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
    return UID(str(uid)) if uid else None


def _syntax(ds: Dataset) -> UID:
    """The transfer syntax of the file meta, else the encoding pydicom inferred for a bare data set."""
    meta = getattr(ds, "file_meta", None)
    declared = meta.get("TransferSyntaxUID") if meta else None
    return UID(str(declared)) if declared else _INFERRED_SYNTAX.get(ds.original_encoding, ImplicitVRLittleEndian)


def _is_known(syntax: UID) -> bool:
    try:
        return bool(syntax.is_transfer_syntax)
    except ValueError:
        return False


def _next_element(fh: BinaryIO, implicit: bool, little: bool) -> tuple[int, int, int] | None:
    """(tag, length, value offset) of the element at the file position; pydicom parses its header, the value is
    neither read nor skipped (``stop_when`` sees the header and the generator rewinds)."""
    seen: list[tuple[int, int, int]] = []

    def stop(tag: Any, _vr: Any, length: int) -> bool:
        seen.append((int(tag), length, fh.tell()))
        return True

    for _ in data_element_generator(fh, implicit, little, stop_when=stop):
        pass
    return seen[0] if seen else None


def _read_failure(path: str, exc: Exception) -> Rejected:
    """Why pydicom could not read the header of a file that was detected as DICOM."""
    if isinstance(exc, zlib.error):
        kind = "truncated DICOM" if "truncated" in str(exc) else "unreadable DICOM header"
        return Rejected(f"{kind}: the deflated data set cannot be inflated ({exc})")
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:  # noqa: BLE001 - no valid file meta either
        meta = None
    if meta is not None and not meta.get("TransferSyntaxUID"):
        return Rejected(f"not DICOM: a 'DICM' marker without valid file meta information "
                        f"({exc.__class__.__name__}: {exc})")
    if isinstance(exc, EOFError | struct.error) or "No tag to read" in str(exc):  # a short read at the end
        return Rejected(f"truncated DICOM: the file ends inside a data element ({exc.__class__.__name__}: {exc})")
    return Rejected(f"unreadable DICOM header: {exc.__class__.__name__}: {exc}")


def _check_not_cut(ds: Dataset, fh: BinaryIO | None, end: int) -> None:
    """The header elements are complete: every value has its declared length; a trailing undefined-length
    sequence ends with its delimiter; no partial element header is left before ``end`` (file positions only
    when ``fh`` is given, i.e. not in a deflated data set)."""
    meta = getattr(ds, "file_meta", None) or Dataset()
    tags = list(ds.keys())
    for tag, raw in [*((t, meta.get_item(t)) for t in meta.keys()), *((t, ds.get_item(t)) for t in tags)]:
        if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes) and raw.length != UNDEFINED_LENGTH \
                and len(raw.value) < raw.length:
            raise Rejected(f"truncated DICOM: element {_name(tag)} declares {raw.length} bytes, the file ends "
                           f"after {len(raw.value)}")
    if not tags:
        raise Rejected("truncated DICOM: no data set after the file meta information" if meta
                       else "truncated DICOM: no data set")
    if fh is None:
        return
    last = ds.get_item(tags[-1])
    little = ds.original_encoding[1]
    if isinstance(last, RawDataElement):
        if last.length == UNDEFINED_LENGTH or last.value_tell is None:
            return
        fh.seek(last.value_tell + last.length)
        rest = fh.read(max(end - fh.tell(), 0))
        if rest.strip(b"\x00"):  # bytes pydicom could not read as an element: a cut element header
            raise Rejected(f"truncated DICOM: the file ends inside the element header after {_name(tags[-1])} "
                           f"({len(rest)} bytes left)")
    elif getattr(last, "is_undefined_length", False) and last.VR == "SQ" and end >= 8:
        fh.seek(end - 8)
        group, element, length = struct.unpack("<HHL" if little else ">HHL", fh.read(8))
        if (group << 16 | element, length) != (SEQUENCE_DELIMITER, 0):
            raise Rejected(f"truncated DICOM: the file ends inside sequence {_name(tags[-1])} (no sequence "
                           "delimiter)")


def _trailing_reason(fh: BinaryIO, start: int, size: int, implicit: bool, little: bool) -> str | None:
    """Elements after the pixel data (values skipped, not read) must end inside the file; a cut Data Set
    Trailing Padding (FFFC,FFFC) loses nothing and is accepted."""
    fh.seek(start)
    end = start
    for raw in data_element_generator(fh, implicit, little, defer_size=0):
        if getattr(raw, "length", UNDEFINED_LENGTH) == UNDEFINED_LENGTH or raw.value_tell is None:
            return None  # an undefined-length value was parsed to its delimiter by pydicom
        end = raw.value_tell + raw.length
        if raw.tag == 0xFFFCFFFC:
            return None
        if end > size:
            return (f"truncated DICOM: element {_name(raw.tag)} after the pixel data needs {end} bytes, the file "
                    f"has {size}")
    fh.seek(end)
    if fh.read().strip(b"\x00"):
        return "truncated DICOM: the file ends inside an element header after the pixel data"
    return None


def _pixel_element(fh: BinaryIO, ds: Dataset, size: int) -> PixelElement | None:
    implicit, little = ds.original_encoding
    start = fh.tell()
    found = _next_element(fh, implicit, little) if start < size else None
    if found is None or found[0] not in PIXEL_TAGS:
        _check_not_cut(ds, fh, size)
        return None
    _check_not_cut(ds, fh, start)
    tag, length, offset = found
    present = 0 if length == UNDEFINED_LENGTH else max(0, min(length, size - offset))
    return PixelElement(tag, length, present, offset)


def _deflated_pixel_element(path: str, ds: Dataset) -> PixelElement | None:
    """A deflated data set is inflated in memory by pydicom anyway (it has no file offsets): read it whole."""
    _check_not_cut(ds, None, 0)
    full = pydicom.dcmread(path, force=True)
    for tag in PIXEL_TAGS:
        raw = full.get_item(tag) if tag in full else None
        if raw is not None:
            length = getattr(raw, "length", UNDEFINED_LENGTH)
            value = raw.value if isinstance(raw.value, bytes) else b""
            return PixelElement(tag, length, len(value) if length != UNDEFINED_LENGTH else 0, None)
    return None


def read_header(path: str, size: int) -> Header:
    """The header of a DICOM file and where its pixel data are; raises :class:`Rejected` with the reason."""
    with open(path, "rb") as fh:
        _bound_deflated(fh, size)
        try:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
        except Exception as exc:  # noqa: BLE001 - classified by _read_failure
            raise _read_failure(path, exc) from exc
        meta = getattr(ds, "file_meta", None)
        if not meta and "SOPInstanceUID" not in ds and "SOPClassUID" not in ds:
            where = "after the 'DICM' marker" if ds.preamble is not None else "in a file without preamble"
            raise Rejected(f"not DICOM: no file meta information (0002,xxxx) and no SOP Class/Instance UID {where}")
        syntax = _syntax(ds)
        pixels = _deflated_pixel_element(path, ds) if _is_known(syntax) and syntax.is_deflated \
            else _pixel_element(fh, ds, size)
        return Header(ds, syntax, pixels)


def _image_description(ds: Dataset, tag: int) -> tuple[int, str]:
    """(expected bytes of native pixel data, how they were counted) from the Image Pixel module."""
    values = {k: _int(ds.get(k)) for k in ("Rows", "Columns", "BitsAllocated")}
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise Rejected(f"invalid DICOM: {PIXEL_TAGS[tag]} without a valid {', '.join(missing)} (Image Pixel module)")
    rows, columns, bits = values["Rows"], values["Columns"], values["BitsAllocated"]
    samples = _int(ds.get("SamplesPerPixel")) or 1
    frames = _frame_count(ds)
    photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2")
    if bits == 1 or bits % 8 == 0:
        probe = Dataset()
        probe.Rows, probe.Columns, probe.BitsAllocated, probe.SamplesPerPixel = rows, columns, bits, samples
        probe.NumberOfFrames, probe.PhotometricInterpretation = frames, photometric
        expected = get_expected_length(probe, unit="bytes")
    else:  # ACR-NEMA packed (e.g. 12 bits allocated): bits are packed like Bits Allocated 1
        expected = -(-rows * columns * samples * frames * bits // 8)
    return expected, f"{frames} frame(s) of {rows}x{columns}x{samples} at {bits} bits allocated ({photometric})"


def _frame_count(ds: Dataset) -> int:
    value = ds.get("NumberOfFrames")
    frames = _int(value)
    if value not in (None, "") and (frames is None or frames < 0):
        raise Rejected(f"invalid DICOM: Number of Frames (0028,0008) is {str(value)!r}, not a frame count")
    return frames or 1  # absent or 0: one frame, as pydicom reads it


def _encapsulated_end(fh: BinaryIO, pixels: PixelElement, size: int, frames: int) -> int:
    """Where encapsulated pixel data end (after their sequence delimiter); raises :class:`Rejected` unless a Basic
    Offset Table item, at least one fragment per frame, and the delimiter after the last fragment are in the
    file. Items are walked by their lengths (pydicom.encaps), fragments are not read."""
    assert pixels.offset is not None
    fh.seek(pixels.offset)
    try:
        offsets = parse_basic_offsets(fh)
    except (ValueError, struct.error) as exc:
        if fh.tell() >= size:
            raise Rejected("truncated DICOM: the file ends inside the Basic Offset Table of the encapsulated pixel "
                           "data") from exc
        raise Rejected(f"invalid DICOM: encapsulated pixel data do not start with a Basic Offset Table item "
                       f"({exc})") from exc
    first = fh.tell()
    try:
        count, positions = parse_fragments(fh)
    except ValueError as exc:
        if "end of the data" in str(exc):
            raise Rejected("truncated DICOM: the file ends inside an item header of the encapsulated pixel "
                           "data") from exc
        raise Rejected(f"invalid DICOM: encapsulated pixel data: {exc}") from exc
    if count == 0:
        if first + 4 > size:
            raise Rejected("truncated DICOM: the file ends after the Basic Offset Table, before any fragment")
        raise Rejected("invalid DICOM: encapsulated pixel data without any fragment")
    fh.seek(positions[-1] + 4)
    end = positions[-1] + 8 + struct.unpack("<L", fh.read(4))[0]
    if end > size:
        raise Rejected(f"truncated DICOM: fragment {count} of the encapsulated pixel data needs {end} bytes, the "
                       f"file has {size}")
    fh.seek(end)
    delimiter = fh.read(8)
    if len(delimiter) < 8 or struct.unpack("<L", delimiter[:4])[0] != 0xE0DDFFFE:
        raise Rejected(f"truncated DICOM: the file ends after fragment {count}, without the sequence delimiter")
    if offsets and len(offsets) != frames:
        raise Rejected(f"invalid DICOM: the Basic Offset Table has {len(offsets)} offsets for {frames} frame(s)")
    if count < frames:
        raise Rejected(f"truncated DICOM: encapsulated pixel data with {count} fragment(s) for {frames} frame(s)")
    return end + 8


def pixel_reason(path: str, header: Header, size: int) -> str | None:
    """Why the pixel data (or their absence) keep the instance out of Bronze, or None."""
    ds, syntax, pixels = header.ds, header.transfer_syntax, header.pixels
    if pixels is None:
        sop = _sop_class(ds)
        name = sop.name if sop else ""
        if "PixelDataProviderURL" in ds:  # JPIP Referenced transfer syntaxes: the pixels are on a server
            return None
        if "Rows" in ds or "Image Storage" in name or name in _PIXEL_IODS:
            return (f"DICOM image without pixel data: {name or 'an instance with Rows'} has no Pixel Data "
                    "(7FE0,0010) (written without it, or the file was cut before it)")
        return None
    what = PIXEL_TAGS[pixels.tag]
    encapsulated = pixels.length == UNDEFINED_LENGTH
    if _is_known(syntax) and syntax.is_encapsulated != encapsulated:
        coding = "encapsulated" if syntax.is_encapsulated else "native"
        found = "undefined length (encapsulated)" if encapsulated else f"a defined length of {pixels.length} bytes"
        return f"invalid DICOM: {what} has {found} but transfer syntax {syntax} ({syntax.name}) is {coding}"
    if encapsulated and pixels.offset is None:
        return f"invalid DICOM: encapsulated {what} in a deflated data set"
    if not encapsulated:
        if pixels.present < pixels.length:
            return f"truncated DICOM: {what} declares {pixels.length} bytes, the file ends after {pixels.present}"
        expected, counted = _image_description(ds, pixels.tag)
        if pixels.length < expected:
            return f"truncated DICOM: {what} has {pixels.length} bytes, {expected} expected for {counted}"
        if pixels.offset is None:  # deflated: pydicom read the elements after the pixel data already
            return None
    with open(path, "rb") as fh:
        end = _encapsulated_end(fh, pixels, size, _frame_count(ds)) if encapsulated \
            else cast(int, pixels.offset) + pixels.length
        return _trailing_reason(fh, end, size, *ds.original_encoding)


def _convert(ds: Dataset) -> None:
    """Convert every element from its raw bytes now, so that a value pydicom cannot read is named."""
    for tag in list(ds.keys()):
        try:
            ds[tag]
        except Exception as exc:  # noqa: BLE001 - any conversion error rejects the file, with the element
            raise Rejected(f"unreadable DICOM header: element {_name(tag)}: {exc.__class__.__name__}: {exc}") from exc


def _json_header(ds: Dataset, source_file: str) -> str:
    def bulk_uri(elem: Any) -> str:
        return f"{source_file}#tag={elem.tag:08X}"

    try:
        header = ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=bulk_uri)
    except Exception as exc:  # noqa: BLE001
        raise Rejected(f"unreadable DICOM header: no DICOM JSON ({exc.__class__.__name__}: {exc})") from exc
    return json.dumps(header, separators=(",", ":"), ensure_ascii=False)


def inspect(path: str, source_file: str, size: int) -> tuple[Header, str]:
    """(header, DICOM JSON) of an instance that goes to Bronze; raises :class:`Rejected` otherwise."""
    header = read_header(path, size)
    ds = header.ds
    _convert(ds)
    sop = _sop_class(ds)
    if sop == MediaStorageDirectoryStorage:
        raise Rejected("not a DICOM instance: a DICOMDIR (Media Storage Directory), the index of a DICOM "
                       "medium; the instances it lists are ingested from their own files")
    if not _str(ds.get("SOPInstanceUID")):
        raise Rejected("not a DICOM instance: no SOP Instance UID (0008,0018) in the data set")
    reason = pixel_reason(path, header, size)
    if reason:
        raise Rejected(reason)
    return header, _json_header(ds, source_file)


def read_instance(path: str, source_file: str, size: int, content_hash: str) -> dict[str, Any]:
    row: dict[str, Any] = {"source_file": source_file, "file_size": size, "content_hash": content_hash,
                           "reason": None, "raw": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header, header_json = inspect(path, source_file, size)
    except Exception as exc:  # noqa: BLE001 - any reader error makes the file a quarantine item
        reason = str(exc) if isinstance(exc, Rejected) else f"unreadable DICOM header: {exc.__class__.__name__}: {exc}"
        with open(path, "rb") as fh:
            head = fh.read(QUARANTINE_RAW_LIMIT)
        return {**row, "reason": reason[:1000], "raw": base64.b64encode(head).decode()}
    ds = header.ds
    return {
        **row,
        "sop_instance_uid": _str(ds.get("SOPInstanceUID")),
        "sop_class_uid": _str(_sop_class(ds)),
        "series_instance_uid": _str(ds.get("SeriesInstanceUID")),
        "study_instance_uid": _str(ds.get("StudyInstanceUID")),
        "modality": _str(ds.get("Modality")),
        "patient_id": _str(ds.get("PatientID")),
        "study_date": _str(ds.get("StudyDate")),
        "transfer_syntax_uid": str(header.transfer_syntax),
        "rows": _int(ds.get("Rows")),
        "columns": _int(ds.get("Columns")),
        "number_of_frames": _int(ds.get("NumberOfFrames")) or (1 if "Rows" in ds else None),
        "header_json": header_json,
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
