"""The people around a synthetic patient, and the PHI the generator plants in free text beyond the patient's own.

Each patient gets one next of kin (HL7 NK1, FHIR ``Patient.contact``), drawn from a random stream of its own
(seeded by the patient id), so adding it changes no other value of the population. Notes then mention that
person, the patient's unit number, an age over 89 where the patient is that old, and a date in a partial or
alternative form: the recall benchmark (benchmarks/scrub_recall.py) checks that each is gone from Silver.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from synthetic import people

if TYPE_CHECKING:
    from synthetic.model import Encounter, Patient

# (HL7 table 0063 code, display, how a note names the relation)
RELATIONS = (("SPO", "Spouse", "spouse"), ("CHD", "Child", "daughter"), ("CHD", "Child", "son"),
             ("SIB", "Sibling", "sister"), ("FND", "Friend", "friend"), ("GRD", "Guardian", "guardian"))
# (m, d) pairs that read as fractions (3/4 tablet): the scrubber keeps them, so notes write such days otherwise
FRACTIONS = {(1, 2), (1, 3), (2, 3), (1, 4), (3, 4), (1, 8), (3, 8), (5, 8), (7, 8)}


@dataclass(frozen=True)
class Contact:
    given: str
    family: str
    relation: tuple[str, str, str]
    phone: str
    line: str
    city: str
    state: str
    zip: str

    @property
    def full_name(self) -> str:
        return f"{self.given} {self.family}"


def next_of_kin(p: Patient) -> Contact:
    rng = random.Random(f"synthetic:contact:{p.id}")
    relation = rng.choice(RELATIONS)
    given = rng.choice(people.GIVEN_FEMALE if relation[2] in ("daughter", "sister") else
                       people.GIVEN_MALE if relation[2] == "son" else people.GIVEN_FEMALE + people.GIVEN_MALE)
    family = p.family if relation[0] in ("SPO", "CHD", "SIB") and rng.random() < 0.6 else rng.choice(people.FAMILY)
    city, state, zip_code = rng.choice(people.CITIES)
    line = (f"{rng.randint(1, 999)} {rng.choice(people.STREET_NAMES)} {rng.choice(people.STREET_SUFFIXES)} "
            f"{rng.choice(people.UNIT_PREFIXES)} {rng.randint(1, 40)}")
    phone = f"{rng.choice(people.AREA_CODES[state])}-555-{rng.randint(100, 9999):04d}"
    return Contact(given, family, relation, phone, line, city, state, zip_code)


def age_on(p: Patient, day: date) -> int:
    return day.year - p.birth_date.year - ((day.month, day.day) < (p.birth_date.month, p.birth_date.day))


def date_forms(when: datetime) -> list[str]:
    """A day written the ways notes write it without a full numeric date."""
    short = f"{when.month}/{when.day}" if (when.month, when.day) not in FRACTIONS else f"{when:%d-%b-%Y}"
    return [short, f"{when:%d-%b-%Y}", f"{when:%B} {when.day}", f"{when:%d.%m.%Y}", f"{when:%Y-%m}"]


def age_forms(age: int) -> list[str]:
    return [f"{age} y.o.", f"{age}-year-old", f"aged {age}", f"{age} yo"]


def note_sentences(p: Patient, enc: Encounter) -> str:
    """Extra PHI for a note: the next of kin by name and phone, the unit number, an age over 89, a partial date."""
    rng = random.Random(f"synthetic:note-phi:{enc.id}")
    c = next_of_kin(p)
    out = [f"Next of kin {c.full_name} ({c.relation[2]}) reachable at {c.phone}.",
           f"Symptoms since {rng.choice(date_forms(enc.start))}."]
    unit = _unit(p.address.line)
    if unit:
        out.append(f"Lives in {unit}.")
    age = age_on(p, enc.start.date())
    if age >= 90:
        out.append(f"Patient is {rng.choice(age_forms(age))}.")
    return " " + " ".join(out)


def _unit(line: str) -> str | None:
    """The unit of an address line as a note writes it ("Apt 6" of "12 Oak St Apt 6", "apartment #6" of
    "12 Oak St # 6"), if any."""
    for prefix in people.UNIT_PREFIXES:
        marker = f" {prefix} "
        if marker in line:
            number = line.split(marker, 1)[1]
            return f"apartment #{number}" if prefix == "#" else f"{prefix} {number}"
    return None


def planted(p: Patient) -> dict[str, list[str]]:
    """What the generator writes into this patient's free text, by kind: the recall benchmark looks for each in
    the patient's Silver text columns. Dates and ages in the forms each note used (all forms of each day)."""
    c = next_of_kin(p)
    out: dict[str, list[str]] = {
        "NAME": [p.given, p.family, c.given, c.family], "PHONE": [p.phone[-8:], c.phone[-8:]], "MRN": [p.mrn],
        "EMAIL": [p.email], "ADDRESS": [p.address.line, p.address.city],
    }
    unit = _unit(p.address.line)
    if unit:
        out["ADDRESS"].append(unit)
    for enc in p.encounters:
        if not enc.notes:
            continue
        rng = random.Random(f"synthetic:note-phi:{enc.id}")
        out.setdefault("DATE", []).append(rng.choice(date_forms(enc.start)))
        age = age_on(p, enc.start.date())
        if age >= 90:
            out.setdefault("AGE", []).append(rng.choice(age_forms(age)))
    return out
