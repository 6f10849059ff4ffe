"""The in-memory synthetic population: one plain object graph that every writer (FHIR, HL7 v2, DICOM) renders.

Everything is derived from the seed: one `random.Random` per patient (so patients are independent of each other
and of N), identifiers from affine permutations (so they are unique without a shared registry), dates from BASE_TIME.
"""

from __future__ import annotations

import math
import random
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from synthetic import contacts, people, vocab

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
CANARY_SYSTEM = "https://fhir.genhosp.example.org/CodeSystem/post-discharge-follow-up"
CANARY_CODE = ("PDFU-SCORE", "Post-discharge follow-up call: symptom worsening score")

# The planted readmission signal. Each inpatient stay discharged alive is followed by an unplanned inpatient
# readmission 2-28 days later with probability sigmoid(READMISSION_INTERCEPT + sum(coefficient * feature)), the
# features taken as the pipeline computes them at discharge (gold/features.py): the Charlson index of the ICD-10
# diagnoses known by then, inpatient admissions in the 12 months before this one (capped at
# PRIOR_ADMISSIONS_CAP), length of stay in days, the last creatinine above / sodium below its reference range
# (at or before discharge, from up to 30 days before admission) and age at admission >= 75.
READMISSION_INTERCEPT = -9.3
READMISSION_COEFFICIENTS: dict[str, float] = {
    "charlson_index": 1.0,
    "prior_admissions_12m": 0.5,
    "length_of_stay_days": 0.5,
    "creatinine_high": 2.0,
    "sodium_low": 1.6,
    "age_75_plus": 1.6,
}
PRIOR_ADMISSIONS_CAP = 3
ENCOUNTER_MIX = {"outpatient": 52, "emergency": 20, "inpatient": 28}  # class weights of encounters not readmissions
READMISSION_DAYS = 30
LAB_LOOKBACK_DAYS = 30  # gold.features LAB_LOCF_DAYS: labs from up to 30 days before admission are carried forward


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
    weight_kg: float | None  # None: not weighed at this charting (rounds through a stay)
    height_cm: float | None
    ids: dict[str, str]  # vital name -> FHIR Observation id
    temp_in_f: bool = False  # FHIR side: some sources chart [degF] / [lb_av]
    weight_in_lb: bool = False
    hl7_units: dict[str, str] = field(default_factory=dict)  # HL7 side: the unit spelling used per vital
    route: str = "fhir"  # rounds: "fhir" (Observations) or "hl7" (ORU^R01 from the bedside monitor), never both
    order_suffix: str = ""  # rounds sent by HL7: OBR-2 is VS<visit number><suffix>, one order per charting


@dataclass
class Canary:
    """A leakage canary: a score recorded only after discharge (a follow-up call) that predicts the readmission."""

    id: str
    time: datetime
    value: int


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
    readmission: bool = False  # this stay is an unplanned readmission (admitted within 30 days of a discharge)
    readmitted: bool = False  # a readmission followed this stay within 30 days (the label of this index stay)
    readmission_risk: float | None = None  # the planted probability of `readmitted` (inpatient stays)
    risk_features: dict[str, float] = field(default_factory=dict)  # the features the probability came from
    canary: Canary | None = None
    discharge_expired: bool = False
    update_time: datetime | None = None  # an ADT^A08 during the stay
    conditions: list[ConditionRecord] = field(default_factory=list)
    vitals: Vitals | None = None
    hl7_vitals: Vitals | None = None
    rounds: list[Vitals] = field(default_factory=list)  # vitals charted through an inpatient stay, after admission
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
    counts = [0, 1, 1, 2, 2, 3, 4] if age_years < 65 else [1, 2, 2, 3, 3, 4, 5]  # multimorbidity grows with age
    chronic = rng.sample(vocab.CHRONIC_CONDITIONS, k=rng.choice(counts) if adult else 0)
    _build_encounters(patient, rng, pool, age_years, chronic)
    _attach_conditions_and_allergies(patient, rng, chronic)
    if rng.random() < 0.04 or (age_years >= 90 and rng.random() < 0.2):
        _make_deceased(patient, rng)
    _plant_canaries(patient, rng)
    return patient


