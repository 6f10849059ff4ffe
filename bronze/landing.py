"""The landing zone: copy-in, format detection from content, and the manifest of processed files.

Files and folders whose name starts with ``_`` or ``.`` are ignored anywhere in the landing tree (Hadoop
convention: generator manifests in ``_generator/``, in-flight ``.tmp`` files of the MLLP listener and of copy-in).
Hashing and sniffing run client-side while the file is streamed once; the engine reads only new files.

Landing cannot be tricked into reading what it was not given: symbolic links (to files or folders) and special
files (FIFOs, devices, sockets) are never followed or opened, anywhere; they, and files over their format's size
limit, become ``quarantine.landing`` rows with the reason. Two inputs with the same name get distinct landing
paths, and an import source that contains the lakehouse root is refused.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from lakehouse.config import Settings
from lakehouse.errors import ConfigError

HEAD_BYTES = 64 * 1024
CHUNK = 1 << 20
HL7_HEADERS = (b"MSH", b"FHS", b"BHS")
DICOM_MAGIC_OFFSET = 128
BOM = b"\xef\xbb\xbf"
MLLP_START = b"\x0b"
_VRS = frozenset(vr.value for vr in VR if len(vr.value) == 2)
_LONG_VRS = frozenset(vr.value for vr in EXPLICIT_VR_LENGTH_32)  # explicit VRs with a 32-bit length
MiB = 1 << 20
# the engine reads an HL7 v2 or FHIR file whole into one binary value (Arrow caps one value at 2 GiB); DICOM is
# read from its path, header only (a whole-slide image can be several GiB)
MAX_FILE_BYTES = {"hl7v2": 512 * MiB, "fhir": 1536 * MiB, "dicom": 8192 * MiB}
SYMLINK_REASON = "symbolic link: not followed (landing reads regular files only; copy the file itself)"
SPECIAL_REASON = "not a regular file (FIFO, device or socket): not opened"


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
    opened: bool = True  # False: a symbolic link or special file, never opened (its quarantine row has no bytes)


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


def _scan(folder: str, rel: str) -> Iterator[tuple[str, str, str | None, os.stat_result]]:
    """(path, path relative to the scanned folder, reason or None, lstat) of every entry under ``folder``: the
    files of a folder in name order, then its sub-folders in name order; one ``lstat`` per entry, nothing
    followed."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    folders = []
    for entry in entries:
        if entry.name.startswith(("_", ".")):
            continue
        info = entry.stat(follow_symlinks=False)
        name = f"{rel}{entry.name}"
        if stat.S_ISDIR(info.st_mode):
            folders.append((entry.path, f"{name}/"))
        elif stat.S_ISLNK(info.st_mode):
            yield entry.path, name, SYMLINK_REASON, info
        elif stat.S_ISREG(info.st_mode):
            yield entry.path, name, None, info
        else:
            yield entry.path, name, SPECIAL_REASON, info
    for path, name in folders:
        yield from _scan(path, name)


def scan(folder: Path, prefix: str = "") -> Iterator[tuple[str, str, str | None, os.stat_result]]:
    """:func:`_scan` of ``folder`` with relative names after ``prefix``; nothing when it is not a real folder."""
    if folder.is_dir() and not folder.is_symlink():
        yield from _scan(str(folder), prefix)


def walk_entries(folder: Path) -> Iterator[tuple[Path, str | None]]:
    """Every entry under folder, sorted, skipping ``_``/``.`` names at any depth: (path, None) for a regular file,
    (path, reason) for what is refused (a symbolic link to a file or a folder, a special file). Nothing is
    followed: a link is reported, never read."""
    for path, _, refused, _ in scan(folder):
        yield Path(path), refused


def walk(folder: Path) -> Iterator[Path]:
    """Regular files under folder, sorted, skipping ``_``/``.`` names at any depth (links are not followed)."""
    return (path for path, refused in walk_entries(folder) if refused is None)


# -- manifest ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestIndex:
    by_stat: set[tuple[str, int, int]]  # (path, size, mtime_ns) already processed
    by_hash: set[tuple[str, str]]  # (path, sha256) already processed
    hashes: set[str]


