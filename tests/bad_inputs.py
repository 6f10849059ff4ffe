"""Crafted broken input files and where each of their items must end up (Bronze table or quarantine + reason).

Every file is written under ``<landing>/crafted/``. Each item is identified as Bronze and quarantine rows are:
by source file and position (message index for HL7 v2, entry index or NDJSON line for FHIR, 0 for a whole file).
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

HUGE_OBX_BYTES = 5 * 1024 * 1024
DEEP_LEVELS = 5_000
CRAFTED_DIR = "crafted"

HL7V2 = "bronze.hl7v2_messages"
FHIR = "bronze.fhir_resources"
DICOM = "bronze.dicom_instances"
Q_HL7V2 = "quarantine.hl7v2"
Q_FHIR = "quarantine.fhir"
Q_LANDING = "quarantine.landing"
Q_DICOM = "quarantine.dicom"


@dataclass(frozen=True)
class Expect:
    table: str  # where the item must be
    position: int
    reason: str | None = None  # for a quarantine table: a fragment the reason must contain (case-insensitive)


@dataclass(frozen=True)
class Crafted:
    name: str  # file name under landing/crafted/
    content: bytes
    expect: tuple[Expect, ...]
    what: str  # one line: what is wrong with it


# Resources with wrongly typed primitives. Bronze keeps them verbatim; Silver must type each value or quarantine
# the row naming the field, never store NULL for a value that was sent. One resource per wrong field (otherwise
# plausible: MRN, subject, LOINC code), plus one Patient and one Observation with every primitive wrong at once.
_MRN = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "system": "urn:oid:2.16.840.1.113883.3.9999.1", "value": "BADIN-MRN-1"}
_PATIENT = {"resourceType": "Patient", "identifier": [_MRN], "active": True, "gender": "female",
            "birthDate": "1970-01-01", "name": [{"family": "Wrongtype", "given": ["Tess"]}]}
_OBSERVATION = {
    "resourceType": "Observation", "status": "final", "category": [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
    "effectiveDateTime": "2024-01-02T03:04:05Z",
    "valueQuantity": {"value": 95, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
}
WRONG_ONE_FIELD = {  # resource id -> (field as named in FHIR, patch)
    "badin-wt-birthdate": ("birthDate", {"birthDate": 12345}),
    "badin-wt-gender": ("gender", {"gender": 7}),
    "badin-wt-active": ("active", {"active": "yes"}),
    "badin-wt-value": ("value", {"valueQuantity": {**_OBSERVATION["valueQuantity"], "value": "high"}}),
    "badin-wt-effective": ("effectiveDateTime", {"effectiveDateTime": "yesterday"}),
}
WRONG_ALL_FIELDS = {"badin-wt-all-pt": ("birthDate", "gender", "active"),
                    "badin-wt-all-obs": ("effectiveDateTime", "value")}


def wrong_type_resources(patient_id: str) -> dict[str, dict[str, object]]:
    """resource id -> resource; Observations are about ``patient_id`` (a good patient of the landing)."""
    subject = {"subject": {"reference": f"Patient/{patient_id}"}}
    out: dict[str, dict[str, object]] = {}
    for rid, (name, patch) in WRONG_ONE_FIELD.items():
        base = _PATIENT if name in ("birthDate", "gender", "active") else {**_OBSERVATION, **subject}
        out[rid] = {**base, "id": rid, **patch}
    out["badin-wt-all-pt"] = {**_PATIENT, "id": "badin-wt-all-pt", "active": "yes", "gender": 7, "birthDate": 12345}
    out["badin-wt-all-obs"] = {**_OBSERVATION, **subject, "id": "badin-wt-all-obs", "effectiveDateTime": "yesterday",
                               "valueQuantity": {**_OBSERVATION["valueQuantity"], "value": "high"}}
    return out


def hl7_message(control_id: str, *, family: str = "Doe", obx_text: str = "normal") -> str:
    """One ORU^R01 2.5.1 message, CR-separated (as Bronze stores it)."""
    return "\r".join([
        f"MSH|^~\\&|LAB|BADIN|LH|LH|20240102030405||ORU^R01^ORU_R01|{control_id}|P|2.5.1|||||8859/1",
        f"PID|1||BADIN-{control_id}^^^GENHOSP^MR||{family}^Jürgen||19700101|M",
        f"OBX|1|TX|11526-1^Pathology study^LN||{obx_text}||||||F",
    ])


def _pretty(resource: dict[str, object]) -> bytes:
    return json.dumps(resource, indent=2, ensure_ascii=False).encode()


def _deep_resource() -> bytes:
    opening = '{"resourceType":"Patient","id":"badin-deep","extension":' + '[{"url":"x","extension":' * DEEP_LEVELS
    return (opening + "[]" + "}]" * DEEP_LEVELS + "}").encode()


def _deep_bundle() -> bytes:
    opening = '{"resourceType":"Bundle","type":"collection","entry":' + '[{"entry":' * DEEP_LEVELS
    return (opening + "[]" + "}]" * DEEP_LEVELS + "}").encode()


def _dicom(sop_uid: str, charset: str = "ISO_IR 100") -> bytes:
    """A small valid Part 10 file (2x2 8-bit image)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.PatientName, ds.PatientID, ds.Modality = "Müller^Hans", "BADIN-DCM", "OT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{sop_uid}.1", f"{sop_uid}.2"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 2, 2, 8, 1
    ds.PixelData = b"\0\1\2\3"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def crafted_files(patient_id: str, seed: int = 10) -> list[Crafted]:
    """The crafted files; ``patient_id`` is the FHIR id of a good patient the crafted Observations refer to."""
    rng = random.Random(seed)
    patient = {"resourceType": "Patient", "id": "badin-trunc", "name": [{"family": "Cut", "given": ["Off"]}]}
    nd_lines = [json.dumps({"resourceType": "Patient", "id": f"badin-nd-{i}", "gender": "female"}) for i in (1, 2)]
    latin_msg = hl7_message("BADIN-LATIN1", family="Müller")
    huge_text = "".join(rng.choice("ABCDEFGH ") for _ in range(1000)) * (HUGE_OBX_BYTES // 1000)
    huge = hl7_message("BADIN-HUGE", obx_text=huge_text) + "\r" + hl7_message("BADIN-AFTER-HUGE")
    high_bytes = bytes(rng.randrange(0x80, 0x100) for _ in range(3000))
    nul_garbage = b"\x00\x01\x02" + rng.randbytes(4000)
    nul_garbage = nul_garbage[:128] + b"\x00\x00\x00\x00" + nul_garbage[132:]  # never a DICM marker by accident
    rows_us = b"\x28\x00\x10\x00US\x02\x00\x02\x00"  # (0028,0010) Rows, US, length 2, value 2
    bad_length = _dicom("2.25.990001").replace(rows_us, b"\x28\x00\x10\x00US\x03\x00\x02\x00\x00")
    bad_bundle = {"resourceType": "Bundle", "type": 5, "id": 7,
                  "entry": [{"fullUrl": 3, "resource": {"resourceType": "Patient", "id": "badin-in-odd-bundle"}}]}
    return [
        Crafted("truncated.json", _pretty(patient)[:-25], (Expect(Q_FHIR, 0, "invalid json"),),
                "FHIR JSON cut off mid-document"),
        Crafted("truncated_last_line.ndjson", ("\n".join(nd_lines) + "\n" + nd_lines[0][:30] + "\n").encode(),
                (Expect(FHIR, 1), Expect(FHIR, 2), Expect(Q_FHIR, 3, "invalid json on line 3")),
                "NDJSON whose last line is cut off"),
        Crafted("garbage.bin", nul_garbage, (Expect(Q_LANDING, 0, "binary content"),), "binary garbage"),
        Crafted("garbage_high_bytes.hl7", high_bytes, (Expect(Q_LANDING, 0, "not hl7 v2"),),
                "garbage without NUL bytes, not valid UTF-8, with an .hl7 name"),
        Crafted("msh_then_garbage.hl7", b"MSH|" + high_bytes + b"\r",
                (Expect(Q_HL7V2, 0, "msh-2"),), "an MSH header followed by binary garbage"),
        Crafted("patient_utf16.json", json.dumps(patient).encode("utf-16"), (Expect(Q_LANDING, 0, "utf-16"),),
                "FHIR JSON encoded as UTF-16 with a BOM"),
        Crafted("patient_latin1.json", _pretty({**patient, "id": "badin-latin1", "name": [{"family": "Müller"}]})
                .decode().encode("latin-1"), (Expect(Q_FHIR, 0, "not utf-8"),), "FHIR JSON in ISO-8859-1"),
        Crafted("adt_latin1.hl7", latin_msg.encode("latin-1"), (Expect(HL7V2, 0),),
                "HL7 v2 in ISO-8859-1 (MSH-18 8859/1): must land with every byte kept"),
        Crafted("huge_obx.hl7", huge.encode(), (Expect(HL7V2, 0), Expect(HL7V2, 1)),
                "one message with a 5 MB OBX-5 text, then a normal message"),
        Crafted("deep_nested.json", _deep_resource(), (Expect(Q_FHIR, 0, "nested too deeply"),),
                f"a Patient with extensions nested {DEEP_LEVELS} levels deep"),
        Crafted("deep_nested_bundle.json", _deep_bundle(), (Expect(Q_FHIR, 0, "nested too deeply"),),
                f"a Bundle with entries nested {DEEP_LEVELS} levels deep"),
        Crafted("empty.json", b"", (Expect(Q_LANDING, 0, "empty file"),), "an empty file"),
        Crafted("zero_length.dcm", b"", (Expect(Q_LANDING, 0, "empty file"),), "a zero-length DICOM-named file"),
        Crafted("whitespace_only.hl7", b" \r\n\r\n\t\n", (Expect(Q_LANDING, 0, "not hl7 v2"),),
                "whitespace only"),
        Crafted("hl7_named_dcm.dcm", hl7_message("BADIN-IN-DCM").encode(), (Expect(HL7V2, 0),),
                "a good HL7 v2 message in a file named .dcm (format comes from content)"),
        Crafted("deep_line.ndjson", (nd_lines[0].replace("badin-nd-1", "badin-nd-deep") + "\n").encode()
                + _deep_resource() + b"\n", (Expect(FHIR, 1), Expect(Q_FHIR, 2, "nested too deeply")),
                "NDJSON whose second line is nested 5,000 levels deep"),
        Crafted("bundle_wrong_types.json", json.dumps(bad_bundle).encode(), (Expect(FHIR, 0),),
                "a Bundle whose type, id and fullUrl are numbers: its resource still lands"),
        Crafted("lone_surrogate_id.json", b'{"resourceType":"Patient","id":"badin-\\ud800-sur"}', (Expect(FHIR, 0),),
                "a Patient whose id is a lone UTF-16 surrogate escape (no valid Unicode)"),
        Crafted("msh_hash_separator.hl7", hl7_message("BADIN-HASH").replace("|", "#").encode(), (Expect(HL7V2, 0),),
                "HL7 v2 with '#' as field separator (any character is allowed)"),
        Crafted("dicm_then_garbage.dcm", b"\0" * 128 + b"DICM" + rng.randbytes(3000),
                (Expect(Q_DICOM, 0, "file meta"),), "a DICM marker followed by garbage"),
        Crafted("bad_value_length.dcm", bad_length, (Expect(Q_DICOM, 0, "(0028,0010)"),),
                "DICOM whose Rows (US) element has an odd length of 3"),
        Crafted("unknown_charset.dcm", _dicom("2.25.990002", "ISO_IR 999"), (Expect(DICOM, 0),),
                "DICOM declaring an unknown Specific Character Set (readable: a warning, not an error)"),
        *[Crafted(f"{rid}.json", _pretty(resource), (Expect(FHIR, 0),), f"{resource['resourceType']} with wrongly "
                  f"typed {', '.join(WRONG_ALL_FIELDS.get(rid) or WRONG_ONE_FIELD[rid][:1])}")
          for rid, resource in wrong_type_resources(patient_id).items()],
    ]


def write_crafted(landing: Path, items: list[Crafted]) -> dict[str, Crafted]:
    """Write the files; returns them by their source_file relative to the lakehouse root (landing's parent)."""
    folder = landing / CRAFTED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for item in items:
        (folder / item.name).write_bytes(item.content)
        out[f"{landing.name}/{CRAFTED_DIR}/{item.name}"] = item
    return out
