"""The synthetic hospital data generator: determinism, validity per standard library, ground truth, bad items."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import hl7
import pydicom
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from pydicom.errors import InvalidDicomError

from synthetic import FACILITY_PATH, MANIFEST_PATH, generate, generate_address_changes, generator
from synthetic.model import build_population

N, SEED, BAD_RATE = 20, 11, 0.1
# Resource types our bundles use beyond those in the Synthea fixtures (newer Synthea versions emit it too).
SUPERSET_TYPES = {"DocumentReference"}
URN_UUID = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENVELOPE = ("FHS", "BHS", "BTS", "FTS")

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module", params=[generator.COHORT_SIZE, 7], ids=["one-cohort", "cohorts-of-7"])
def landing(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The generated landing dir, once as one cohort and once in cohorts of 7 (the large-N code path)."""
    out = tmp_path_factory.mktemp("synthetic") / "landing"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generator, "COHORT_SIZE", request.param)
        generate(patients=N, seed=SEED, out=out, bad_rate=BAD_RATE, ndjson=True)
        yield out


@pytest.fixture(scope="module")
def truth(landing: Path) -> dict[str, Any]:
    return json.loads((landing / MANIFEST_PATH).read_text())


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _bad_positions(truth: dict[str, Any], key: str) -> set[tuple[str, int]]:
    items = truth["bad_items"] + truth["duplicates"]
    return {(b["file"], b[key]) for b in items if key in b}


def _hl7_messages(path: Path) -> list[str]:
    """Split a feed file into messages (CR-joined), whatever its BOM, line endings and batch envelope."""
    text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\r").replace("\n", "\r")
    messages: list[list[str]] = []
    for seg in filter(None, text.split("\r")):
        if seg[:3] in ENVELOPE:
            continue
        if seg.startswith("MSH"):
            messages.append([seg])
        else:
            assert messages, f"segment before the first MSH in {path}"
            messages[-1].append(seg)
    return ["\r".join(m) for m in messages]


def _bundle_entries(landing: Path, rel: str) -> list[dict[str, Any]]:
    return json.loads((landing / rel).read_text())["entry"]


