"""Erase one patient from the whole lakehouse (``lakehouse erase --patient MRN``).

Order, so that a crash part-way leaves nothing that a re-run cannot finish:

1. find the patient's records in Bronze (HL7 v2 with the MRN in PID-3 or MRG-1, the FHIR Patient resources that
   carry it as an identifier and every resource that references them, DICOM with the PatientID) and in the
   Bronze quarantine (raw content holding the MRN or a FHIR id);
2. landing: remove those records from the files that hold them (an HL7 batch keeps its other messages, a Bundle
   or NDJSON file its other resources), delete files left empty, and drop their manifest rows;
3. delete their rows from Bronze and quarantine, and every row of a restricted ``_system`` table that names them;
4. rebuild Silver and Gold from what is left (Silver is a function of Bronze, Gold of Silver), delete what
   append-only Silver quarantine and other tables keep of them;
5. purge the history of every changed Delta table (old data files, old log entries and their statistics) and
   scrub other files under ``_system`` (staging, reports, data docs, logs) that name them;
6. write one run record that holds only the erased patient's pseudonym (namespace ``erasure``).

What stays, by design: the run log (an immutable chain) still holds digests of the landing paths it read, and
backups of the root made before the erasure hold everything they held.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from bronze.landing import HEAD_BYTES, detect_format
from bronze.schemas import DICOM_TABLE, FHIR_TABLE, HL7V2_TABLE, MANIFEST_TABLE
from gold.dbt_runner import fingerprint as gold_fingerprint
from gold.dbt_runner import require_silver
from lakehouse import uptodate
from lakehouse.catalog import Catalog, is_delta_table
from lakehouse.config import Settings
from lakehouse.engine import get_spark
from lakehouse.errors import LakehouseError
from lakehouse.logs import get_logger
from lakehouse.runlog import Run, run_context
from lakehouse.uptodate import layer_tables
from lakehouse_app import pipeline
from silver.deid import load_key, pseudonym_py
from silver.job import fingerprint as silver_fingerprint

log = get_logger(__name__)

ERASURE_NAMESPACE = "erasure"
MIN_MRN_LENGTH = 4
MIN_HARVESTED = 6  # shorter harvested values (a 5-digit ZIP, a short id) would match other patients' data
LAYERS = ("bronze", "quarantine", "silver", "gold", "_system")
KEEP_SYSTEM = ("runs",)  # the immutable run log (it stores digests of paths, never content)


@dataclass
class Found:
    """What of the patient is where, before anything is changed."""

    mrn: str
    fhir_ids: set[str] = field(default_factory=set)
    # identifiers harvested from the patient's own records (other MRNs, SSN, phone, e-mail, HL7 name): they find
    # records that lack the MRN (a malformed message of theirs that Bronze or quarantine kept)
    harvested: set[str] = field(default_factory=set)
    content_hashes: set[str] = field(default_factory=set)
    records: dict[str, list[str]] = field(default_factory=dict)  # landing file -> raw records of the patient
    whole_files: set[str] = field(default_factory=set)  # landing files that are the patient's only (DICOM)
    fhir_resources: set[tuple[str, str]] = field(default_factory=set)  # (resource type, id)

    def identifiers(self) -> list[str]:
        return sorted({self.mrn, *self.fhir_ids, *self.harvested})


def _table(settings: Settings, name: str) -> DeltaTable | None:
    layer, table = name.split(".", 1)
    path = settings.table_path(layer, table)
    return DeltaTable(str(path)) if is_delta_table(path) else None


def _hl7_pattern(mrn: str) -> str:
    """A PID-3 or MRG-1 repetition whose first component is the MRN (default delimiters ``|^~``)."""
    cx = f"([^|\\r\\n]*~)?{re.escape(mrn)}(\\^|~|\\||\\r|\\n|$)"
    return f"(^|[\\r\\n])(PID\\|[^|\\r\\n]*\\|[^|\\r\\n]*\\|{cx}|MRG\\|{cx})"


def _hl7_identifiers(raw: str) -> set[str]:
    """Identifier values of the PID segments of a message: PID-3 ids, the HL7 name (family^given), phone and
    e-mail (PID-13/14), SSN (PID-19), driver's licence (PID-20)."""
    out: set[str] = set()
    for segment in re.split(r"[\r\n]+", raw):
        if not segment.startswith("PID|"):
            continue
        fields = segment.split("|") + [""] * 21

        def get(n: int, fields: list[str] = fields) -> str:
            return fields[n]

        for rep in get(3).split("~"):
            out.add(rep.split("^")[0])
        for rep in get(5).split("~"):
            parts = rep.split("^")
            if len(parts) > 1 and parts[0] and parts[1]:
                out.add(f"{parts[0]}^{parts[1]}")
        for n in (13, 14):
            for rep in get(n).split("~"):
                parts = rep.split("^")
                out.update(parts[i] for i in (0, 3) if i < len(parts))
        out.add(get(19).split("^")[0])
        out.add(get(20).split("^")[0])
    return {v.strip() for v in out if len(v.strip()) >= MIN_HARVESTED}


