"""PHI scan: every Parquet file under ``<root>/silver`` and ``<root>/gold`` (all Delta versions still on disk, read
with pyarrow, not through the Delta log), checked against the known identifiers of Bronze and PHI patterns.

Policy (what counts as a finding, chosen to catch leaks without flagging de-identified data):
* a whole value equal to a known identifier of any patient (full name, MRN, SSN, phone, e-mail, address line,
  ZIP5), compared case- and whitespace-insensitively, phones/SSNs by their digits; one-word names and cities
  (also ordinary words: race "White") only in a column named like a name/city/address, or when at least half
  of the column's values match with two or more different names;
* anywhere: a formatted SSN (ddd-dd-dddd), a formatted phone number, an e-mail address;
* a ZIP5/ZIP+4 in a column whose name mentions zip or postal;
* in free text (three words or more): every recognizer of ``patterns.py`` (dates, URLs, IPs, ZIPs, MRN-like and
  long numbers, ages over 89), known family names as capitalised words, known full names, MRNs and address lines;
* a date equal to the patient's real birth date: per row when the row's ``patient_key`` is the pseudonym of a
  known patient; otherwise in a column named like ``*birth*`` when at least half of its values match some real
  birth date (shifted dates collide with somebody's birth date by chance; a copied column matches throughout).
  Under the ``year`` policy, 1 January values are year-only and not flagged. Other dates are shifted: not PHI.
* skipped: 64-hex pseudonyms and content hashes, DICOM UIDs (digits and dots), structured URLs (code systems).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import hl7
import pyarrow.parquet as pq
from deltalake import DeltaTable

from lakehouse.catalog import is_delta_table
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.logs import get_logger
from silver.deid.keys import load_key
from silver.deid.patterns import RECOGNIZERS
from silver.deid.pseudonym import pseudonym_py

log = get_logger(__name__)

LAYERS = ("silver", "gold")
HEX_RE = re.compile(r"[0-9a-f]{16,}")
UID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)+")
DIGITLIKE_RE = re.compile(r"[0-9()+\s.\-]{7,}")
ZIP_RE = re.compile(r"[0-9]{5}(?:-[0-9]{4})?")
ISO_DATE_RE = re.compile(r"((?:19|20)[0-9]{2})-?([01][0-9])-?([0-3][0-9])")
WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]+")
# "Dr. Singh" names the clinician, not the patient: provider names are not Safe Harbor identifiers and the
# scrubber keeps them (a patient who shares the name is still scrubbed, from their own known identifiers)
CLINICIAN_TITLES = frozenset({"dr", "doctor", "prof", "professor"})
ANYWHERE = (
    ("ssn", re.compile(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b")),
    ("phone", re.compile(r"(?:\([0-9]{3}\)\s?|\b[0-9]{3}[\s.-])[0-9]{3}[\s.-][0-9]{4}\b")),
    ("email", re.compile(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b")),
)
FREE_TEXT = tuple((r.kind.lower(), re.compile(r.regex)) for r in RECOGNIZERS)
FREE_TEXT_MIN_WORDS = 3
# one-word names and cities are also ordinary words (race "White", a street "Marshall"): see the policy above
AMBIGUOUS_KINDS = ("name", "city")
# columns of vocabulary values (codes, their displays and systems, units, reference ranges as sent): not free
# text, so words inside them are not matched against names ("Honey bee IgE Ab") nor numbers against ZIP codes
# ("4300 to 10800"); an exact identifier still counts, a known MRN from 6 characters on (shorter ones collide
# with ordinary codes: local allergen code 12345)
VOCABULARY_COLUMN_RE = re.compile(r"(^|[._])(code|codes|display|system|unit|ref_text)$")
SHORTEST_MRN_IN_CODES = 6
NAME_COLUMN_HINTS = ("name", "family", "given", "city", "address")


@dataclass(frozen=True)
class Finding:
    file: str      # relative to the lakehouse root
    column: str    # column, with the path inside nested or JSON values
    kind: str      # e.g. known_name, ssn, phone, dob
    masked: str    # never the full value
    row: int | None = None

    def line(self) -> str:
        at = f" row {self.row}" if self.row is not None else ""
        return f"{self.file}: {self.column}{at}: {self.kind} {self.masked}"


@dataclass
class KnownIdentifiers:
    exact: dict[str, str] = field(default_factory=dict)        # normalised value -> kind
    digits: dict[str, str] = field(default_factory=dict)       # phone (last 10) / SSN digits -> kind
    family_names: set[str] = field(default_factory=set)        # as written, for free text
    full_names: set[str] = field(default_factory=set)          # "given family", lower case
    address_lines: set[str] = field(default_factory=set)       # lower case, for free text
    birth_dates: set[date] = field(default_factory=set)
    birth_date_by_pseudonym: dict[str, date] = field(default_factory=dict)
    content_hashes: set[str] = field(default_factory=set)  # Bronze content_hash: a plain hash of raw PHI
    patients: int = 0

    def add(self, kind: str, value: str | None) -> None:
        if value is None:
            return
        text = " ".join(str(value).split())
        if len(text) < 2:
            return
        if kind in ("phone", "fax", "ssn"):
            digits = re.sub(r"[^0-9]", "", text)
            if len(digits) >= 7:
                self.digits[digits[-10:] if kind != "ssn" else digits] = kind
            return
        if kind == "zip":
            text = text[:5]
            if not text.isdigit():
                return
        self.exact[text.lower()] = kind
        if kind == "address":
            self.address_lines.add(text.lower())

    def add_name(self, given: list[str], family: str | None) -> None:
        for g in given:
            self.add("name", g)
        if family:
            self.add("name", family)
            if len(family) >= 3:
                self.family_names.add(family)
            for g in given:
                self.full_names.add(f"{g} {family}".lower())
                self.add("name", f"{g} {family}")

    def add_birth_date(self, value: str | None, patient_ids: Iterable[str], key: bytes | None) -> None:
        d = _parse_date(value)
        if d is None:
            return
        self.birth_dates.add(d)
        if key is not None:
            for pid in patient_ids:
                self.birth_date_by_pseudonym[pseudonym_py(pid, key, "patient") or ""] = d


def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    m = ISO_DATE_RE.fullmatch(value.strip()[:10]) or ISO_DATE_RE.fullmatch(value.strip()[:8])
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def mask(value: str) -> str:
    value = str(value)
    if len(value) <= 2:
        return "*" * len(value)
    return f"{value[0]}{'*' * min(len(value) - 2, 8)}{value[-1]} ({len(value)} chars)"


# -- known identifiers from Bronze -------------------------------------------------------------

def _bronze_rows(settings: Settings, table: str, columns: list[str]) -> Iterator[dict[str, Any]]:
    path = settings.table_path("bronze", table)
    if not is_delta_table(path):
        return
    table = DeltaTable(str(path))
    present = set(table.schema().to_arrow().names)
    if not set(columns) <= present:  # a table written by hand (tests, notebooks) may lack lineage columns
        return
    yield from table.to_pyarrow_table(columns=columns).to_pylist()


def add_fhir_patient(known: KnownIdentifiers, resource: dict[str, Any], key: bytes | None) -> None:
    ids = [str(resource["id"])] if resource.get("id") else []
    for name in resource.get("name") or []:
        known.add_name([str(g) for g in name.get("given") or []], name.get("family"))
        known.add("name", name.get("text"))
    for ident in resource.get("identifier") or []:
        codes = {c.get("code") for c in ((ident.get("type") or {}).get("coding") or [])}
        value = ident.get("value")
        known.add("ssn" if "SS" in codes or "ssn" in str(ident.get("system", "")).lower() else "mrn", value)
        if value:
            ids.append(str(value))
    for telecom in resource.get("telecom") or []:
        system = telecom.get("system")
        known.add({"phone": "phone", "fax": "fax", "email": "email"}.get(system, "phone"), telecom.get("value"))
    for addr in resource.get("address") or []:
        for line in addr.get("line") or []:
            known.add("address", line)
        known.add("city", addr.get("city"))
        known.add("zip", addr.get("postalCode"))
    known.add_birth_date(resource.get("birthDate"), ids, key)
    known.patients += 1


def add_hl7_pid(known: KnownIdentifiers, raw: str, key: bytes | None) -> None:

    message = hl7.parse(raw.replace("\r\n", "\r").replace("\n", "\r"))
    for segment in message.segments("PID"):
        def field(n: int, seg: Any = segment) -> str:
            return str(seg[n]) if len(seg) > n else ""

        ids = []
        for cx in field(3).split("~"):
            parts = cx.split("^")
            if parts[0]:
                ids.append(parts[0])
                known.add("ssn" if len(parts) > 4 and parts[4] == "SS" else "mrn", parts[0])
        for xpn in (field(5) + "~" + field(6) + "~" + field(9)).split("~"):
            parts = xpn.split("^")
            if parts[0] or len(parts) > 1:
                known.add_name([p for p in parts[1:3] if p], parts[0] or None)
        for xad in field(11).split("~"):
            parts = xad.split("^") + [""] * 5
            known.add("address", parts[0])
            known.add("city", parts[2])
            known.add("zip", parts[4])
        for xtn in (field(13) + "~" + field(14)).split("~"):
            parts = xtn.split("^") + [""] * 8
            known.add("phone", parts[0])
            known.add("email", parts[3])
            if parts[5] and parts[6]:
                known.add("phone", parts[5] + parts[6])
        known.add("ssn", field(19))
        known.add_birth_date(field(7)[:8], ids, key)
        known.patients += 1


def known_from_bronze(settings: Settings, key: bytes | None) -> KnownIdentifiers:
    """Identifiers of every patient in ``bronze.fhir_resources`` (Patient) and ``bronze.hl7v2_messages`` (PID)."""
    known = KnownIdentifiers()
    bad = 0
    for row in _bronze_rows(settings, "fhir_resources", ["resource_type", "raw"]):
        if row["resource_type"] != "Patient" or not row["raw"]:
            continue
        try:
            add_fhir_patient(known, json.loads(row["raw"]), key)
        except (ValueError, TypeError, AttributeError, KeyError):
            bad += 1
    for row in _bronze_rows(settings, "hl7v2_messages", ["raw"]):
        if not row["raw"] or "PID" not in row["raw"]:
            continue
        try:
            add_hl7_pid(known, row["raw"], key)
        except Exception:  # noqa: BLE001 - a malformed message (Bronze keeps them verbatim) must not stop the scan
            bad += 1
    if bad:
        log.warning("phi-scan: %d Bronze patient records could not be parsed for known identifiers", bad)
    for table in ("fhir_resources", "hl7v2_messages", "dicom_instances"):
        known.content_hashes.update(r["content_hash"] for r in _bronze_rows(settings, table, ["content_hash"])
                                    if r["content_hash"])
    return known


# -- scanning ----------------------------------------------------------------------------------

class _FileScan:
    def __init__(self, rel: str, known: KnownIdentifiers, year_policy: bool) -> None:
        self.rel = rel
        self.known = known
        self.year_policy = year_policy
        self.findings: list[Finding] = []
        self.birth_candidates: dict[str, list[tuple[int, date]]] = {}
        self.birth_totals: dict[str, int] = {}
        self.word_candidates: dict[str, list[tuple[int, str, str]]] = {}
        self.string_totals: dict[str, int] = {}

    def add(self, column: str, kind: str, value: Any, row: int | None) -> None:
        self.findings.append(Finding(self.rel, column, kind, mask(str(value)), row))

    def leaf(self, column: str, value: Any, row: int, patient_key: str | None) -> None:
        if value is None or isinstance(value, bool | float | bytes):
            return
        if isinstance(value, dict):
            for k, v in value.items():
                self.leaf(f"{column}.{k}", v, row, patient_key)
            return
        if isinstance(value, list | tuple):
            for v in value:
                self.leaf(f"{column}[]", v, row, patient_key)
            return
        if isinstance(value, date | datetime):
            self.date(column, _parse_date(value), row, patient_key)
            return
        if isinstance(value, int):
            if abs(value) >= 1_000_000 and str(value) in self.known.digits:
                self.add(column, f"known_{self.known.digits[str(value)]}", value, row)
            return
        self.string(column, str(value), row, patient_key)

    def date(self, column: str, d: date | None, row: int, patient_key: str | None) -> None:
        if d is None or d not in self.known.birth_dates or (self.year_policy and (d.month, d.day) == (1, 1)):
            if d is not None and "birth" in column.lower():
                self.birth_totals[column] = self.birth_totals.get(column, 0) + 1
            return
        real = self.known.birth_date_by_pseudonym.get(patient_key or "")
        if real is not None:
            if real == d:
                self.add(column, "dob", d.isoformat(), row)
        elif "birth" in column.lower():
            self.birth_candidates.setdefault(column, []).append((row, d))
            self.birth_totals[column] = self.birth_totals.get(column, 0) + 1

    def string(self, column: str, s: str, row: int, patient_key: str | None) -> None:
        s = s.strip()
        if s in self.known.content_hashes:  # links the row to a copy of the raw message, file or resource
            self.add(column, "raw_content_hash", s, row)
            return
        if len(s) < 2 or HEX_RE.fullmatch(s) or UID_RE.fullmatch(s):
            return
        if s[0] in "{[":
            try:
                parsed = json.loads(s)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict | list):
                self.leaf(column, parsed, row, patient_key)
                return
        self.string_totals[column] = self.string_totals.get(column, 0) + 1
        norm = " ".join(s.lower().split())
        vocabulary = bool(VOCABULARY_COLUMN_RE.search(column.lower()))
        if norm in self.known.exact:
            kind = self.known.exact[norm]
            if vocabulary and kind == "mrn" and len(norm) < SHORTEST_MRN_IN_CODES:
                return
            if kind in AMBIGUOUS_KINDS and " " not in norm:  # "White", "Marshall": also ordinary words
                self.word_candidates.setdefault(column, []).append((row, kind, s))
            else:
                self.add(column, f"known_{kind}", s, row)
            return
        if DIGITLIKE_RE.fullmatch(s):
            digits = re.sub(r"[^0-9]", "", s)
            kind = self.known.digits.get(digits) or self.known.digits.get(digits[-10:])
            if kind:
                self.add(column, f"known_{kind}", s, row)
                return
        lower_col = column.lower()
        if ("zip" in lower_col or "postal" in lower_col) and ZIP_RE.fullmatch(s):
            self.add(column, "zip5", s, row)
            return
        if "birth" in lower_col or "00100030" in column:
            d = _parse_date(s)
            if d is not None:
                self.date(column, d, row, patient_key)
        for kind, pattern in ANYWHERE:
            m = pattern.search(s)
            if m:
                self.add(column, kind, m.group(0), row)
                return
        if len(s.split()) >= FREE_TEXT_MIN_WORDS and not vocabulary:
            self.free_text(column, s, row)

    def free_text(self, column: str, s: str, row: int) -> None:
        for kind, pattern in FREE_TEXT:
            m = pattern.search(s)
            if m:
                self.add(column, f"text_{kind}", m.group(0), row)
                return
        words = WORD_RE.findall(s)
        for prev, w in zip(["", *words], words, strict=False):
            if w in self.known.family_names and prev.lower() not in CLINICIAN_TITLES:
                self.add(column, "text_known_name", w, row)
                return
        lower = " ".join(s.lower().split())
        for a, b in zip(words, words[1:], strict=False):
            if f"{a} {b}".lower() in self.known.full_names:
                self.add(column, "text_known_name", f"{a} {b}", row)
                return
        for token in re.findall(r"[A-Za-z0-9\-]{4,}", s):
            if self.known.exact.get(token.lower()) == "mrn":
                self.add(column, "text_known_mrn", token, row)
                return
        for line in self.known.address_lines:
            if len(line) >= 6 and line in lower:
                self.add(column, "text_known_address", line, row)
                return

    def finish(self) -> list[Finding]:
        for column, matches in self.birth_candidates.items():
            if len(matches) * 2 >= self.birth_totals.get(column, len(matches)):
                for row, d in matches:
                    self.add(column, "dob", d.isoformat(), row)
        for column, words in self.word_candidates.items():
            named = any(hint in column.lower() for hint in NAME_COLUMN_HINTS)
            many = len({w[2].lower() for w in words}) >= 2 and len(words) * 2 >= self.string_totals.get(column, 0)
            if named or many:
                for row, kind, value in words:
                    self.add(column, f"known_{kind}", value, row)
        return self.findings


def parquet_files(settings: Settings, layers: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for layer in layers:
        base = settings.layer_path(layer)
        if base.is_dir():
            files.extend(p for p in sorted(base.rglob("*.parquet")) if "_delta_log" not in p.parts)
    return files


def scan_file(path: Path, rel: str, known: KnownIdentifiers, year_policy: bool = False) -> list[Finding]:

    state = _FileScan(rel, known, year_policy)
    offset = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
        columns = {name: batch.column(i).to_pylist() for i, name in enumerate(batch.schema.names)}
        keys = columns.get("patient_key") or [None] * batch.num_rows
        for name, values in columns.items():
            for i, value in enumerate(values):
                state.leaf(name, value, offset + i, keys[i] if isinstance(keys[i], str) else None)
        offset += batch.num_rows
    return state.finish()


def scan(settings: Settings, layers: Iterable[str] = LAYERS, key: bytes | None = None) -> list[Finding]:
    """Every finding in every Parquet file of ``layers`` (no value is returned unmasked)."""
    layers = list(layers)
    unknown = sorted(set(layers) - set(LAYERS))
    if unknown:
        raise LakehouseError(f"phi-scan covers {', '.join(LAYERS)}; not {', '.join(unknown)}")
    if key is None:
        key = load_key(settings)
    known = known_from_bronze(settings, key)
    findings: list[Finding] = []
    for path in parquet_files(settings, layers):
        rel = str(path.relative_to(settings.root_path))
        try:
            findings.extend(scan_file(path, rel, known, settings.date_policy == "year"))
        except OSError as exc:
            findings.append(Finding(rel, "*", "unreadable", exc.__class__.__name__))
    return findings