def _build_encounters(patient: Patient, rng: random.Random, pool: Pool, age_years: int,
                      chronic: list[vocab.Condition]) -> None:
    t = BASE_TIME - timedelta(days=HISTORY_DAYS - rng.randint(0, 120))
    born = datetime.combine(patient.birth_date, time(8, 0), tzinfo=LOCAL_TZ) + timedelta(days=1)
    t = max(t, born)  # newborns: nothing before birth
    wanted = rng.randint(2, 7)
    lab_means = _lab_means(chronic)
    readmit_next = False
    k = 0
    while k < 60:
        if readmit_next:
            klass = "inpatient"
        elif k >= wanted:
            break
        else:
            klass = rng.choices(list(ENCOUNTER_MIX), weights=list(ENCOUNTER_MIX.values()))[0]
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
            organization=org, location=_location(rng, klass), readmission=readmit_next,
        )
        if klass == "inpatient" and rng.random() < 0.4:
            enc.update_time = start + timedelta(hours=rng.randint(2, 20))
        _fill_encounter(patient, enc, rng, pool, k, age_years, lab_means)
        _diagnose(enc, rng)
        patient.encounters.append(enc)
        k += 1
        readmit_next = False
        if klass == "inpatient":
            enc.risk_features = risk_features(patient, enc, chronic)
            enc.readmission_risk = readmission_probability(enc.risk_features)
            readmit_next = rng.random() < enc.readmission_risk
        if readmit_next:
            t = end + timedelta(days=rng.randint(2, 28))
        else:  # keep inpatient stays without a drawn readmission more than 30 days from the next inpatient stay
            t = end + timedelta(days=rng.randint(31 if klass == "inpatient" else 7, 200))
    last: Encounter | None = None
    for enc in patient.encounters:  # what the data show (a drawn readmission after BASE_TIME never happened)
        if enc.klass == "inpatient":
            enc.readmission = last is not None and enc.start - last.end <= timedelta(days=READMISSION_DAYS)
            if last is not None:
                last.readmitted = enc.readmission
            last = enc


def _lab_means(chronic: list[vocab.Condition]) -> dict[str, tuple[float, float]]:
    """Per-patient (mean, sd) of labs that chronic disease moves: CKD raises creatinine, heart failure lowers sodium."""
    codes = {c.icd10 for c in chronic}
    means = {}
    if "N18.30" in codes:
        means["creatinine"] = (1.9, 0.6)
    if "I50.9" in codes:
        means["sodium"] = (135.0, 4.0)
    return means


def charlson(codes: set[str]) -> int:
    """Charlson index of ICD-10 codes (vocab.CHARLSON: the Quan 2005 categories of the codes the generator uses)."""
    return sum(dict(vocab.CHARLSON[c] for c in codes if c in vocab.CHARLSON).values())


def _last_lab(patient: Patient, enc: Encounter, key: str) -> float | None:
    """The last value of a lab at or before discharge, from up to LAB_LOOKBACK_DAYS before admission."""
    since = enc.start - timedelta(days=LAB_LOOKBACK_DAYS)
    values = [(lab.collected, lv.value) for e in patient.encounters for lab in e.labs for lv in lab.values
              if lv.test.key == key and since <= lab.collected <= enc.end]
    return max(values, key=lambda v: v[0])[1] if values else None


def risk_features(patient: Patient, enc: Encounter, chronic: list[vocab.Condition]) -> dict[str, float]:
    """The planted model's inputs for an inpatient stay, as of its discharge (see READMISSION_COEFFICIENTS)."""
    codes = {c.icd10 for c in chronic} | {c.condition.icd10 for e in patient.encounters for c in e.conditions
                                          if c.onset <= enc.end}
    prior = sum(1 for e in patient.encounters if e is not enc and e.klass == "inpatient"
                and enc.start - timedelta(days=365) <= e.start < enc.start)
    birth = patient.birth_date
    day = enc.start.date()
    age = day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
    creatinine, sodium = _last_lab(patient, enc, "creatinine"), _last_lab(patient, enc, "sodium")
    tests = vocab.LAB_TESTS
    return {
        "charlson_index": float(charlson(codes)),
        "prior_admissions_12m": float(min(prior, PRIOR_ADMISSIONS_CAP)),
        "length_of_stay_days": round((enc.end - enc.start).total_seconds() / 86400, 4),
        "creatinine_high": float(creatinine is not None and creatinine > tests["creatinine"].high),
        "sodium_low": float(sodium is not None and sodium < tests["sodium"].low),
        "age_75_plus": float(age >= 75),
    }


def readmission_probability(features: dict[str, float]) -> float:
    logit = READMISSION_INTERCEPT + sum(READMISSION_COEFFICIENTS[k] * v for k, v in features.items())
    return 1.0 / (1.0 + math.exp(-logit))