def _fhir_identifiers(raw: str) -> set[str]:
    try:
        resource = json.loads(raw)
    except ValueError:
        return set()
    out = {str(i.get("value", "")) for i in resource.get("identifier") or [] if isinstance(i, dict)}
    out |= {str(t.get("value", "")) for t in resource.get("telecom") or [] if isinstance(t, dict)}
    return {v.strip() for v in out if len(v.strip()) >= MIN_HARVESTED}


def _any_word(values: Iterable[str]) -> str:
    return "(^|[^A-Za-z0-9])(" + "|".join(re.escape(v) for v in sorted(values)) + ")([^A-Za-z0-9]|$)"


def find_patient(settings: Settings, mrn: str) -> Found:
    found = Found(mrn)
    hl7 = _table(settings, HL7V2_TABLE)
    hl7_rows = hl7.to_pyarrow_table(columns=["raw", "source_file", "content_hash"]) if hl7 is not None else None
    if hl7_rows is not None:
        hits = hl7_rows.filter(pc.match_substring_regex(hl7_rows["raw"], _hl7_pattern(mrn))).to_pylist()
        _collect(found, hits)
        for r in hits:
            found.harvested |= _hl7_identifiers(r["raw"])
    fhir = _table(settings, FHIR_TABLE)
    if fhir is not None:
        rows = fhir.to_pyarrow_table(columns=["resource_type", "resource_id", "raw", "source_file", "content_hash"])
        patients = rows.filter(pc.equal(rows["resource_type"], "Patient"))
        patients = patients.filter(pc.match_substring(patients["raw"], mrn))
        for r in patients.to_pylist():
            resource = json.loads(r["raw"])
            if any(str(i.get("value")) == mrn for i in resource.get("identifier") or [] if isinstance(i, dict)):
                found.fhir_ids.add(str(r["resource_id"]))
                found.harvested |= _fhir_identifiers(r["raw"])
        for fhir_id in sorted(found.fhir_ids):
            hits = rows.filter(pc.or_(pc.match_substring(rows["raw"], fhir_id),
                                      pc.equal(rows["resource_id"], fhir_id)))
            _collect(found, hits.to_pylist())
            found.fhir_resources |= {(r["resource_type"], r["resource_id"]) for r in hits.to_pylist()}
    found.harvested -= {""}
    # messages of the patient that lack the MRN (Bronze keeps any message with a valid MSH) but carry their SSN,
    # phone, e-mail or HL7 name
    if hl7_rows is not None and found.harvested:
        _collect(found, hl7_rows.filter(pc.match_substring_regex(hl7_rows["raw"], _any_word(found.harvested)))
                 .to_pylist())
    dicom = _table(settings, DICOM_TABLE)
    if dicom is not None:
        rows = dicom.to_pyarrow_table(columns=["patient_id", "source_file", "content_hash"])
        hits = rows.filter(pc.is_in(rows["patient_id"], pa.array(sorted({mrn, *found.harvested})))).to_pylist()
        _collect(found, hits)
        found.whole_files |= {r["source_file"] for r in hits}
    pattern = re.compile(_any_word(found.identifiers()))
    for name in layer_tables(settings, "quarantine"):
        if name.startswith("quarantine.silver_"):
            continue
        table = _table(settings, name)
        assert table is not None
        rows = table.to_pyarrow_table(columns=["raw", "raw_encoding", "source_file", "content_hash"])
        for r in rows.to_pylist():
            text = _decoded(r["raw"], r["raw_encoding"])
            if pattern.search(text):
                _collect(found, [{**r, "raw": text}])
                if name == "quarantine.dicom":
                    found.whole_files.add(r["source_file"])
    return found


