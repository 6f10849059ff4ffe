"""The de-identification policy as data: ``rules.csv`` (one row per domain and field, with its Safe Harbor class).

``silver_columns`` names the Silver contract columns a rule acts on (space-separated); the Silver job shifts the
dates of exactly the ``shift_date`` rules' columns (:func:`shifted_date_columns`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from silver.schemas import TABLES, columns

RULES_CSV = Path(__file__).with_name("rules.csv")
ACTIONS = frozenset({"drop", "pseudonymize", "generalize_zip3", "shift_date", "year_only", "age_90plus", "scrub_text",
                     "keep", "dicom_profile", "interval"})
SAFE_HARBOR = {
    "A": "Names", "B": "Geographic subdivisions smaller than a state (street, city, county, ZIP beyond 3 digits)",
    "C": "Dates (except year) related to an individual; ages over 89", "D": "Telephone numbers",
    "E": "Fax numbers", "F": "Email addresses", "G": "Social Security numbers", "H": "Medical record numbers",
    "I": "Health plan beneficiary numbers", "J": "Account numbers", "K": "Certificate/license numbers",
    "L": "Vehicle identifiers and serial numbers, licence plates", "M": "Device identifiers and serial numbers",
    "N": "Web URLs", "O": "IP addresses", "P": "Biometric identifiers",
    "Q": "Full-face photographs and comparable images",
    "R": "Any other unique identifying number, characteristic or code",
}


@dataclass(frozen=True)
class Rule:
    domain: str
    column_or_field: str
    action: str
    safe_harbor_class: str
    notes: str
    silver_columns: str = ""


@cache
def load_rules() -> tuple[Rule, ...]:
    with RULES_CSV.open(newline="") as fh:
        rules = tuple(Rule(**{k: (v or "").strip() for k, v in row.items()}) for row in csv.DictReader(fh))
    for r in rules:
        if r.action not in ACTIONS:
            raise ValueError(f"rules.csv: unknown action {r.action!r} for {r.domain}.{r.column_or_field}")
        if r.action == "shift_date" and r.domain != "*" and not r.silver_columns:
            raise ValueError(f"rules.csv: shift_date rule {r.domain}.{r.column_or_field} names no silver_columns")
        unknown = [c for c in r.silver_columns.split() if r.domain not in TABLES or c not in columns(r.domain)]
        if unknown:
            raise ValueError(f"rules.csv: {r.domain}.{r.column_or_field}: {unknown} not in silver.{r.domain}")
    return rules


def rules_for(domain: str) -> list[Rule]:
    """The rules of one Silver table plus the rules for every table (domain ``*``)."""
    return [r for r in load_rules() if r.domain in (domain, "*")]


def shifted_date_columns() -> dict[str, tuple[str, ...]]:
    """Silver table -> the DATE/TIMESTAMP columns the date policy applies to: the ``shift_date`` rules' columns."""
    out: dict[str, tuple[str, ...]] = {}
    for r in load_rules():
        if r.action == "shift_date" and r.silver_columns:
            out[r.domain] = out.get(r.domain, ()) + tuple(r.silver_columns.split())
    return out


def classes_covered() -> set[str]:
    """Safe Harbor classes (A..R) that some rule addresses (``A-R`` = all of them)."""
    out: set[str] = set()
    for r in load_rules():
        if r.safe_harbor_class == "A-R":
            continue
        out.update(c.strip() for c in r.safe_harbor_class.split(",") if c.strip())
    return out