def _location(rng: random.Random, klass: str) -> str:
    if klass == "inpatient":
        return f"{rng.choice(['4W', '5E', '6N', 'ICU'])}^{rng.randint(401, 460)}^{rng.choice('AB')}"
    if klass == "emergency":
        return f"ED^{rng.randint(1, 30)}^A"
    return f"CLINIC^{rng.randint(1, 12)}^A"


def _hl7_units(rng: random.Random) -> dict[str, str]:
    return {"heart_rate": rng.choice(["bpm", "/min"]), "bp": rng.choice(["mm[Hg]", "mmHg"]),
            "temperature": rng.choice(["degF", "F"]), "weight": rng.choice(["lb", "lbs", "kg"]), "spo2": "%"}


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
        temp_in_f=rng.random() < 0.2, weight_in_lb=rng.random() < 0.2, hl7_units=_hl7_units(rng),
    )


def _vitals_round(rng: random.Random, base: Vitals, time: datetime, route: str, n: int) -> Vitals:
    """A charting of heart rate, blood pressure, temperature and SpO2 around the patient's admission values."""
    ids = {name: new_uuid(rng) for name in ("heart_rate", "blood_pressure", "temperature", "spo2")}
    return Vitals(
        time=time, heart_rate=int(_clamp_round(base.heart_rate + rng.gauss(0, 7), 40, 0)),
        systolic=int(_clamp_round(base.systolic + rng.gauss(0, 9), 85, 0)),
        diastolic=int(_clamp_round(base.diastolic + rng.gauss(0, 6), 45, 0)),
        temp_c=_clamp_round(base.temp_c + rng.gauss(0, 0.3), 35.0, 1),
        spo2=min(100, int(_clamp_round(base.spo2 + rng.gauss(0, 1.2), 82, 0))),
        weight_kg=None, height_cm=None, ids=ids, temp_in_f=rng.random() < 0.2, hl7_units=_hl7_units(rng),
        route=route, order_suffix=f"-{n}" if route == "hl7" else "",
    )


def _vital_rounds(rng: random.Random, enc: Encounter, base: Vitals) -> list[Vitals]:
    """Vitals every 8-23 h after admission, by the EHR (FHIR) or the bedside monitor (HL7), and discharge vitals
    in the EHR 30-150 min before discharge (so every stay has vitals in the 24 h before its discharge)."""
    discharge = (enc.end - timedelta(minutes=rng.randint(30, 150))).replace(second=0)
    rounds: list[Vitals] = []
    t = base.time
    while True:
        t = t + timedelta(hours=rng.randint(8, 22), minutes=rng.choice([0, 10, 20, 30, 40, 50]))
        if t >= discharge - timedelta(hours=2):
            break
        route = rng.choices(["fhir", "hl7"], weights=[55, 45])[0]
        rounds.append(_vitals_round(rng, base, t, route, len(rounds) + 1))
    rounds.append(_vitals_round(rng, base, discharge, "fhir", len(rounds) + 1))
    return rounds


def _lab_order(rng: random.Random, pool: Pool, patient: Patient, panel_key: str, collected: datetime,
               route: str, seq: int, means: dict[str, tuple[float, float]]) -> LabOrder:
    panel = vocab.LAB_PANELS[panel_key]
    values = []
    for key in panel.tests:
        test = vocab.LAB_TESTS[key]
        mean, sd = means.get(key, (test.mean, test.sd))
        value = _clamp_round(rng.gauss(mean, sd), test.low * 0.4, test.decimals)
        values.append(LabValue(test, value, new_uuid(rng), rng.choice(test.hl7_units),
                               fhir_si=test.si_loinc is not None and (route == "both" or rng.random() < 0.5),
                               loinc_alt=rng.random() < 0.4))
    return LabOrder(
        id=new_uuid(rng), panel=panel,
        order_number=f"{_identifier(pool, 'order', patient.index * 1000 + seq, 10):010d}",
        collected=collected, resulted=collected + timedelta(minutes=rng.randint(40, 240)), route=route, values=values,
        phi_comment=rng.random() < 0.3, text_result=rng.random() < 0.25,
    )


