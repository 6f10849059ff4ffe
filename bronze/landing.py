"""The landing zone: copy-in, format detection from content, and the manifest of processed files.

Files and folders whose name starts with ``_`` or ``.`` are ignored anywhere in the landing tree (Hadoop
convention: generator manifests in ``_generator/``, in-flight ``.tmp`` files of the MLLP listener and of copy-in).
Hashing and sniffing run client-side while the file is streamed once; the engine reads only new files.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deltalake import DeltaTable
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from lakehouse.config import Settings

HEAD_BYTES = 64 * 1024
CHUNK = 1 << 20
HL7_HEADERS = (b"MSH", b"FHS", b"BHS")
DICOM_MAGIC_OFFSET = 128
BOM = b"\xef\xbb\xbf"
MLLP_START = b"\x0b"
_VRS = frozenset(vr.value for vr in VR if len(vr.value) == 2)
_LONG_VRS = frozenset(vr.value for vr in EXPLICIT_VR_LENGTH_32)  # explicit VRs with a 32-bit length


@dataclass(frozen=True)
class Detected:
    format: str  # hl7v2 | fhir | dicom | unknown
    reason: str | None = None  # why the file is unknown


@dataclass(frozen=True)
class LandingFile:
    path: Path  # absolute
    rel: str  # relative to the lakehouse root, e.g. landing/imports/.../x.hl7 (the source_file of every row)
    size: int
    mtime_ns: int
    sha256: str
    format: str
    charset: str  # utf-8 or iso-8859-1 (lossless byte -> char for anything that is not valid UTF-8)
    reason: str | None = None


def _parses_as_dicom(head: bytes, byteorder: str, explicit: bool) -> bool:
    """Whether ``head`` starts with two data elements in one encoding (ascending tags, known explicit VRs); the
    first must be a short file meta (0002) or identifying (0008) element, the second may run past ``head``."""
    pos, previous = 0, -1
    for count in range(2):
        if pos + 8 > len(head):
            return count > 0
        group, element = int.from_bytes(head[pos:pos + 2], byteorder), int.from_bytes(head[pos + 2:pos + 4], byteorder)
        tag = group << 16 | element
        if tag <= previous or (count == 0 and (group not in (0x0002, 0x0008) or element > 0x0020)):
            return False
        if not explicit:
            header, length = 8, int.from_bytes(head[pos + 4:pos + 8], byteorder)
        elif (vr := head[pos + 4:pos + 6].decode("latin-1")) not in _VRS:
            return False
        elif vr in _LONG_VRS:
            header, length = 12, int.from_bytes(head[pos + 8:pos + 12], byteorder)
        else:
            header, length = 8, int.from_bytes(head[pos + 6:pos + 8], byteorder)
        if count == 0 and (length >= 1024 or pos + header + length > len(head)):
            return False
        if length == 0xFFFFFFFF or pos + header + length >= len(head):  # undefined length, or the head ends
            return True
        pos, previous = pos + header + length, tag
    return True


def _looks_like_dicom_without_preamble(head: bytes) -> bool:
    """A bare DICOM data set or file meta group (no 128-byte preamble, no ``DICM``), as older archives and some
    scanners write it: it parses in implicit VR little endian, explicit VR little endian or explicit VR big
    endian (pydicom reads such files with ``force=True``)."""
    return len(head) >= 12 and any(_parses_as_dicom(head, order, explicit)
                                   for order, explicit in (("little", True), ("big", True), ("little", False)))


def detect_format(head: bytes) -> Detected:
    """What a file is, from its first bytes (never from its name).

    DICOM: ``DICM`` at offset 128 (Part 10), or a raw data set starting with a group 0002/0008 tag.
    HL7 v2: MSH/FHS/BHS after an optional BOM, MLLP start byte and whitespace.
    FHIR: a JSON object (or NDJSON of objects) with ``"resourceType"`` within the first 64 KiB.
    """
    if not head:
        return Detected("unknown", "empty file")
    if head[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return Detected("dicom")
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        return Detected("unknown", "UTF-16/UTF-32 text (byte order mark): HL7 v2 and FHIR are read as UTF-8 or "
                                   "ISO-8859-1; re-encode the file as UTF-8")
    text = head[len(BOM):] if head.startswith(BOM) else head
    text = text.lstrip(b" \t\r\n" + MLLP_START)
    if text[:3] in HL7_HEADERS and len(text) > 3 and not text[3:4].isalnum() and text[3:4] not in b"\r\n":
        return Detected("hl7v2")
    if text.startswith(b"{"):
        if b'"resourceType"' in head:
            return Detected("fhir")
        return Detected("unknown", "JSON without \"resourceType\" in the first 64 KiB: not a FHIR resource")
    if _looks_like_dicom_without_preamble(head):
        return Detected("dicom")
    if text[:3] in (b"PID", b"EVN", b"PV1", b"OBR", b"OBX"):
        return Detected("unknown", "HL7 v2 segments without an MSH header")
    if b"\x00" in head[:1024]:
        return Detected("unknown", "binary content that is not DICOM (no DICM marker at offset 128)")
    return Detected("unknown", "not HL7 v2 (no MSH/FHS/BHS), FHIR JSON (no resourceType) or DICOM")


def sniff(path: Path) -> tuple[str, bytes, str]:
    """Stream a file once: sha256, the first bytes, and whether it is valid UTF-8."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    head = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[:HEAD_BYTES - len(head)]
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    return digest.hexdigest(), head, "utf-8" if utf8 else "iso-8859-1"


