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
* ages over 89 (Safe Harbor (b)(2)(i)(C)), judged at the as-of day (``as_of_date``, default today): a birth year
  or birth date of a patient whose real birth date (known from Bronze, matched by ``patient_key``) makes them 90 or
  older; without a known patient, a ``*birth_year`` / ``*birth_date`` value that makes anyone 90 or older whatever
  the date shift (``max_shift_days``) or year rounding; an ``age*`` / ``*_age`` integer over 90 (90 is the 90+
  category) or below 0;
* a value equal to, or holding, a Bronze ``content_hash`` (a plain hash of a raw message links it to its row);
* key material: every key version of the key file, each namespace key (the namespaces Silver runs recorded, and
  the built-in ones) and the HMAC inner/outer pads of both, raw, as hex and as base64, in any decoded value and in
  the bytes of every file under ``silver/``, ``gold/`` and the run log (``_system/runs``);
* skipped: 64-hex pseudonyms and content hashes, DICOM UIDs (digits and dots), structured URLs (code systems).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import hl7
import pyarrow.parquet as pq
from deltalake import DeltaTable

from lakehouse.catalog import is_delta_table
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.logs import get_logger
from lakehouse.runlog import read_runs, runs_path
from silver.deid.keys import KeyRing, load_keyring
from silver.deid.patterns import RECOGNIZERS
from silver.deid.pseudonym import LINEAGE_NAMESPACE, NAMESPACES_USED, namespace_key, pseudonym_py
from silver.identity import canonical_authority_py, hd_authority_py, identity_py

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
AGE_CAP = 90  # Safe Harbor: every age over 89 is published as the one category 90+
CONTENT_HASH_RE = re.compile(r"[0-9a-fA-F]{64}")
BIRTH_YEAR_RE = re.compile(r"(^|_)(birth_year|year_of_birth)$")
BIRTH_DATE_RE = re.compile(r"(^|_)(birth_date|birthdate|date_of_birth|dob)$")
AGE_RE = re.compile(r"^(age|age_.+|.+_age)$")
# namespaces a scan checks even when no Silver run recorded them (the runs record the rest: "pseudonym_namespaces")
BUILTIN_NAMESPACES = frozenset({"patient", "encounter", LINEAGE_NAMESPACE, "date-shift", "dicom-uid"})
NAMESPACES_METRIC = "pseudonym_namespaces"
SECRET_WINDOW = 16  # every form of key material is at least this long
SECRET_RUN_RE = re.compile(r"[A-Za-z0-9+/_\-]{16,}")


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
    # earlier key versions: older table versions hold pseudonyms under them (birth_date_by_pseudonym covers all)
    other_keys: list[bytes] = field(default_factory=list)

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
        keys = list(dict.fromkeys(([key] if key is not None else []) + self.other_keys))
        for k in keys:
            for pid in patient_ids:
                self.birth_date_by_pseudonym[pseudonym_py(pid, k, "patient") or ""] = d


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


# -- key material ------------------------------------------------------------------------------