def _decoded(raw: str | None, encoding: str | None) -> str:
    if raw is None:
        return ""
    if encoding == "base64":
        return base64.b64decode(raw).decode("latin-1")
    return raw


def _collect(found: Found, rows: Iterable[dict[str, Any]]) -> None:
    for r in rows:
        if r.get("content_hash"):
            found.content_hashes.add(r["content_hash"])
        if r.get("source_file"):
            found.records.setdefault(r["source_file"], []).append(r.get("raw") or "")


# -- landing --------------------------------------------------------------------------------------

def _rewrite_json(path: Path, found: Found) -> bytes | None:
    """A Bundle without the patient's entries, NDJSON without their lines; None when nothing is left."""
    text = path.read_text(encoding="utf-8")

    def theirs(resource: Any) -> bool:
        return isinstance(resource, dict) and (str(resource.get("resourceType")), str(resource.get("id"))) in \
            found.fhir_resources

    stripped = text.lstrip()
    if stripped.startswith("{") and "\n{" not in stripped.strip():
        doc = json.loads(text)
        if theirs(doc):
            return None
        if doc.get("resourceType") == "Bundle":
            doc["entry"] = [e for e in doc.get("entry") or [] if not theirs(e.get("resource"))]
            return json.dumps(doc, ensure_ascii=False, indent=1).encode() if doc["entry"] else None
        return text.encode()
    lines = [line for line in text.splitlines() if line.strip() and not theirs(json.loads(line))]
    return ("\n".join(lines) + "\n").encode() if lines else None


def _record_pattern(raw: str, encoding: str) -> re.Pattern[bytes]:
    """The bytes of one HL7 message as the file holds them: Bronze keeps segments, the file may end them with
    CR, LF or CRLF."""
    segments = [re.escape(seg.encode(encoding, errors="ignore")) for seg in re.split(r"\r\n|\r|\n", raw) if seg]
    return re.compile(rb"(?:\r\n|\r|\n)".join(segments))


def _rewrite_text(path: Path, records: list[str]) -> bytes | None:
    content = path.read_bytes()
    for raw in records:
        for encoding in ("utf-8", "latin-1"):
            if raw.strip():
                content = _record_pattern(raw, encoding).sub(b"", content)
    rest = content.strip(b" \r\n\t\x0b\x1c").removeprefix(b"\xef\xbb\xbf").strip(b" \r\n\t\x0b\x1c")
    return content if rest else None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.erase.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def erase_from_landing(settings: Settings, found: Found) -> dict[str, int]:
    rewritten = deleted = 0
    for rel, records in sorted(found.records.items()):
        path = settings.root_path / rel
        if not path.is_file() or path.is_symlink():
            continue
        detected = detect_format(path.read_bytes()[:HEAD_BYTES]).format
        if rel in found.whole_files or detected == "dicom":
            data = None
        elif detected == "fhir":
            data = _rewrite_json(path, found)
        else:
            data = _rewrite_text(path, records)
        if data is None:
            path.unlink()
            deleted += 1
        else:
            _write_atomic(path, data)
            rewritten += 1
    manifest = _table(settings, MANIFEST_TABLE)
    if manifest is not None and found.records:
        manifest.delete(_in("path", found.records))
    return {"landing_files_rewritten": rewritten, "landing_files_deleted": deleted}


def _in(column: str, values: Iterable[str]) -> str:
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(set(values)))
    return f"{column} IN ({quoted})"


# -- tables ---------------------------------------------------------------------------------------

def _delete_rows(settings: Settings, name: str, found: Found, patient_keys: set[str]) -> int:
    """Delete the patient's rows of one table by the columns it has; returns rows deleted."""
    table = _table(settings, name)
    if table is None:
        return 0
    columns = set(table.schema().to_arrow().names)
    predicates = []
    if "content_hash" in columns and found.content_hashes:
        predicates.append(_in("content_hash", found.content_hashes))
    if "patient_key" in columns and patient_keys:
        predicates.append(_in("patient_key", patient_keys))
    if "raw_id" in columns:
        predicates.append(_in("raw_id", found.identifiers()))
    if not predicates:
        return 0
    metrics = table.delete(" OR ".join(f"({p})" for p in predicates))
    return int(metrics.get("num_deleted_rows") or 0)