def read_manifest(settings: Settings, table_path: Path) -> ManifestIndex:
    if not (table_path / "_delta_log").is_dir():
        return ManifestIndex(set(), set(), set())
    table = DeltaTable(str(table_path)).to_pyarrow_table(columns=["path", "size", "mtime_ns", "sha256"])
    paths, sizes, mtimes, hashes = (table.column(c).to_pylist() for c in ("path", "size", "mtime_ns", "sha256"))
    return ManifestIndex(by_stat=set(zip(paths, sizes, mtimes, strict=True)),
                         by_hash=set(zip(paths, hashes, strict=True)), hashes=set(hashes))


def landing_rel(settings: Settings, path: Path) -> str:
    """``path`` relative to the lakehouse root, without resolving links (a link may point anywhere)."""
    return Path(os.path.abspath(path)).relative_to(settings.root_path).as_posix()


def refused_file(path: Path, rel: str, reason: str) -> LandingFile:
    """A landing entry that is never opened: its identity is its link text (or kind), not content read through it."""
    info = path.lstat()
    target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else f"mode {info.st_mode:o}"
    sha = hashlib.sha256(f"refused\0{rel}\0{target}".encode("utf-8", "surrogateescape")).hexdigest()
    return LandingFile(path=path, rel=rel, size=0, mtime_ns=info.st_mtime_ns, sha256=sha, format="unknown",
                       charset="utf-8", reason=reason, opened=False)


def landing_file(settings: Settings, path: Path, info: os.stat_result | None = None, rel: str | None = None
                 ) -> LandingFile:
    info = info or path.lstat()
    rel = rel or landing_rel(settings, path)
    sha, head, charset = sniff(path)
    detected = detect_format(head)
    limit = MAX_FILE_BYTES.get(detected.format)
    if limit is not None and info.st_size > limit:
        return LandingFile(path=path, rel=rel, size=info.st_size, mtime_ns=info.st_mtime_ns, sha256=sha,
                           format="unknown", charset=charset,
                           reason=f"{detected.format} file of {info.st_size // MiB} MiB is over the {limit // MiB} MiB "
                                  f"limit for {detected.format} files: split it (NDJSON by lines, HL7 batches by "
                                  "message) and land the parts")
    return LandingFile(path=path, rel=rel, size=info.st_size, mtime_ns=info.st_mtime_ns, sha256=sha,
                       format=detected.format, charset=charset, reason=detected.reason)


def pending_files(settings: Settings, manifest: ManifestIndex) -> tuple[list[LandingFile], int]:
    """Files in the landing zone that are new or changed since they were processed; and how many were skipped.
    Refused entries (links, special files) are pending once, like any new file, and quarantined with the reason."""
    pending: list[LandingFile] = []
    skipped = 0
    folder = settings.landing_dir
    # a landing zone of years holds hundreds of thousands of files: one lstat each, names built as strings
    prefix = f"{landing_rel(settings, folder)}/"
    for name, rel, refused, info in scan(folder, prefix):
        if (rel, 0 if refused else info.st_size, info.st_mtime_ns) in manifest.by_stat:
            skipped += 1
            continue
        path = Path(name)
        if refused is None:
            try:
                item = landing_file(settings, path, info, rel)
            except OSError as exc:  # unreadable (permissions) or gone: one quarantine row, the rest ingests
                item = refused_file(path, rel, f"cannot be read ({exc.strerror}): fix its permissions and touch it")
        else:
            item = refused_file(path, rel, refused)
        if (rel, item.sha256) in manifest.by_hash:  # touched, same content: nothing to do
            skipped += 1
            continue
        pending.append(item)
    return pending, skipped


def _unique(dest: Path, used: set[Path]) -> Path:
    """``dest``, or ``name~2.ext``, ``name~3.ext``... when another input of this import already has that name."""
    candidate, n = dest, 1
    while candidate in used or candidate.exists():
        n += 1
        candidate = dest.with_name(f"{dest.stem}~{n}{dest.suffix}")
    used.add(candidate)
    return candidate


@dataclass
class CopyResult:
    copied: list[Path]  # new landing paths
    skipped: int  # inputs whose content had landed already
    refused: list[LandingFile]  # links and special files among the inputs: quarantined, never opened


