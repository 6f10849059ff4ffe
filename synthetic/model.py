"""The in-memory synthetic population: one plain object graph that every writer (FHIR, HL7 v2, DICOM) renders.

Everything is derived from the seed: one `random.Random` per patient (so patients are independent of each other
and of N), identifiers from affine permutations (so they are unique without a shared registry), dates from BASE_TIME.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from synthetic import people, vocab

LOCAL_TZ = timezone(timedelta(hours=-5))  # the sending facility's local time; HL7 2.3/2.4 timestamps carry no offset
LOCAL_TZ_NAME = "Etc/GMT+5"  # LOCAL_TZ as an IANA zone name (POSIX sign: UTC-05:00, no daylight saving)
BASE_TIME = datetime(2025, 6, 30, 12, 0, tzinfo=LOCAL_TZ)  # "now" of the synthetic world: nothing happens after it
HISTORY_DAYS = 3 * 365

ASSIGNING_AUTHORITY = people.HOSPITAL["authority"]
MRN_SYSTEM = "https://fhir.genhosp.example.org/sid/mrn"
VISIT_SYSTEM = "https://fhir.genhosp.example.org/sid/visit-number"
ACCESSION_SYSTEM = "https://fhir.genhosp.example.org/sid/accession"
ORDER_SYSTEM = "https://fhir.genhosp.example.org/sid/lab-order"
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
DICOM_UID_ROOT = "2.25."


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def new_dicom_uid(rng: random.Random) -> str:
    return DICOM_UID_ROOT + str(uuid.UUID(int=rng.getrandbits(128), version=4).int)


def ascii_fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _npi(base9: int) -> str:
    """A 10-digit NPI with a valid Luhn check digit (prefix 80840, as CMS specifies)."""
    digits = "80840" + f"{base9:09d}"
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return f"{base9:09d}{(10 - total % 10) % 10}"


@dataclass(frozen=True)
class Address:
    line: str
    city: str
    state: str
    zip: str


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    address: Address
    phone: str
    identifier: str


@dataclass(frozen=True)
class Practitioner:
    id: str
    npi: str
    family: str
    given: str
    gender: str


@dataclass
class Pool:
    """Resources shared across patients (Synthea exports repeat them in every bundle that references them)."""

    hospital: Organization
    clinics: list[Organization]
    practitioners: list[Practitioner]
    id_keys: dict[str, tuple[int, int]]  # affine permutation (a, b) per identifier kind


@dataclass
class ConditionRecord:
    id: str
    condition: vocab.Condition
    onset: datetime
    encounter_id: str
    abated: datetime | None = None


@dataclass
class AllergyRecord:
    id: str
    code: str
    display: str
    category: str
    reaction: tuple[str, str]
    recorded: datetime
    encounter_id: str


@dataclass
class Vitals:
    time: datetime
    heart_rate: int
    systolic: int
    diastolic: int
    temp_c: float
    spo2: int
    weight_kg: float
    height_cm: float | None
    ids: dict[str, str]  # vital name -> FHIR Observation id
    temp_in_f: bool = False  # FHIR side: some sources chart [degF] / [lb_av]
    weight_in_lb: bool = False
    hl7_units: dict[str, str] = field(default_factory=dict)  # HL7 side: the unit spelling used per vital


@dataclass
class LabValue:
    test: vocab.LabTest
    value: float  # in the test's conventional unit (vocab LabTest.ucum)
    obs_id: str
    hl7_unit: str
    fhir_si: bool  # FHIR side reports the SI-unit LOINC variant (e.g. glucose 15074-8 mmol/L)
    loinc_alt: bool  # HL7 OBX-3 also carries LOINC as the alternate identifier


@dataclass
class LabOrder:
    id: str  # DiagnosticReport id
    panel: vocab.LabPanel
    order_number: str
    collected: datetime
    resulted: datetime
    route: str  # "hl7", "fhir" or "both" (a harmonization case: same result through both feeds)
    values: list[LabValue]
    phi_comment: bool
    text_result: bool


@dataclass
class MedicationOrder:
    id: str
    medication: vocab.Medication
    authored: datetime
    condition_id: str | None
    status: str


@dataclass
class ProcedureRecord:
    id: str
    code: str
    display: str
    start: datetime
    end: datetime


@dataclass
class Series:
    uid: str
    number: int
    description: str
    instances: list[tuple[str, int]]  # (SOPInstanceUID, InstanceNumber)


@dataclass
class Study:
    id: str
    uid: str
    accession: str
    modality: str
    body_part: str
    time: datetime
    referring: Practitioner
    series: list[Series]
    dicomdir_layout: bool  # PACS-export style paths without extensions

    @property
    def instance_count(self) -> int:
        return sum(len(s.instances) for s in self.series)


@dataclass
class Note:
    id: str
    kind: str  # "document" (DocumentReference) or "observation" (Observation.valueString)
    text: str
    time: datetime


@dataclass
class Immunization:
    id: str
    cvx: str
    display: str
    time: datetime


@dataclass
class Encounter:
    id: str
    visit_number: str
    klass: str
    start: datetime
    end: datetime
    practitioner: Practitioner
    organization: Organization
    location: str
    readmission: bool = False
    discharge_expired: bool = False
    update_time: datetime | None = None  # an ADT^A08 during the stay
    conditions: list[ConditionRecord] = field(default_factory=list)
    vitals: Vitals | None = None
    hl7_vitals: Vitals | None = None
    labs: list[LabOrder] = field(default_factory=list)
    medications: list[MedicationOrder] = field(default_factory=list)
    procedures: list[ProcedureRecord] = field(default_factory=list)
    studies: list[Study] = field(default_factory=list)
    immunizations: list[Immunization] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


@dataclass
class Patient:
    index: int
    id: str
    mrn: str
    ssn: str
    prefix: str
    given: str
    middle: str
    family: str
    gender: str
    birth_date: date
    address: Address
    phone: str
    email: str
    marital: str
    deceased: datetime | None
    general_practitioner: Practitioner
    managing_org: Organization
    allergies: list[AllergyRecord] = field(default_factory=list)
    encounters: list[Encounter] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.given} {self.family}"


def _affine(kind: str, seed: int, modulus: int) -> tuple[int, int]:
    rng = random.Random(f"synthetic:{seed}:ids:{kind}")
    a = rng.randrange(1, modulus)
    while a % 2 == 0 or a % 5 == 0:  # coprime with 10**k: the map index -> (a*index+b) % 10**k is a permutation
        a = rng.randrange(1, modulus)
    return a, rng.randrange(modulus)


def _identifier(pool: Pool, kind: str, index: int, digits: int) -> int:
    a, b = pool.id_keys[kind]
    return (a * index + b) % (10 ** digits)


def build_pool(seed: int) -> Pool:
    rng = random.Random(f"synthetic:{seed}:pool")
    h = people.HOSPITAL
    hospital = Organization(new_uuid(rng), h["name"], Address(h["line"], h["city"], h["state"], h["zip"]),
                            h["phone"], h["oid"])
    clinics = [Organization(new_uuid(rng), c["name"], Address(c["line"], c["city"], c["state"], c["zip"]),
                            c["phone"], f"{h['oid']}.{i + 2}") for i, c in enumerate(people.CLINICS)]
    practitioners = []
    for _ in range(24):
        gender = rng.choice(["male", "female"])
        given = rng.choice(people.GIVEN_MALE if gender == "male" else people.GIVEN_FEMALE)
        practitioners.append(Practitioner(new_uuid(rng), _npi(rng.randrange(10 ** 8, 10 ** 9)),
                                          rng.choice(people.FAMILY), given, gender))
    keys = {kind: _affine(kind, seed, 10 ** digits) for kind, digits in ID_DIGITS.items()}
    return Pool(hospital, clinics, practitioners, keys)


ID_DIGITS = {"mrn": 8, "ssn": 6, "visit": 9, "accession": 9, "order": 10}


def random_address(rng: random.Random, exclude_zip3: str | None = None) -> Address:
    cities = [c for c in people.CITIES if exclude_zip3 is None or c[2][:3] != exclude_zip3]
    city, state, zip_code = rng.choice(cities)
    line = f"{rng.randint(1, 9999)} {rng.choice(people.STREET_NAMES)} {rng.choice(people.STREET_SUFFIXES)}"
    if rng.random() < 0.2:
        line += f" {rng.choice(people.UNIT_PREFIXES)} {rng.randint(1, 40)}"
    return Address(line, city, state, zip_code)


def _phone(rng: random.Random, state: str) -> str:
    return f"{rng.choice(people.AREA_CODES[state])}-555-{rng.randint(100, 9999):04d}"


def _clamp_round(value: float, lo: float, decimals: int) -> float:
    return round(max(lo, value), decimals)


def build_patient(index: int, seed: int, pool: Pool) -> Patient:
    rng = random.Random(f"synthetic:{seed}:patient:{index}")
    gender = rng.choice(["male", "female"])
    given = rng.choice(people.GIVEN_MALE if gender == "male" else people.GIVEN_FEMALE)
    family = rng.choice(people.FAMILY)
    roll = rng.random()
    age_years = rng.randint(90, 104) if roll < 0.05 else rng.randint(0, 17) if roll < 0.15 else rng.randint(18, 89)
    birth = (BASE_TIME - timedelta(days=age_years * 365 + rng.randint(0, 364))).date()
    address = random_address(rng)
    phone = _phone(rng, address.state)
    email = f"{ascii_fold(given)}.{ascii_fold(family).replace(chr(39), '')}{rng.randint(1, 99)}@" \
            f"{rng.choice(people.EMAIL_DOMAINS)}"
    adult = age_years >= 18
    patient = Patient(
        index=index, id=new_uuid(rng), mrn=f"MRN{_identifier(pool, 'mrn', index, 8):08d}",
        ssn="999-{:02d}-{:04d}".format(*divmod(_identifier(pool, "ssn", index, 6), 10000)),
        prefix=("Mr." if gender == "male" else rng.choice(["Mrs.", "Ms."])) if adult else "",
        given=given, middle=rng.choice(people.MIDDLE_INITIALS), family=family, gender=gender, birth_date=birth,
        address=address, phone=phone, email=email, marital=rng.choice("MSDWM") if adult else "S", deceased=None,
        general_practitioner=rng.choice(pool.practitioners), managing_org=pool.hospital,
    )
    chronic = rng.sample(vocab.CHRONIC_CONDITIONS, k=rng.choice([0, 1, 1, 2, 2, 3, 4]) if adult else 0)
    _build_encounters(patient, rng, pool, age_years)
    _attach_conditions_and_allergies(patient, rng, chronic)
    if rng.random() < 0.04 or (age_years >= 90 and rng.random() < 0.2):
        _make_deceased(patient, rng)
    return patient


def _build_encounters(patient: Patient, rng: random.Random, pool: Pool, age_years: int) -> None:
    t = BASE_TIME - timedelta(days=HISTORY_DAYS - rng.randint(0, 120))
    born = datetime.combine(patient.birth_date, time(8, 0), tzinfo=LOCAL_TZ) + timedelta(days=1)
    t = max(t, born)  # newborns: nothing before birth
    wanted = rng.randint(2, 7)
    planned_readmission = False
    k = 0
    while k < 60:
        if planned_readmission:
            klass = "inpatient"
        elif k >= wanted:
            break
        else:
            klass = rng.choices(["outpatient", "emergency", "inpatient"], weights=[60, 22, 18])[0]
        start = t.replace(hour=rng.randint(6, 21), minute=rng.choice([0, 5, 10, 15, 20, 30, 40, 45, 50]), second=0)
        if klass == "inpatient":
            end = start + timedelta(days=rng.randint(1, 8), hours=rng.randint(0, 10))
        elif klass == "emergency":
            end = start + timedelta(hours=rng.randint(2, 9), minutes=rng.choice([0, 15, 30, 45]))
        else:
            end = start + timedelta(minutes=rng.choice([15, 20, 30, 45]))
        if end >= BASE_TIME:
            break
        org = pool.hospital if klass != "outpatient" or rng.random() < 0.4 else rng.choice(pool.clinics)
        enc = Encounter(
            id=new_uuid(rng), visit_number=f"{_identifier(pool, 'visit', patient.index * 100 + k, 9):09d}",
            klass=klass, start=start, end=end,
            practitioner=patient.general_practitioner if klass == "outpatient" and rng.random() < 0.7
            else rng.choice(pool.practitioners),
            organization=org, location=_location(rng, klass),
        )
        if klass == "inpatient" and rng.random() < 0.4:
            enc.update_time = start + timedelta(hours=rng.randint(2, 20))
        _fill_encounter(patient, enc, rng, pool, k, age_years)
        patient.encounters.append(enc)
        k += 1
        planned_readmission = klass == "inpatient" and rng.random() < 0.15
        if planned_readmission:
            t = end + timedelta(days=rng.randint(2, 28))
        else:  # keep unplanned inpatient stays more than 30 days apart so readmissions are exactly the planned ones
            t = end + timedelta(days=rng.randint(31 if klass == "inpatient" else 7, 200))
    last_inpatient_end: datetime | None = None
    for enc in patient.encounters:
        if enc.klass == "inpatient":
            enc.readmission = last_inpatient_end is not None and enc.start - last_inpatient_end <= timedelta(days=30)
            last_inpatient_end = enc.end


def _location(rng: random.Random, klass: str) -> str:
    if klass == "inpatient":
        return f"{rng.choice(['4W', '5E', '6N', 'ICU'])}^{rng.randint(401, 460)}^{rng.choice('AB')}"
    if klass == "emergency":
        return f"ED^{rng.randint(1, 30)}^A"
    return f"CLINIC^{rng.randint(1, 12)}^A"


def _vitals(rng: random.Random, time: datetime, age_years: int, with_height: bool) -> Vitals:
    child = age_years < 12
    weight = rng.gauss(25, 8) if child else rng.gauss(80, 18)
    height = rng.gauss(125, 15) if child else rng.gauss(170, 10)
    ids = {name: new_uuid(rng) for name in ("heart_rate", "blood_pressure", "temperature", "spo2", "weight", "height")}
    return Vitals(
        time=time, heart_rate=int(_clamp_round(rng.gauss(78, 14), 40, 0)),
        systolic=int(_clamp_round(rng.gauss(128, 18), 85, 0)), diastolic=int(_clamp_round(rng.gauss(79, 11), 45, 0)),
        temp_c=_clamp_round(rng.gauss(36.9, 0.6), 35.0, 1),
        spo2=min(100, int(_clamp_round(rng.gauss(96.5, 2.2), 82, 0))),
        weight_kg=_clamp_round(weight, 3, 1), height_cm=_clamp_round(height, 50, 1) if with_height else None, ids=ids,
        temp_in_f=rng.random() < 0.2, weight_in_lb=rng.random() < 0.2,
        hl7_units={"heart_rate": rng.choice(["bpm", "/min"]), "bp": rng.choice(["mm[Hg]", "mmHg"]),
                   "temperature": rng.choice(["degF", "F"]), "weight": rng.choice(["lb", "lbs", "kg"]),
                   "spo2": "%"},
    )


def _lab_order(rng: random.Random, pool: Pool, patient: Patient, panel_key: str, collected: datetime,
               route: str, seq: int) -> LabOrder:
    panel = vocab.LAB_PANELS[panel_key]
    values = []
    for key in panel.tests:
        test = vocab.LAB_TESTS[key]
        value = _clamp_round(rng.gauss(test.mean, test.sd), test.low * 0.4, test.decimals)
        values.append(LabValue(test, value, new_uuid(rng), rng.choice(test.hl7_units),
                               fhir_si=test.si_loinc is not None and (route == "both" or rng.random() < 0.5),
                               loinc_alt=rng.random() < 0.4))
    return LabOrder(
        id=new_uuid(rng), panel=panel,
        order_number=f"{_identifier(pool, 'order', patient.index * 1000 + seq, 10):010d}",
        collected=collected, resulted=collected + timedelta(minutes=rng.randint(40, 240)), route=route, values=values,
        phi_comment=rng.random() < 0.3, text_result=rng.random() < 0.25,
    )


def _fill_encounter(patient: Patient, enc: Encounter, rng: random.Random, pool: Pool, k: int, age_years: int) -> None:
    enc.vitals = _vitals(rng, enc.start + timedelta(minutes=rng.randint(5, 30)), age_years,
                         with_height=enc.klass == "outpatient" or rng.random() < 0.3)
    if enc.klass != "outpatient" and rng.random() < 0.35:
        enc.hl7_vitals = _vitals(rng, enc.start + timedelta(minutes=rng.randint(45, 110)), age_years, False)
    n_panels = {"outpatient": rng.choice([0, 0, 1]), "emergency": rng.choice([1, 1, 2]),
                "inpatient": rng.randint(1, 3)}[enc.klass]
    for j in range(n_panels):
        panel_key = rng.choices(["bmp", "cbc", "hba1c"], weights=[55, 35, 10])[0]
        route = rng.choices(["hl7", "fhir", "both"], weights=[62, 26, 12])[0]
        if route == "both":
            panel_key = "bmp"  # the harmonization case: glucose/creatinine in mg/dL by HL7, SI units by FHIR
        span = max(1, int((enc.end - enc.start).total_seconds() // 60) - 30)
        collected = enc.start + timedelta(minutes=rng.randint(10, span) if span > 10 else 10)
        collected = collected.replace(second=0)
        enc.labs.append(_lab_order(rng, pool, patient, panel_key, collected, route, k * 10 + j))
    if enc.klass == "inpatient" or (enc.klass == "emergency" and rng.random() < 0.4):
        code, display = rng.choice(vocab.PROCEDURES[1:])
        start = enc.start + timedelta(hours=rng.randint(1, 6))
        enc.procedures.append(ProcedureRecord(new_uuid(rng), code, display, start,
                                              start + timedelta(minutes=rng.randint(20, 180))))
    if enc.klass == "outpatient" and rng.random() < 0.3:
        enc.procedures.append(ProcedureRecord(new_uuid(rng), *vocab.PROCEDURES[0], enc.start, enc.end))
    p_imaging = {"outpatient": 0.08, "emergency": 0.35, "inpatient": 0.3}[enc.klass]
    if rng.random() < p_imaging:
        enc.studies.append(_study(rng, pool, patient, enc, len(enc.studies) + k * 10))
    if enc.klass == "outpatient" and rng.random() < 0.3:
        cvx, display = rng.choice(vocab.VACCINES)
        enc.immunizations.append(Immunization(new_uuid(rng), cvx, display, enc.start + timedelta(minutes=10)))
    if enc.klass != "outpatient" or rng.random() < 0.25:
        kind = "document" if enc.klass != "outpatient" or rng.random() < 0.5 else "observation"
        enc.notes.append(Note(new_uuid(rng), kind, _note_text(rng, patient, enc), enc.end))


def _study(rng: random.Random, pool: Pool, patient: Patient, enc: Encounter, seq: int) -> Study:
    modality = rng.choice(["CT", "MR", "CR", "US"] if enc.klass != "emergency" else ["CT", "CR", "CR", "US"])
    spec = vocab.IMAGING[modality]
    body_part = rng.choice(vocab.MODALITY_BODY_PARTS[modality])
    lo_s, hi_s = spec["series"]  # type: ignore[misc]
    lo_i, hi_i = spec["instances"]  # type: ignore[misc]
    study_uid = new_dicom_uid(rng)
    series = []
    for s in range(rng.randint(lo_s, hi_s)):
        # series and instance UIDs as sub-arcs of the study UID, as many modalities do
        series_uid = f"{study_uid}.{s + 1}"
        instances = [(f"{series_uid}.{i + 1}", i + 1) for i in range(rng.randint(lo_i, hi_i))]
        desc = f"{vocab.BODY_PARTS[body_part][2]} {rng.choice(['AXI', 'SAG', 'COR', 'OBL'])} {s + 1}"
        series.append(Series(series_uid, s + 1, desc, instances))
    time = (enc.start + timedelta(minutes=rng.randint(20, 120))).replace(second=rng.randint(0, 59))
    return Study(
        id=new_uuid(rng), uid=study_uid, modality=modality, body_part=body_part, time=time,
        accession=f"ACC{_identifier(pool, 'accession', patient.index * 100 + seq, 9):09d}",
        referring=enc.practitioner, series=series, dicomdir_layout=rng.random() < 0.35,
    )


def _note_text(rng: random.Random, patient: Patient, enc: Encounter) -> str:
    who = rng.choice([patient.full_name, f"{patient.prefix} {patient.family}".strip(),
                      f"{patient.family}, {patient.given}"])
    contact = rng.choice([f"Reachable at {patient.phone}.",
                          f"Call back number ({patient.phone[:3]}) {patient.phone[4:]}.",
                          f"Email on file: {patient.email}."])
    body = {
        "inpatient": f"{who} was admitted on {enc.start:%m/%d/%Y} and discharged on {enc.end:%m/%d/%Y}. "
                     f"Hospital course uneventful. MRN {patient.mrn}.",
        "emergency": f"{who} (DOB {patient.birth_date:%m/%d/%Y}) presented to the ED. Evaluated and treated; "
                     f"discharged home. Record {patient.mrn}.",
        "outpatient": f"Follow-up visit for {who}. Medications reviewed. Patient lives at {patient.address.line}, "
                      f"{patient.address.city}.",
    }[enc.klass]
    return f"{body} {contact} Seen by Dr. {enc.practitioner.family}."


def _attach_conditions_and_allergies(patient: Patient, rng: random.Random, chronic: list[vocab.Condition]) -> None:
    if not patient.encounters:
        return
    first = patient.encounters[0]
    for cond in chronic:
        record = ConditionRecord(new_uuid(rng), cond, first.start - timedelta(days=rng.randint(30, 3000)), first.id)
        first.conditions.append(record)
        _prescribe(rng, first, cond, record.id)
    for enc in patient.encounters:
        if enc.klass != "outpatient" or rng.random() < 0.2:
            cond = rng.choice(vocab.ACUTE_CONDITIONS)
            abated = enc.end + timedelta(days=rng.randint(3, 30))
            record = ConditionRecord(new_uuid(rng), cond, enc.start, enc.id, abated if abated < BASE_TIME else None)
            enc.conditions.append(record)
            _prescribe(rng, enc, cond, record.id)
    if rng.random() < 0.3:
        for code, display, category in rng.sample(vocab.ALLERGIES, k=rng.randint(1, 2)):
            patient.allergies.append(AllergyRecord(new_uuid(rng), code, display, category,
                                                   rng.choice(vocab.ALLERGY_REACTIONS), first.start, first.id))


def _prescribe(rng: random.Random, enc: Encounter, cond: vocab.Condition, condition_id: str) -> None:
    if cond.medications:
        med = vocab.MEDICATIONS[rng.choice(cond.medications)]
        enc.medications.append(MedicationOrder(new_uuid(rng), med, enc.start + timedelta(minutes=rng.randint(5, 60)),
                                               condition_id, "active" if cond.chronic else "completed"))


def _make_deceased(patient: Patient, rng: random.Random) -> None:
    if not patient.encounters:
        return
    last = patient.encounters[-1]
    if last.klass == "inpatient" and rng.random() < 0.6:
        last.discharge_expired = True
        patient.deceased = last.end
    else:
        death = last.end + timedelta(days=rng.randint(1, 120), hours=rng.randint(0, 23))
        patient.deceased = min(death, BASE_TIME - timedelta(hours=1)).replace(second=0, microsecond=0)


def build_population(patients: int, seed: int) -> tuple[Pool, list[Patient]]:
    pool = build_pool(seed)
    return pool, [build_patient(i, seed, pool) for i in range(patients)]