def _patient_keys(settings: Settings, found: Found, key: bytes) -> set[str]:
    """The patient's keys in Silver: rows whose keyed lineage names one of the patient's Bronze records."""
    lineage = {pseudonym_py(h, key, "lineage") for h in found.content_hashes}
    keys: set[str] = set()
    for name in layer_tables(settings, "silver"):
        table = _table(settings, name)
        assert table is not None
        names = set(table.schema().to_arrow().names)
        if not {"patient_key", "bronze_hashes"} <= names:
            continue
        rows = table.to_pyarrow_table(columns=["patient_key", "bronze_hashes"]).to_pylist()
        keys |= {r["patient_key"] for r in rows if r["patient_key"] and lineage & set(r["bronze_hashes"] or ())}
    return keys


def _scrub_files(settings: Settings, found: Found) -> int:
    """Files under _system outside Delta tables that name the patient: JSON-lines and logs lose those lines,
    anything else (reports, data docs, staging, engine scratch) is removed; it is regenerated by the next run."""
    needles = [i.encode() for i in found.identifiers() if len(i) >= MIN_MRN_LENGTH]
    scrubbed = 0
    shutil.rmtree(settings.system_dir / "staging", ignore_errors=True)
    for dirpath, dirnames, filenames in os.walk(settings.system_dir):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not is_delta_table(base / d)]
        for fname in filenames:
            path = base / fname
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if not any(n in data for n in needles):
                continue
            if path.suffix in (".jsonl", ".log", ".txt", ".prom"):
                kept = b"".join(line for line in data.splitlines(keepends=True) if not any(n in line for n in needles))
                _write_atomic(path, kept)
            else:
                path.unlink()
            scrubbed += 1
    return scrubbed


def erase_patient(settings: Settings, mrn: str, run: Run) -> dict[str, Any]:
    """Erase the patient with this MRN (see the module docstring); returns what was removed."""
    mrn = mrn.strip()
    if len(mrn) < MIN_MRN_LENGTH:
        raise LakehouseError(f"--patient needs the full MRN (at least {MIN_MRN_LENGTH} characters)")
    key = load_key(settings)
    found = find_patient(settings, mrn)
    if not found.content_hashes:
        raise LakehouseError("no record of that MRN in Bronze or quarantine: nothing erased (check the MRN)")
    patient_keys = _patient_keys(settings, found, key)
    report: dict[str, Any] = {"bronze_records": len(found.content_hashes), "landing_files": len(found.records),
                              "silver_patient_keys": len(patient_keys)}
    report.update(erase_from_landing(settings, found))
    deleted: dict[str, int] = {}
    for name in [t for layer in ("bronze", "quarantine", "_system") for t in layer_tables(settings, layer)]:
        if name.split(".", 1)[1] in KEEP_SYSTEM:
            continue
        deleted[name] = _delete_rows(settings, name, found, patient_keys)
    # the rebuild is the pipeline's own Silver and Gold steps
    pipeline.silver(settings, run, force=True)
    pipeline.gold(settings, run, force=True)
    for name in [t for layer in ("silver", "gold", "quarantine") for t in layer_tables(settings, layer)]:
        deleted[name] = deleted.get(name, 0) + _delete_rows(settings, name, found, patient_keys)
    catalog = Catalog(get_spark(settings), settings)
    purged = [catalog.purge_history(name)["table"] for layer in LAYERS for name in layer_tables(settings, layer)
              if name.split(".", 1)[1] not in KEEP_SYSTEM]
    report["rows_deleted"] = {k: v for k, v in deleted.items() if v}
    report["tables_purged"] = len(purged)
    report["system_files_scrubbed"] = _scrub_files(settings, found)
    # Silver and Gold are what a build from the remaining Bronze gives: record their fingerprints after the purge
    # (which gave every table a new version), so that the next run does not rebuild them
    run.metric(uptodate.metric_name("silver"), silver_fingerprint(settings))
    run.metric(uptodate.metric_name("gold"), gold_fingerprint(settings, require_silver(settings)))
    run.metric("erased_patient", pseudonym_py(mrn, key, ERASURE_NAMESPACE))
    return report


def erase(settings: Settings, mrn: str) -> dict[str, Any]:
    with run_context("erase", settings) as run:
        return erase_patient(settings, mrn, run)
