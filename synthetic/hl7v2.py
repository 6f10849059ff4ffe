"""Render the population as HL7 v2 feeds: ADT^A01/A03/A04/A08 and ORU^R01, v2.3 to v2.5.1, in files of many messages.

Each file is one export of one interface (ADT or lab) with its own version, line endings, BOM and batch envelope,
because that is how real feeds differ from each other.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from synthetic import contacts, model, vocab
from synthetic.fhir import interpretation_flag
from synthetic.model import Encounter, LabOrder, Patient, Pool, Vitals

VERSIONS = ("2.3", "2.4", "2.5", "2.5.1")
EXTENSIONS = (".hl7", ".txt", ".dat", "", ".hl7", ".HL7")
LINE_ENDINGS = {"CR": "\r", "CRLF": "\r\n", "LF": "\n"}
STRUCTURE = {"A01": "ADT_A01", "A04": "ADT_A01", "A08": "ADT_A01", "A03": "ADT_A03", "R01": "ORU_R01"}
AUTH = model.ASSIGNING_AUTHORITY


def escape(text: str) -> str:
    """HL7 v2 escaping of the delimiters (with the default encoding characters ^~\\&)."""
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
            .replace("&", "\\T\\").replace("~", "\\R\\"))


def hl7_ts(value: datetime, version: str) -> str:
    # 2.5+ feeds send the UTC offset; older interfaces send local time without it.
    return value.strftime("%Y%m%d%H%M%S") + (value.strftime("%z") if version in ("2.5", "2.5.1") else "")


@dataclass
class Event:
    time: datetime
    feed: str  # "adt" or "lab"
    trigger: str
    patient: Patient
    encounter: Encounter
    order: int
    lab: LabOrder | None = None
    vitals: Vitals | None = None

    @property
    def message_type(self) -> str:
        return f"{'ORU' if self.trigger == 'R01' else 'ADT'}^{self.trigger}"


@dataclass(frozen=True)
class FileStyle:
    version: str
    eol: str  # key of LINE_ENDINGS
    bom: bool
    envelope: bool
    local_system: str  # coding system name of local lab codes in OBX-3 / OBR-4
    hd_subcomponents: bool  # assigning authority as HD with subcomponents (GENHOSP&oid&ISO)
    z_segments: bool
    ssn_repetition: bool  # PID-3 repeats the SSN as a second identifier


@dataclass
class Message:
    control_id: str
    message_type: str
    version: str
    segments: list[str]
    event: Event | None = None
    kind: str = "good"  # "good", or the bad/duplicate kind planted by bad_items
    note: dict[str, object] = field(default_factory=dict)


@dataclass
class HL7File:
    path: str  # relative to the landing dir
    feed: str
    style: FileStyle
    messages: list[Message]

    def to_bytes(self, sending_app: str, created: datetime) -> bytes:
        eol = LINE_ENDINGS[self.style.eol]
        lines: list[str] = []
        if self.style.envelope:
            stamp = hl7_ts(created, self.style.version)
            name = self.path.rsplit("/", 1)[-1]
            lines.append(f"FHS|^~\\&|{sending_app}|{AUTH}|LAKEHOUSE|{AUTH}|{stamp}||{name}")
            lines.append(f"BHS|^~\\&|{sending_app}|{AUTH}|LAKEHOUSE|{AUTH}|{stamp}")
        for msg in self.messages:
            lines += msg.segments
        if self.style.envelope:
            lines += [f"BTS|{len(self.messages)}", "FTS|1"]
        data = (eol.join(lines) + eol).encode()
        return b"\xef\xbb\xbf" + data if self.style.bom else data


def build_events(patients: list[Patient]) -> list[Event]:
    events: list[Event] = []
    for p in patients:
        for e in p.encounters:
            first = "A01" if e.klass == "inpatient" else "A04"
            events.append(Event(e.start, "adt", first, p, e, 0))
            if e.update_time:
                events.append(Event(e.update_time, "adt", "A08", p, e, 1))
            if e.klass != "outpatient":
                events.append(Event(e.end, "adt", "A03", p, e, 9))
            for j, lab in enumerate(e.labs):
                if lab.route != "fhir":
                    events.append(Event(lab.resulted, "lab", "R01", p, e, 2 + j, lab=lab))
            if e.hl7_vitals:
                events.append(Event(e.hl7_vitals.time, "lab", "R01", p, e, 8, vitals=e.hl7_vitals))
            for v in e.rounds:
                if v.route == "hl7":
                    events.append(Event(v.time, "lab", "R01", p, e, 8, vitals=v))
    events.sort(key=lambda ev: (ev.time, ev.patient.index, ev.order))
    return events


def file_style(rng: random.Random, n: int) -> FileStyle:
    """Style of the n-th file overall: cycled so that even a handful of files shows every variant."""
    return FileStyle(
        version=VERSIONS[n % 4], eol=("CR", "CRLF", "LF")[n % 3], bom=n % 5 == 2, envelope=n % 4 == 1,
        local_system=rng.choice(["L", "99GHL"]), hd_subcomponents=n % 3 == 0, z_segments=n % 2 == 0,
        ssn_repetition=n % 3 == 2,
    )


def _cx(value: str, type_code: str, style: FileStyle, pool: Pool) -> str:
    authority = f"{AUTH}&{pool.hospital.identifier}&ISO" if style.hd_subcomponents else AUTH
    return f"{value}^^^{authority}^{type_code}"


def _xcn(p: model.Practitioner) -> str:
    return f"{p.npi}^{escape(p.family)}^{escape(p.given)}^^^Dr.^^^NPI"


def _phone_xtn(phone: str, version: str) -> str:
    area, exchange, line = phone.split("-")
    if version == "2.3":
        return f"({area}){exchange}-{line}^PRN^PH"
    return f"^PRN^PH^^1^{area}^{exchange}{line}"


def pid_segment(p: Patient, ev_time: datetime, style: FileStyle, pool: Pool) -> str:
    v = style.version
    ids = _cx(p.mrn, "MR", style, pool)
    if style.ssn_repetition:
        ids += "~" + f"{p.ssn.replace('-', '')}^^^USSSA^SS"
    a = p.address
    fields = [""] * 31
    fields[1] = "1"
    fields[3] = ids
    fields[5] = f"{escape(p.family)}^{escape(p.given)}^{p.middle}^^{p.prefix}^^L"
    fields[7] = p.birth_date.strftime("%Y%m%d")
    fields[8] = "M" if p.gender == "male" else "F"
    fields[11] = f"{escape(a.line)}^^{escape(a.city)}^{a.state}^{a.zip}^USA^H"
    fields[13] = f"{_phone_xtn(p.phone, v)}~^NET^Internet^{p.email}"
    fields[16] = p.marital
    fields[19] = p.ssn
    if p.deceased is not None and p.deceased <= ev_time:
        fields[29] = hl7_ts(p.deceased, v)
        fields[30] = "Y"
    return "PID|" + "|".join(fields[1:]).rstrip("|")


def pv1_segment(ev: Event, style: FileStyle, pool: Pool) -> str:
    e = ev.encounter
    fields = [""] * 46
    fields[1] = "1"
    fields[2] = vocab.ENCOUNTER_TYPES[e.klass][3]
    fields[3] = f"{e.location}^{AUTH}"
    fields[4] = {"inpatient": "U" if e.readmission else "R", "emergency": "E", "outpatient": "R"}[e.klass]
    fields[7] = _xcn(e.practitioner)
    fields[10] = {"inpatient": "MED", "emergency": "EM", "outpatient": "OP"}[e.klass]
    fields[19] = _cx(e.visit_number, "VN", style, pool)
    fields[44] = hl7_ts(e.start, style.version)
    if ev.trigger == "A03":
        fields[36] = "20" if e.discharge_expired else "01"
        fields[45] = hl7_ts(e.end, style.version)
    return "PV1|" + "|".join(fields[1:]).rstrip("|")


def msh_segment(ev_time: datetime, message_type: str, trigger: str, control_id: str, style: FileStyle,
                sending_app: str) -> str:
    v = style.version
    mtype = message_type if v == "2.3" else f"{message_type}^{STRUCTURE[trigger]}"
    msh = f"MSH|^~\\&|{sending_app}|{AUTH}|LAKEHOUSE|{AUTH}|{hl7_ts(ev_time, v)}||{mtype}|{control_id}|P|{v}"
    if v in ("2.5", "2.5.1"):
        msh += "|||AL|NE|USA|UNICODE UTF-8"
    return msh


def nk1_segment(p: Patient, style: FileStyle) -> str:
    c = contacts.next_of_kin(p)
    code, display, _ = c.relation
    return (f"NK1|1|{escape(c.family)}^{escape(c.given)}|{code}^{display}^HL70063|{escape(c.line)}^^"
            f"{escape(c.city)}^{c.state}^{c.zip}^USA|{_phone_xtn(c.phone, style.version)}")


def _adt_segments(ev: Event, style: FileStyle, pool: Pool) -> list[str]:
    p, e = ev.patient, ev.encounter
    segs = [f"EVN|{ev.trigger}|{hl7_ts(ev.time, style.version)}", pid_segment(p, ev.time, style, pool),
            pv1_segment(ev, style, pool)]
    if ev.trigger in ("A01", "A04"):  # next of kin: between PID and PV1 (ADT_A01 structure)
        segs.insert(2, nk1_segment(p, style))
    if ev.trigger in ("A01", "A04"):
        for i, al in enumerate(p.allergies if e is p.encounters[0] else [], start=1):
            type_code = {"medication": "DA", "food": "FA", "environment": "EA"}[al.category]
            segs.append(f"AL1|{i}|{type_code}|{al.code}^{escape(al.display)}^SCT|MO|{escape(al.reaction[1])}~Itching")
    if ev.trigger in ("A01", "A03", "A08"):
        for i, c in enumerate(e.conditions, start=1):
            cond = c.condition
            segs.append(f"DG1|{i}||{cond.icd10}^{escape(cond.display)}^I10||{hl7_ts(c.onset, style.version)}|"
                        f"{'F' if ev.trigger == 'A03' else 'W'}")
    if style.z_segments:
        segs.append(f"ZPI|1|{escape(p.given)}|{p.email}|VIP^N|EN^English")
    return segs


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _lab_segments(ev: Event, style: FileStyle, pool: Pool) -> list[str]:
    lab = ev.lab
    assert lab is not None
    p, e, v = ev.patient, ev.encounter, style.version
    panel = lab.panel
    collected, resulted = hl7_ts(lab.collected, v), hl7_ts(lab.resulted, v)
    segs = [pid_segment(p, ev.time, style, pool), pv1_segment(ev, style, pool),
            f"ORC|RE|{lab.order_number}^EHR|{lab.order_number}^LAB|||CM||||||{_xcn(e.practitioner)}",
            f"OBR|1|{lab.order_number}^EHR|{lab.order_number}^LAB|{panel.local_code}^{escape(panel.display)}^"
            f"{style.local_system}^{panel.loinc}^{escape(panel.display)}^LN|||{collected}|||||||{collected}||"
            f"{_xcn(e.practitioner)}||||||{resulted}|||F"]
    if lab.phi_comment:
        segs.append(f"NTE|1|L|Results called to {escape(p.full_name)} at {p.phone}\\.br\\Read back verified, "
                    f"MRN {p.mrn}.")
    for i, lv in enumerate(lab.values, start=1):
        t = lv.test
        obs_id = f"{t.local_code}^{escape(t.local_name)}^{style.local_system}"
        if lv.loinc_alt:
            obs_id += f"^{t.loinc}^{escape(t.loinc_display)}^LN"
        flag = interpretation_flag(t, lv.value)
        segs.append(f"OBX|{i}|NM|{obs_id}||{_fmt(lv.value, t.decimals)}|{lv.hl7_unit}|"
                    f"{_fmt(t.low, t.decimals)}-{_fmt(t.high, t.decimals)}|{'' if flag == 'N' else flag}|||F|||"
                    f"{collected}")
    if lab.text_result:
        raw = (f"Results reviewed with {p.full_name} & family; call {p.phone} | ref {p.mrn} ^ recheck in 5~10 days, "
               f"file C:\\LAB\\{lab.order_number}")
        if v in ("2.5", "2.5.1"):
            value, vtype = escape(raw).replace("; ", ";\\.br\\"), "FT"
        else:
            value, vtype = "~".join(escape(part) for part in raw.split("; ")), "TX"
        segs.append(f"OBX|{len(lab.values) + 1}|{vtype}|COMMENT^Lab comment^{style.local_system}||{value}||||||F")
    return segs


_HL7_VITALS = [  # local code, name, LOINC, vitals key
    ("HR", "Heart rate", "8867-4", "heart_rate"), ("SBP", "Systolic BP", "8480-6", "bp"),
    ("DBP", "Diastolic BP", "8462-4", "bp"), ("TEMP", "Temperature", "8310-5", "temperature"),
    ("SPO2", "SpO2", "59408-5", "spo2"), ("WT", "Weight", "29463-7", "weight"),
]


def _vitals_segments(ev: Event, style: FileStyle, pool: Pool, order_number: str) -> list[str]:
    vit = ev.vitals
    assert vit is not None
    p, v = ev.patient, style.version
    when = hl7_ts(vit.time, v)
    segs = [pid_segment(p, ev.time, style, pool), pv1_segment(ev, style, pool),
            f"OBR|1|{order_number}^EHR||VS^Vital signs^{style.local_system}^{vocab.VITALS_PANEL[0]}^"
            f"{escape(vocab.VITALS_PANEL[1])}^LN|||{when}||||||||||||||{when}|||F"]
    weight_unit = vit.hl7_units["weight"]
    values = {"HR": str(vit.heart_rate), "SBP": str(vit.systolic), "DBP": str(vit.diastolic),
              "TEMP": _fmt(vit.temp_c * 9 / 5 + 32, 1), "SPO2": str(vit.spo2)}
    if vit.weight_kg is not None:
        values["WT"] = _fmt(vit.weight_kg, 1) if weight_unit == "kg" else _fmt(vit.weight_kg * 2.20462, 1)
    charted = [row for row in _HL7_VITALS if row[0] in values]
    for i, (code, name, loinc, key) in enumerate(charted, start=1):
        segs.append(f"OBX|{i}|NM|{code}^{name}^{style.local_system}^{loinc}^{name}^LN||{values[code]}|"
                    f"{vit.hl7_units[key]}||||||F|||{when}")
    return segs


def sending_app(ev: Event) -> str:
    return "HIS_ADT" if ev.feed == "adt" else "VITALS_MON" if ev.vitals else "LIS_LAB"


def render(ev: Event, control_id: str, style: FileStyle, pool: Pool) -> Message:
    msh = msh_segment(ev.time, ev.message_type, ev.trigger, control_id, style, sending_app(ev))
    if ev.trigger != "R01":
        body = _adt_segments(ev, style, pool)
    elif ev.lab is not None:
        body = _lab_segments(ev, style, pool)
    else:
        body = _vitals_segments(ev, style, pool, f"VS{ev.encounter.visit_number}{ev.vitals.order_suffix}")
    return Message(control_id, ev.message_type, style.version, [msh, *body], event=ev)


@dataclass
class FeedCounters:
    """Numbering that continues across cohorts: files per feed, files overall, messages per feed."""

    files: dict[str, int] = field(default_factory=lambda: {"adt": 0, "lab": 0})
    files_total: int = 0
    messages: dict[str, int] = field(default_factory=lambda: {"adt": 0, "lab": 0})


def build_files(events: list[Event], pool: Pool, seed: int, counters: FeedCounters) -> list[HL7File]:
    files: list[HL7File] = []
    for feed in ("adt", "lab"):
        feed_events = [ev for ev in events if ev.feed == feed]
        start = 0
        while start < len(feed_events):
            n = counters.files[feed]
            rng = random.Random(f"synthetic:{seed}:hl7file:{feed}:{n}")
            size = rng.randint(5, 50)
            style = file_style(rng, counters.files_total)
            chunk = feed_events[start:start + size]
            messages = []
            for ev in chunk:
                counters.messages[feed] += 1
                messages.append(render(ev, f"{feed.upper()}{counters.messages[feed]:08d}", style, pool))
            ext = EXTENSIONS[counters.files_total % len(EXTENSIONS)]
            files.append(HL7File(f"hl7v2/{feed}_{chunk[0].time:%Y%m%d}_{n:04d}{ext}", feed, style, messages))
            start += size
            counters.files[feed] += 1
            counters.files_total += 1
    return files