def _references(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        found = [obj["reference"]] if isinstance(obj.get("reference"), str) else []
        return found + [r for k, v in obj.items() if k != "reference" for r in _references(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in _references(v)]
    return []


def test_same_seed_same_bytes_different_seed_differs(landing: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(patients=N, seed=SEED, out=again, bad_rate=BAD_RATE, ndjson=True)
    assert _tree(again) == _tree(landing)
    other = tmp_path / "other"
    generate(patients=N, seed=SEED + 1, out=other, bad_rate=BAD_RATE, ndjson=True)
    a, b = _tree(landing), _tree(other)
    assert a[MANIFEST_PATH] != b[MANIFEST_PATH]
    # every generated file differs; the facility time zone is the generator's, the same for every seed
    assert a.pop(FACILITY_PATH) == b.pop(FACILITY_PATH)
    assert not set(a.values()) & set(b.values())


def test_every_file_is_accounted_for_in_the_manifest(landing: Path, truth: dict[str, Any]) -> None:
    files = truth["files"]
    listed = (set(files["fhir_bundles"]) | {f["file"] for f in files["hl7v2"]} | set(files["dicom"])
              | set(files["fhir_ndjson"]) | {b["file"] for b in truth["bad_items"]}
              | {d["file"] for d in truth["duplicates"]} | {MANIFEST_PATH, FACILITY_PATH})
    assert set(_tree(landing)) == listed
    # the zone every command reads, without parsing the whole manifest
    assert json.loads((landing / FACILITY_PATH).read_text()) == {"facility_timezone": truth["facility_timezone"]}
    kinds = Counter(b["kind"] for b in truth["bad_items"]) + Counter(d["kind"] for d in truth["duplicates"])
    assert set(kinds) == set(truth["reader_expectations"])  # every kind planted at this rate
    good_files = N + len(files["hl7v2"]) + len(files["dicom"])
    if generator.COHORT_SIZE >= N:  # one cohort: the rate applies exactly
        assert sum(kinds.values()) == max(len(kinds), round(BAD_RATE * good_files))


def test_fhir_validates_except_planted_bad_items(landing: Path, truth: dict[str, Any]) -> None:
    bad = _bad_positions(truth, "entry_index")
    by_type: Counter[str] = Counter()
    seen: set[str] = set()
    for rel in truth["files"]["fhir_bundles"]:
        bundle = json.loads((landing / rel).read_text())
        skeleton = dict(bundle, entry=[{k: v for k, v in e.items() if k != "resource"} for e in bundle["entry"]])
        Bundle.model_validate(skeleton)
        for i, entry in enumerate(bundle["entry"]):
            if (rel, i) in bad:
                resource = entry.get("resource")
                assert resource is None or resource["resourceType"] not in {"Observation", "Patient", "Encounter"}
                with pytest.raises((KeyError, ValueError, TypeError)):
                    get_fhir_model_class(entry["resource"]["resourceType"])
                continue
            resource = entry["resource"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            if resource["id"] not in seen:
                seen.add(resource["id"])
                by_type[resource["resourceType"]] += 1
    assert dict(by_type) == truth["expected"]["fhir"]["resources_by_type"]
    assert sum(by_type.values()) == truth["expected"]["fhir"]["resources"]
    for item in truth["bad_items"]:
        if item["kind"] == "fhir_truncated_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads((landing / item["file"]).read_bytes())
        if item["kind"] == "binary_file":
            data = (landing / item["file"]).read_bytes()
            assert b"\x00" in data
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")


def test_shared_practitioners_and_organizations_repeat_identically(landing: Path, truth: dict[str, Any]) -> None:
    copies: dict[str, set[str]] = {}
    bundles_with: Counter[str] = Counter()
    for rel in truth["files"]["fhir_bundles"]:
        for e in _bundle_entries(landing, rel):
            r = e.get("resource", {})
            if r.get("resourceType") in ("Practitioner", "Organization"):
                copies.setdefault(r["id"], set()).add(json.dumps(r, sort_keys=True))
                bundles_with[r["id"]] += 1
    assert all(len(v) == 1 for v in copies.values())
    assert max(bundles_with.values()) > 1


def test_bundles_match_synthea_structure(landing: Path, truth: dict[str, Any], fixtures_dir: Path) -> None:
    def structure(bundle: dict[str, Any], skip: set[int]) -> set[str]:
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        full_urls = {e["fullUrl"] for e in bundle["entry"]}
        types = set()
        for i, e in enumerate(bundle["entry"]):
            if i in skip:
                continue
            r = e["resource"]
            assert URN_UUID.match(e["fullUrl"]) and e["fullUrl"] == f"urn:uuid:{r['id']}"
            assert e["request"]["method"] == "POST" and e["request"]["url"] == r["resourceType"]
            for ref in _references(r):
                if not ref.startswith("#"):
                    assert URN_UUID.match(ref) and ref in full_urls, ref
            types.add(r["resourceType"])
        return types

    synthea_types: set[str] = set()
    for path in sorted((fixtures_dir / "synthea-bundles").glob("*.json")):
        synthea_types |= structure(json.loads(path.read_text()), set())
    ours: set[str] = set()
    bad = _bad_positions(truth, "entry_index")
    for rel in truth["files"]["fhir_bundles"]:
        ours |= structure(json.loads((landing / rel).read_text()), {i for f, i in bad if f == rel})
    assert ours - synthea_types == SUPERSET_TYPES
    assert {"Patient", "Encounter", "Observation", "Condition", "Practitioner", "Organization"} <= ours & synthea_types


def test_ndjson_holds_the_same_resources_with_type_id_references(landing: Path, truth: dict[str, Any]) -> None:
    resources = {}
    for rel in truth["files"]["fhir_ndjson"]:
        lines = (landing / rel).read_text().splitlines()
        rtype = Path(rel).stem
        assert len(lines) == truth["expected"]["fhir"]["ndjson_resources_by_type"][rtype]
        for line in lines:
            r = json.loads(line)
            assert r["resourceType"] == rtype
            resources[f"{rtype}/{r['id']}"] = r
    assert truth["expected"]["fhir"]["ndjson_resources_by_type"] == truth["expected"]["fhir"]["resources_by_type"]
    for r in resources.values():
        for ref in _references(r):
            assert ref in resources, ref


def test_hl7_parses_except_planted_bad_items(landing: Path, truth: dict[str, Any]) -> None:
    skip = _bad_positions(truth, "message_index")
    by_type: Counter[str] = Counter()
    versions, control_ids = Counter(), set()
    for f in truth["files"]["hl7v2"]:
        messages = _hl7_messages(landing / f["file"])
        assert len(messages) == f["messages_in_file"]
        for i, text in enumerate(messages):
            msg = hl7.parse(text)
            if (f["file"], i) in skip:
                continue
            msh = msg.segment("MSH")
            by_type[f"{msh[9][0][0]}^{msh[9][0][1]}"] += 1
            versions[str(msh[12])] += 1
            control_ids.add(str(msh[10]))
    expected = truth["expected"]["hl7v2"]
    assert dict(by_type) == expected["messages_by_type"]
    assert dict(versions) == expected["messages_by_version"] and set(versions) == {"2.3", "2.4", "2.5", "2.5.1"}
    assert len(control_ids) == expected["messages"] == sum(by_type.values())


def test_hl7_bad_and_duplicate_messages(landing: Path, truth: dict[str, Any]) -> None:
    for item in truth["bad_items"]:
        if item["kind"] == "hl7_broken_msh":
            msh = _hl7_messages(landing / item["file"])[item["message_index"]].split("\r")[0].split("|")
            assert len(msh) < 12 or not msh[8] or not msh[9]  # no MSH-9 type or MSH-10 control id or MSH-12
        if item["kind"] == "hl7_missing_msh":
            text = (landing / item["file"]).read_text()
            assert "MSH|" not in text and "PID|" in text
    dups = [d for d in truth["duplicates"] if d["kind"] == "duplicate_message"]
    assert dups
    for d in dups:
        copy = _hl7_messages(landing / d["file"])[d["message_index"]]
        original = _hl7_messages(landing / d["original_file"])[d["original_message_index"]]
        assert copy == original and str(hl7.parse(copy).segment("MSH")[10]) == d["control_id"]
    for d in truth["duplicates"]:
        if d["kind"] == "duplicate_file":
            assert (landing / d["file"]).read_bytes() == (landing / d["original_file"]).read_bytes()


def test_hl7_carries_what_real_feeds_carry(landing: Path, truth: dict[str, Any]) -> None:
    files = truth["files"]["hl7v2"]
    assert {f["eol"] for f in files} == {"CR", "CRLF", "LF"}
    assert any(f["bom"] for f in files) and any(f["batch_envelope"] for f in files)
    assert {Path(f["file"]).suffix for f in files} >= {".hl7", ".txt", ".dat", ""}
    raw = b"".join((landing / f["file"]).read_bytes() for f in files)
    assert raw.count(b"\xef\xbb\xbf") == sum(f["bom"] for f in files)
    text = raw.decode("utf-8-sig").replace("\ufeff", "")
    for escape in ("\\F\\", "\\S\\", "\\T\\", "\\R\\", "\\E\\", "\\.br\\"):
        assert escape in text, escape
    for seg in ("EVN|", "PID|", "PV1|", "ORC|", "OBR|", "OBX|", "NTE|", "DG1|", "ZPI|", "FHS|", "BHS|"):
        assert f"\n{seg}" in text.replace("\r\n", "\n").replace("\r", "\n"), seg
    assert "^^^GENHOSP&" in text and "~^NET^Internet^" in text and "^^^USSSA^SS" in text
    units = set(re.findall(r"\nOBX\|\d+\|NM\|[^|]*\|\|[^|]*\|([^|]*)\|", text.replace("\r\n", "\n")
                                                                         .replace("\r", "\n")))
    assert len(units) >= 8 and {"bpm", "/min"} & units and {"degF", "F"} & units, units
    assert re.search(r"\^(99GHL|L)\^\d+-\d\^[^|^]*\^LN\|", text)  # local code with LOINC as the alternate
    assert re.search(r"\|(H|L|HH|LL)\|\|\|F\|", text)  # abnormal flags


def test_same_patients_across_sources(landing: Path, truth: dict[str, Any]) -> None:
    ids = truth["identifiers"]
    by_mrn = {p["mrn"]: p for p in truth["patients"]}
    for p in truth["patients"]:
        patient = _bundle_entries(landing, p["bundle"])[0]["resource"]
        mr = [i for i in patient["identifier"] if i["type"]["coding"][0]["code"] == "MR"]
        assert mr[0]["system"] == ids["mrn_system"] and mr[0]["value"] == p["mrn"]
        visits = {e["resource"]["identifier"][0]["value"] for e in _bundle_entries(landing, p["bundle"])
                  if e.get("resource", {}).get("resourceType") == "Encounter"}
        assert visits == {e["visit_number"] for e in p["encounters"]}
    seen_visits = set()
    for f in truth["files"]["hl7v2"]:
        for text in _hl7_messages(landing / f["file"]):
            msg = hl7.parse(text)
            if not msg.segments("PID"):
                continue
            pid, pv1 = msg.segment("PID"), msg.segment("PV1")
            mrns = [str(rep[0]) for rep in pid[3] if str(rep[4]) == "MR"]
            assert str(pid[3][0][3][0]) == ids["assigning_authority"] or str(pid[3][0][3]) == "GENHOSP"
            patient = by_mrn[mrns[0]]
            assert str(pv1[19][0][0]) in {e["visit_number"] for e in patient["encounters"]}
            seen_visits.add(str(pv1[19][0][0]))
    assert seen_visits == {e["visit_number"] for p in truth["patients"] for e in p["encounters"]}
    studies = {s["study_instance_uid"]: p["mrn"] for p in truth["patients"] for s in p["imaging_studies"]}
    for rel in truth["files"]["dicom"]:
        ds = pydicom.dcmread(landing / rel)
        assert studies[ds.StudyInstanceUID] == ds.PatientID


def test_dicom_reads_with_phi_in_header(landing: Path, truth: dict[str, Any]) -> None:
    files = truth["files"]["dicom"]
    assert any("." not in Path(f).name for f in files)  # PACS-export style names without extension
    fhir_uids = set()
    for p in truth["patients"]:
        for e in _bundle_entries(landing, p["bundle"]):
            r = e.get("resource", {})
            if r.get("resourceType") == "ImagingStudy":
                fhir_uids.add(r["identifier"][0]["value"].removeprefix("urn:oid:"))
    seen = Counter()
    by_mrn = {p["mrn"]: p for p in truth["patients"]}
    for rel in files:
        ds = pydicom.dcmread(landing / rel)
        assert ds.pixel_array.shape == (8, 8)
        phi = by_mrn[ds.PatientID]["phi"]
        assert str(ds.PatientName).startswith(f"{phi['family']}^{phi['given']}")
        assert ds.PatientBirthDate == phi["birth_date"].replace("-", "")
        assert ds.InstitutionName and ds.ReferringPhysicianName and ds.AccessionNumber
        assert ds.RequestAttributesSequence[0].AccessionNumber == ds.AccessionNumber
        assert ds.OtherPatientIDsSequence[0].PatientID == phi["ssn"]
        assert ds.private_block(0x0011, "GENHOSP PACS 1.0")[0x01].value == phi["mrn"]
        seen[ds.StudyInstanceUID] += 1
    assert set(seen) == fhir_uids
    expected = truth["expected"]["dicom"]
    assert (len(files), len(seen)) == (expected["instances"], expected["studies"])
    assert set(expected["instances_by_modality"]) <= {"CT", "MR", "CR", "US"} and expected["series"] > len(seen)


def test_dicom_bad_items_behave_as_documented(landing: Path, truth: dict[str, Any]) -> None:
    kinds = Counter()
    for item in truth["bad_items"]:
        path = landing / item["file"]
        if item["kind"] == "dicom_truncated":
            try:
                ds = pydicom.dcmread(path)
            except Exception:  # noqa: BLE001 - a cut inside a sequence raises struct.error
                kinds["raised"] += 1
            else:
                assert "PixelData" not in ds
        elif item["kind"] == "dicom_no_file_meta":
            with pytest.raises(InvalidDicomError):
                pydicom.dcmread(path)
            ds = pydicom.dcmread(path, force=True)
            assert ds.SOPInstanceUID == item["sop_instance_uid"]
        else:
            continue
        kinds[item["kind"]] += 1
    assert kinds["dicom_truncated"] and kinds["dicom_no_file_meta"]


def test_notes_carry_the_patients_phi(landing: Path, truth: dict[str, Any]) -> None:
    hits = 0
    for p in truth["patients"]:
        phi = p["phi"]
        for e in _bundle_entries(landing, p["bundle"]):
            r = e.get("resource", {})
            if r.get("resourceType") == "DocumentReference":
                text = base64.b64decode(r["content"][0]["attachment"]["data"]).decode()
            elif r.get("resourceType") == "Observation" and "valueString" in r:
                text = r["valueString"]
            else:
                continue
            assert phi["family"] in text
            hits += any(v in text for v in (phi["phone"], phi["mrn"], phi["email"], phi["address_line"]))
    assert hits > 0


def test_harmonization_pairs_are_the_same_result(landing: Path, truth: dict[str, Any]) -> None:
    pairs = truth["harmonization_pairs"]
    assert any(pair["fhir"]["unit"] == "mmol/L" and pair["test"] == "glucose" for pair in pairs)
    for pair in pairs:
        h, f = pair["hl7"], pair["fhir"]
        msg = hl7.parse(_hl7_messages(landing / h["file"])[h["message_index"]])
        obx = msg.segments("OBX")[h["obx_set_id"] - 1]
        assert str(obx[3][0][0]) == h["local_code"] and str(obx[6]) == h["unit"]
        assert float(str(obx[5])) == h["value"]
        stamp = str(obx[14])
        obx_time = datetime.strptime(stamp[:14], "%Y%m%d%H%M%S")
        obs = next(e["resource"] for e in _bundle_entries(landing, f["bundle"])
                   if e.get("resource", {}).get("id") == f["observation_id"])
        assert obs["code"]["coding"][0]["code"] == f["loinc"]
        assert obs["valueQuantity"]["value"] == f["value"] and obs["valueQuantity"]["code"] == f["unit"]
        effective = datetime.fromisoformat(obs["effectiveDateTime"])
        assert effective == datetime.fromisoformat(pair["effective"])
        assert effective.replace(tzinfo=None) == obx_time  # facility local time
        if pair["test"] == "glucose" and f["unit"] == "mmol/L":
            assert abs(h["value"] / 18.016 - f["value"]) <= 0.051


def test_population_realism_at_scale() -> None:
    _, patients = build_population(400, 5)
    inpatient = [e for p in patients for e in p.encounters if e.klass == "inpatient"]
    readmitted = [e for e in inpatient if e.readmission]
    assert 0.08 <= len(readmitted) / len(inpatient) <= 0.25
    for p in patients:  # readmission flags are exactly "within 30 days of the previous discharge"
        stays = [e for e in p.encounters if e.klass == "inpatient"]
        for prev, cur in zip(stays, stays[1:], strict=False):
            assert cur.readmission == (cur.start - prev.end <= timedelta(days=30))
        assert all(e.start.date() > p.birth_date for e in p.encounters)
    ages = [(datetime(2025, 6, 30).date() - p.birth_date).days // 365 for p in patients]
    assert any(a >= 90 for a in ages) and any(p.deceased for p in patients)
    assert len({p.mrn for p in patients}) == len({p.ssn for p in patients}) == len(patients)
    visits = [e.visit_number for p in patients for e in p.encounters]
    assert len(set(visits)) == len(visits)


def test_no_bad_items_at_rate_zero(tmp_path: Path) -> None:
    result = generate(patients=3, seed=1, out=tmp_path, bad_rate=0.0)
    truth = json.loads((tmp_path / MANIFEST_PATH).read_text())
    assert truth["bad_items"] == [] and truth["duplicates"] == [] and result["bad_items"] == 0
    assert result["fhir_resources"] == truth["expected"]["fhir"]["resources"] and "summary" in result


def test_address_changes_move_patients_to_another_zip3(tmp_path: Path) -> None:
    out = tmp_path / "landing"
    generate(patients=N, seed=SEED, out=out, bad_rate=0.0)
    manifest = json.loads((out / MANIFEST_PATH).read_text())
    before = _tree(out)
    changes = generate_address_changes(out, manifest, count=3, seed=5)
    assert changes == generate_address_changes(tmp_path / "again", manifest, count=3, seed=5)
    after = _tree(out)
    assert {k: v for k, v in after.items() if k in before} == before  # only new files
    assert changes["count"] == 3 and len(set(after) - set(before)) == 3 + 1 + 1
    by_id = {p["id"]: p for p in manifest["patients"]}
    a08 = _hl7_messages(out / changes["files"][0])
    for change, text in zip(changes["changed"], a08, strict=True):
        assert change["new"]["zip"][:3] != change["old"]["zip"][:3]
        assert change["old"]["zip"] == by_id[change["patient_id"]]["phi"]["zip"]
        msg = hl7.parse(text)
        assert str(msg.segment("MSH")[9]) == "ADT^A08^ADT_A01"
        assert str(msg.segment("PID")[11][0][4]) == change["new"]["zip"]
        entries = _bundle_entries(out, change["bundle"])
        patient = entries[0]["resource"]
        get_fhir_model_class("Patient").model_validate(patient)
        assert entries[0]["request"] == {"method": "PUT", "url": f"Patient/{change['patient_id']}"}
        assert patient["address"][0]["postalCode"] == change["new"]["zip"]
        original = _bundle_entries(out, by_id[change["patient_id"]]["bundle"])[0]["resource"]
        assert patient["id"] == original["id"]
        assert datetime.fromisoformat(patient["meta"]["lastUpdated"]) > datetime.fromisoformat(
            original["meta"]["lastUpdated"])