def _copy_file(path: Path, dest: Path) -> str:
    """Copy one regular file (never through a link) to ``dest`` via a dot-name, hashing it as it streams."""
    return _copy_stream(os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb"), dest)


def _copy_object(source: Any, dest: Path) -> str:
    """Copy one object-store file (a :class:`upath.UPath`) like :func:`_copy_file`."""
    return _copy_stream(source.open("rb"), dest)


def _copy_stream(stream: Any, dest: Path) -> str:
    """Write ``stream`` (closed here) to the dot-name ``.<name>.tmp`` beside ``dest``; returns its SHA-256."""
    digest = hashlib.sha256()
    tmp = dest.with_name(f".{dest.name}.tmp")
    with stream as src:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    return digest.hexdigest()


def _object_entries(source: Any) -> list[tuple[Any, Path, str | None]]:
    """The files of an object-store source (one object, or every object under a prefix) with their landing names,
    skipping ``_``/``.`` names at any depth like :func:`walk_entries`. Object stores have no links to refuse."""
    if source.is_file():
        return [(source, Path(source.name), None)]
    if not source.is_dir():
        raise FileNotFoundError(f"{source} does not exist")
    out = []
    for path in sorted((p for p in source.rglob("*") if p.is_file()), key=str):
        rel = Path(str(path)[len(str(source).rstrip("/")):].lstrip("/"))
        if not any(part.startswith(("_", ".")) for part in rel.parts):
            out.append((path, Path(source.name) / rel, None))
    return out


def copy_in(settings: Settings, sources: Iterable[Path], batch: str, known_hashes: set[str]) -> CopyResult:
    """Copy files/folders into ``landing/imports/<batch>/`` keeping relative names; skip content already landed.

    Each file is read once (hashed while copied) and written to a dot-name first, then renamed, so a concurrent
    ingestion never sees half a file. Inputs with the same relative name get distinct names (``x~2.hl7``); links
    and special files are refused (quarantined with the reason, never followed); a source that contains the
    lakehouse root is a configuration error. A source may also be an object-store location (a
    :class:`upath.UPath` from :func:`lakehouse.config.as_location`): its objects are downloaded the same way.
    """
    target_root = settings.landing_dir / "imports" / batch
    landing = settings.landing_dir.resolve()
    root = settings.root_path
    result = CopyResult([], 0, [])
    used: set[Path] = set()
    for given in sources:
        if not isinstance(given, Path):  # an object-store location
            remote = True
            entries = _object_entries(given)
        else:
            remote = False
            entries = _local_entries(given, root, landing)
        for path, rel, refused in entries:
            dest = target_root / rel
            if refused:
                dest = _unique(dest, used)
                result.refused.append(refused_file(path, landing_rel(settings, dest), refused))
                continue
            final = _unique(dest, used)
            sha = _copy_object(path, final) if remote else _copy_file(path, final)
            tmp = final.with_name(f".{final.name}.tmp")
            if sha in known_hashes:
                tmp.unlink()
                used.discard(final)
                result.skipped += 1
                continue
            os.replace(tmp, final)
            known_hashes.add(sha)
            result.copied.append(final)
    return result


def _local_entries(given: Path, root: Path, landing: Path) -> list[tuple[Path, Path, str | None]]:
    """The files of a local source with their landing names and, for what must not be followed, the reason."""
    given = Path(given).expanduser()
    if not given.exists() and not given.is_symlink():
        raise FileNotFoundError(f"{given} does not exist")
    if given.is_symlink():
        return [(given, Path(given.name), SYMLINK_REASON)]
    source = given.resolve()
    if source == root or source in root.parents:
        raise ConfigError(f"refusing to import {source}: it contains the lakehouse root {root}; "
                          "import the folder that holds the new files instead")
    if source == landing or landing in source.parents:
        return []  # already in the landing zone: the scan picks it up
    if source.is_file():
        return [(source, Path(source.name), None)]
    if source.is_dir():
        return [(p, Path(source.name) / p.relative_to(source), r) for p, r in walk_entries(source)]
    return [(source, Path(source.name), SPECIAL_REASON)]


def import_batch_name(run_id: str) -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{run_id[:8]}"