def walk(folder: Path) -> Iterator[Path]:
    """Regular files under folder, sorted, skipping ``_``/``.`` names at any depth."""
    if not folder.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        for name in sorted(filenames):
            if not name.startswith(("_", ".")):
                path = Path(dirpath) / name
                if path.is_file():
                    yield path


# -- manifest ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestIndex:
    by_stat: set[tuple[str, int, int]]  # (path, size, mtime_ns) already processed
    by_hash: set[tuple[str, str]]  # (path, sha256) already processed
    hashes: set[str]


def read_manifest(settings: Settings, table_path: Path) -> ManifestIndex:
    if not (table_path / "_delta_log").is_dir():
        return ManifestIndex(set(), set(), set())
    rows = DeltaTable(str(table_path)).to_pyarrow_table(columns=["path", "size", "mtime_ns", "sha256"]).to_pylist()
    return ManifestIndex(
        by_stat={(r["path"], r["size"], r["mtime_ns"]) for r in rows},
        by_hash={(r["path"], r["sha256"]) for r in rows},
        hashes={r["sha256"] for r in rows},
    )


def landing_file(settings: Settings, path: Path, stat: os.stat_result | None = None) -> LandingFile:
    stat = stat or path.stat()
    sha, head, charset = sniff(path)
    detected = detect_format(head)
    rel = path.resolve().relative_to(settings.root_path).as_posix()
    return LandingFile(path=path, rel=rel, size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=sha,
                       format=detected.format, charset=charset, reason=detected.reason)


def pending_files(settings: Settings, manifest: ManifestIndex) -> tuple[list[LandingFile], int]:
    """Files in the landing zone that are new or changed since they were processed; and how many were skipped."""
    pending: list[LandingFile] = []
    skipped = 0
    for path in walk(settings.landing_dir):
        rel = path.resolve().relative_to(settings.root_path).as_posix()
        stat = path.stat()
        if (rel, stat.st_size, stat.st_mtime_ns) in manifest.by_stat:
            skipped += 1
            continue
        item = landing_file(settings, path, stat)
        if (rel, item.sha256) in manifest.by_hash:  # touched, same content: nothing to do
            skipped += 1
            continue
        pending.append(item)
    return pending, skipped


def copy_in(settings: Settings, sources: Iterable[Path], batch: str, known_hashes: set[str]) -> tuple[list[Path], int]:
    """Copy files/folders into ``landing/imports/<batch>/`` keeping relative names; skip content already landed.

    Each file is written to a dot-name first and renamed, so a concurrent ingestion never sees half a file.
    Returns the new landing paths and how many inputs were skipped as already present.
    """
    target_root = settings.landing_dir / "imports" / batch
    landing = settings.landing_dir.resolve()
    copied: list[Path] = []
    skipped = 0
    for source in sources:
        source = Path(source).expanduser().resolve()
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist")
        if source == landing or landing in source.parents:
            continue  # already in the landing zone: the scan picks it up
        if source.is_file():
            files = [(source, Path(source.name))]
        else:
            files = [(p, Path(source.name) / p.relative_to(source)) for p in walk(source)]
        for path, rel in files:
            sha = sniff(path)[0]
            if sha in known_hashes:
                skipped += 1
                continue
            dest = target_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
            known_hashes.add(sha)
            copied.append(dest)
    return copied, skipped


def import_batch_name(run_id: str) -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{run_id[:8]}"