def _fill_encounter(patient: Patient, enc: Encounter, rng: random.Random, pool: Pool, k: int, age_years: int,
                    lab_means: dict[str, tuple[float, float]]) -> None:
    enc.vitals = _vitals(rng, enc.start + timedelta(minutes=rng.randint(5, 30)), age_years,
                         with_height=enc.klass == "outpatient" or rng.random() < 0.3)
    if enc.klass != "outpatient" and rng.random() < 0.35:
        enc.hl7_vitals = _vitals(rng, enc.start + timedelta(minutes=rng.randint(45, 110)), age_years, False)
    if enc.klass == "inpatient":
        enc.rounds = _vital_rounds(rng, enc, enc.vitals)
    n_panels = {"outpatient": rng.choice([0, 0, 1]), "emergency": rng.choice([1, 1, 2]),
                "inpatient": rng.randint(1, 3)}[enc.klass]
    for j in range(n_panels):
        panel_key = rng.choices(["bmp", "cbc", "hba1c"], weights=[55, 35, 10])[0]
        if enc.klass == "inpatient" and j == 0:
            panel_key = "bmp"  # every admission gets a metabolic panel
        route = rng.choices(["hl7", "fhir", "both"], weights=[62, 26, 12])[0]
        if route == "both":
            panel_key = "bmp"  # the harmonization case: glucose/creatinine in mg/dL by HL7, SI units by FHIR
        span = max(1, int((enc.end - enc.start).total_seconds() // 60) - 30)
        collected = enc.start + timedelta(minutes=rng.randint(10, span) if span > 10 else 10)
        collected = collected.replace(second=0)
        enc.labs.append(_lab_order(rng, pool, patient, panel_key, collected, route, k * 10 + j, lab_means))
    if enc.klass == "inpatient" or (enc.klass == "emergency" and rng.random() < 0.4):
        # an unplanned readmission gets no potentially planned procedure (CMS planned-readmission algorithm)
        code, display = vocab.UNPLANNED_PROCEDURE if enc.readmission else rng.choice(vocab.PROCEDURES[1:])
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
    return f"{body} {contact} Seen by Dr. {enc.practitioner.family}." + contacts.note_sentences(patient, enc)


def _diagnose(enc: Encounter, rng: random.Random) -> None:
    """The encounter's acute diagnosis (an unplanned readmission's is an acute one of READMISSION_DIAGNOSES)."""
    if enc.klass != "outpatient" or rng.random() < 0.2:
        cond = rng.choice(vocab.READMISSION_DIAGNOSES if enc.readmission else vocab.ACUTE_CONDITIONS)
        abated = enc.end + timedelta(days=rng.randint(3, 30))
        record = ConditionRecord(new_uuid(rng), cond, enc.start, enc.id, abated if abated < BASE_TIME else None)
        enc.conditions.append(record)
        _prescribe(rng, enc, cond, record.id)


def _attach_conditions_and_allergies(patient: Patient, rng: random.Random, chronic: list[vocab.Condition]) -> None:
    if not patient.encounters:
        return
    first = patient.encounters[0]
    records = []
    for cond in chronic:
        record = ConditionRecord(new_uuid(rng), cond, first.start - timedelta(days=rng.randint(30, 3000)), first.id)
        records.append(record)
        _prescribe(rng, first, cond, record.id)
    first.conditions[:0] = records  # the problem list before the encounter's acute diagnosis
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


def _plant_canaries(patient: Patient, rng: random.Random) -> None:
    """A follow-up call 4-30 h after each inpatient discharge (before the next encounter) scores how much worse the
    patient feels: high when the stay is readmitted. Recorded only after discharge, so point-in-time features never
    see it; a leaky pipeline would (the canary's own AUROC is near 1)."""
    encounters = patient.encounters
    for i, enc in enumerate(encounters):
        if enc.klass != "inpatient" or enc.discharge_expired:
            continue
        earliest = enc.end + timedelta(hours=4)
        limit = min(enc.end + timedelta(hours=30), BASE_TIME - timedelta(hours=1))
        if i + 1 < len(encounters):
            limit = min(limit, encounters[i + 1].start - timedelta(hours=2))
        if patient.deceased is not None:
            limit = min(limit, patient.deceased - timedelta(hours=1))
        if limit <= earliest:
            continue
        when = (earliest + (limit - earliest) * rng.random()).replace(second=0, microsecond=0)
        value = int(min(10, max(0, round(rng.gauss(7.0 if enc.readmitted else 2.5, 1.5)))))
        enc.canary = Canary(new_uuid(rng), when, value)


def build_population(patients: int, seed: int) -> tuple[Pool, list[Patient]]:
    pool = build_pool(seed)
    return pool, [build_patient(i, seed, pool) for i in range(patients)]