def _base64_forms(secret: bytes) -> set[bytes]:
    """Base64 (standard and URL-safe) of ``secret`` as it would appear inside a longer base64 text at any of the
    three byte alignments: the groups that encode only bytes of ``secret``."""
    forms: set[bytes] = set()
    for shift in range(3):
        data = bytes(shift) + secret
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(data)
            if shift == 0:
                forms.add(encoded)
            forms.add(encoded[4 if shift else 0:4 * (len(data) // 3)])
    return {f for f in forms if len(f) >= SECRET_WINDOW}


def _hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """RFC 2104 inner and outer pads of ``key`` for SHA-256 (64-byte blocks)."""
    block = (key if len(key) <= 64 else hashlib.sha256(key).digest()).ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


@dataclass
class SecretIndex:
    """Every form of key material a scan looks for: ``forms`` maps the bytes to a label that names the secret
    (``v2 patient ipad hex``), never its value."""

    forms: dict[bytes, str] = field(default_factory=dict)
    windows: set[str] = field(default_factory=set)

    def add(self, label: str, secret: bytes) -> None:
        encoded = {"": {secret}, " hex": {secret.hex().encode(), secret.hex().upper().encode()},
                   " base64": _base64_forms(secret)}
        for suffix, forms in encoded.items():
            for form in forms:
                self.forms.setdefault(form, label + suffix)
                try:
                    self.windows.add(form[:SECRET_WINDOW].decode("ascii"))
                except UnicodeDecodeError:
                    pass

    def in_bytes(self, data: bytes) -> list[str]:
        """Labels of every form found in ``data`` (a whole file)."""
        return sorted({label for form, label in self.forms.items() if form in data})

    def in_text(self, text: str) -> list[str]:
        """Labels of every form found in a decoded value; cheap for values without long hex/base64 runs."""
        for run in SECRET_RUN_RE.findall(text):
            if any(run[i:i + SECRET_WINDOW] in self.windows for i in range(len(run) - SECRET_WINDOW + 1)):
                return self.in_bytes(text.encode("utf-8", "surrogateescape"))
        return []


def recorded_namespaces(settings: Settings) -> set[str]:
    """The pseudonym namespaces of this process, of every Silver run recorded, and the built-in ones."""
    found = set(BUILTIN_NAMESPACES) | NAMESPACES_USED
    for record in read_runs(settings):
        metrics = json.loads(record.get("metrics") or "{}")
        found.update(n for n in metrics.get(NAMESPACES_METRIC) or [] if isinstance(n, str) and n)
    return found


def key_material(ring: KeyRing, namespaces: Iterable[str]) -> SecretIndex:
    """Every key version, its pads, and per namespace the derived key and its pads."""
    index = SecretIndex()
    for version in ring.versions:
        secrets = {"key": version.key}
        for ns in sorted(set(namespaces)):
            secrets[f"{ns} key"] = namespace_key(version.key, ns)
        for name, secret in list(secrets.items()):
            ipad, opad = _hmac_pads(secret)
            secrets[f"{name} ipad"], secrets[f"{name} opad"] = ipad, opad
        for name, secret in secrets.items():
            index.add(f"{version.label} {name}", secret)
    return index


# -- ages over 89 --------------------------------------------------------------------------------

def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def youngest_age(birth_year: int, day: date) -> int:
    """The age at ``day`` of someone born on the last day of ``birth_year``: what a birth year proves."""
    return age_on(date(birth_year, 12, 31), day)


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
            ids += [str(value), identity_py(canonical_authority_py(ident.get("system")), str(value)) or ""]
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
                # the raw ID and its identity (the patient_key's input, silver.identity)
                hd = (parts[3] if len(parts) > 3 else "").split("&")
                ids += [parts[0], identity_py(hd_authority_py(hd[0], hd[1] if len(hd) > 1 else None), parts[0]) or ""]
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


def known_from_bronze(settings: Settings, key: bytes | None, other_keys: Iterable[bytes] = ()) -> KnownIdentifiers:
    """Identifiers of every patient in ``bronze.fhir_resources`` (Patient) and ``bronze.hl7v2_messages`` (PID);
    pseudonyms under ``key`` and every one of ``other_keys`` (earlier key versions)."""
    known = KnownIdentifiers(other_keys=list(other_keys))
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
    def __init__(self, rel: str, known: KnownIdentifiers, year_policy: bool, as_of: date | None = None,
                 max_shift_days: int = 365, secrets: SecretIndex | None = None) -> None:
        self.rel = rel
        self.known = known
        self.year_policy = year_policy
        self.as_of = as_of or date.today()
        self.max_shift_days = max_shift_days
        self.secrets = secrets or SecretIndex()
        self.findings: list[Finding] = []
        self.birth_candidates: dict[str, list[tuple[int, date]]] = {}
        self.birth_totals: dict[str, int] = {}
        self.word_candidates: dict[str, list[tuple[int, str, str]]] = {}
        self.string_totals: dict[str, int] = {}

    def add(self, column: str, kind: str, value: Any, row: int | None) -> None:
        self.findings.append(Finding(self.rel, column, kind, mask(str(value)), row))

    def leaf(self, column: str, value: Any, row: int, patient_key: str | None) -> None:
        if isinstance(value, bytes):
            for label in self.secrets.in_bytes(value):
                self.findings.append(Finding(self.rel, column, "key_material", label, row))  # names, not values
            return
        if value is None or isinstance(value, bool | float):
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
            self.birth_date_90plus(column, _parse_date(value), row, patient_key)
            return
        if isinstance(value, int):
            self.age_90plus(column, value, row, patient_key)
            if abs(value) >= 1_000_000 and str(value) in self.known.digits:
                self.add(column, f"known_{self.known.digits[str(value)]}", value, row)
            return
        self.string(column, str(value), row, patient_key)

    def _real_age(self, patient_key: str | None) -> int | None:
        real = self.known.birth_date_by_pseudonym.get(patient_key or "")
        return None if real is None else age_on(real, self.as_of)

    def age_90plus(self, column: str, value: int, row: int, patient_key: str | None) -> None:
        """A birth year of a 90+ patient, or one that proves 90+; an age over the 90+ category or below 0."""
        name = column.rsplit(".", 1)[-1].lower()
        if BIRTH_YEAR_RE.search(name) and 1000 < value <= self.as_of.year:
            real_age = self._real_age(patient_key)
            if (real_age is not None and real_age >= AGE_CAP) or youngest_age(value, self.as_of) >= AGE_CAP:
                self.add(column, "birth_year_90plus", value, row)
        elif AGE_RE.match(name) and patient_key is not None \
                and not name.endswith(("_days", "_hours", "_minutes", "_seconds", "_months")):
            # an age of a person: rows of a table keyed by patient (a reference table's age bounds are not ages)
            if value > AGE_CAP:
                self.add(column, "age_over_89", value, row)
            elif value < 0:
                self.add(column, "negative_age", value, row)

    def birth_date_90plus(self, column: str, d: date | None, row: int, patient_key: str | None) -> None:
        """A birth date of a 90+ patient, or one that proves 90+ whatever its shift or year rounding."""
        if d is None or not BIRTH_DATE_RE.search(column.rsplit(".", 1)[-1].lower()):
            return
        real_age = self._real_age(patient_key)
        if self.year_policy and (d.month, d.day) == (1, 1):
            proven = youngest_age(d.year, self.as_of)
        else:
            latest = min(d + timedelta(days=self.max_shift_days), date.max)
            proven = age_on(latest, self.as_of)
        if (real_age is not None and real_age >= AGE_CAP) or proven >= AGE_CAP:
            self.add(column, "birth_date_90plus", d.isoformat(), row)

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
        if len(s) >= SECRET_WINDOW:
            for label in self.secrets.in_text(s):
                self.findings.append(Finding(self.rel, column, "key_material", label, row))
        if len(s) >= 64 and self.known.content_hashes and any(
                h.lower() in self.known.content_hashes for h in CONTENT_HASH_RE.findall(s)):
            # links the row to a copy of the raw message, file or resource
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


def scan_file(path: Path, rel: str, known: KnownIdentifiers, year_policy: bool = False, as_of: date | None = None,
              max_shift_days: int = 365, secrets: SecretIndex | None = None) -> list[Finding]:
    state = _FileScan(rel, known, year_policy, as_of, max_shift_days, secrets)
    offset = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
        columns = {name: batch.column(i).to_pylist() for i, name in enumerate(batch.schema.names)}
        keys = columns.get("patient_key") or [None] * batch.num_rows
        for name, values in columns.items():
            for i, value in enumerate(values):
                state.leaf(name, value, offset + i, keys[i] if isinstance(keys[i], str) else None)
        offset += batch.num_rows
    return state.finish()


def _strings(value: Any) -> Iterator[str | bytes]:
    if isinstance(value, str | bytes):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def scan_file_bytes(path: Path, rel: str, secrets: SecretIndex, decode: bool = True,
                    already: Iterable[str] = ()) -> list[Finding]:
    """Key material in the bytes of any file (a Delta log entry, a checkpoint, a Parquet page stored plain) and,
    for a Parquet file when ``decode``, in its decoded values (a compressed page hides them from the bytes)."""
    in_file = secrets.in_bytes(path.read_bytes())
    found: set[tuple[str, int | None]] = set()
    if decode and path.suffix == ".parquet":
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            for name in batch.schema.names:
                for i, value in enumerate(batch.column(name).to_pylist()):
                    for text in _strings(value):
                        labels = secrets.in_bytes(text) if isinstance(text, bytes) else secrets.in_text(text)
                        found.update((f"{name}: {label}", offset + i) for label in labels)
            offset += batch.num_rows
    decoded = {label.split(": ", 1)[1] for label, _ in found} | set(already)
    found.update((label, None) for label in in_file if label not in decoded)
    return [Finding(rel, "*", "key_material", label, row) for label, row in sorted(found, key=str)]


def key_material_files(settings: Settings, layers: Iterable[str]) -> list[Path]:
    """Every file under the layers' folders and the run log, every Delta version and log entry included."""
    folders = [settings.layer_path(layer) for layer in layers] + [runs_path(settings)]
    return [p for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*")) if p.is_file()]


def scan(settings: Settings, layers: Iterable[str] = LAYERS, key: bytes | None = None) -> list[Finding]:
    """Every finding in every Parquet file of ``layers``, and key material in any of their files or the run log
    (no value is returned unmasked; key material is named, never shown)."""
    layers = list(layers)
    unknown = sorted(set(layers) - set(LAYERS))
    if unknown:
        raise LakehouseError(f"phi-scan covers {', '.join(LAYERS)}; not {', '.join(unknown)}")
    ring = load_keyring(settings)
    key = key if key is not None else ring.active.key
    known = known_from_bronze(settings, key, [v.key for v in ring.versions])
    secrets = key_material(ring, recorded_namespaces(settings))
    findings: list[Finding] = []
    year_policy = settings.deid_profile == "safe_harbor"
    in_values: dict[str, set[str]] = {}  # per file, the key material already found in its decoded values
    for path in parquet_files(settings, layers):
        rel = str(path.relative_to(settings.root_path))
        try:
            found = scan_file(path, rel, known, year_policy, settings.as_of_day, settings.max_shift_days, secrets)
        except OSError as exc:
            found = [Finding(rel, "*", "unreadable", exc.__class__.__name__)]
        findings.extend(found)
        in_values[rel] = {f.masked for f in found if f.kind == "key_material"}
    for path in key_material_files(settings, layers):
        rel = str(path.relative_to(settings.root_path))
        try:
            # Silver/Gold values were decoded above; the run log's are decoded here
            findings.extend(scan_file_bytes(path, rel, secrets, decode=rel not in in_values,
                                            already=in_values.get(rel, ())))
        except OSError as exc:
            findings.append(Finding(rel, "*", "unreadable", exc.__class__.__name__))
    return findings
