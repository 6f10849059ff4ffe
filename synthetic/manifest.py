"""The ground-truth manifest (`_generator/manifest.json`): what was generated, where, and what a reader must do."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthetic import bad_items, fhir, model, people
from synthetic.dicom import PRIVATE_CREATOR, PRIVATE_GROUP, Instance
from synthetic.hl7v2 import HL7File
from synthetic.model import Encounter, Patient, Pool

MANIFEST_PATH = "_generator/manifest.json"
# the generator's facility time zone on its own: every CLI command reads it, the manifest is tens of MB at scale
FACILITY_PATH = "_generator/facility.json"
FORMAT_VERSION = 1


def phi(p: Patient) -> dict[str, Any]:
    a = p.address
    return {
        "given": p.given, "middle": p.middle, "family": p.family, "prefix": p.prefix, "full_name": p.full_name,
        "mrn": p.mrn, "ssn": p.ssn, "phone": p.phone, "phone_digits": p.phone.replace("-", ""), "email": p.email,
        "address_line": a.line, "city": a.city, "state": a.state, "zip": a.zip,
        "birth_date": p.birth_date.isoformat(),
    }


def _identifiers(pool: Pool) -> dict[str, Any]:
    return {
        "assigning_authority": model.ASSIGNING_AUTHORITY, "authority_oid": pool.hospital.identifier,
        "mrn_system": model.MRN_SYSTEM, "visit_number_system": model.VISIT_SYSTEM, "ssn_system": model.SSN_SYSTEM,
        "accession_system": model.ACCESSION_SYSTEM, "lab_order_system": model.ORDER_SYSTEM,
        "npi_system": model.NPI_SYSTEM,
        "hl7v2": {
            "mrn": "PID-3 repetition with CX.5 = MR: <MRN>^^^GENHOSP^MR; CX.4 is sometimes the HD "
                   "GENHOSP&<authority_oid>&ISO (namespace id is always GENHOSP); some files repeat the SSN "
                   "(~<digits>^^^USSSA^SS)",
            "ssn": "PID-19", "visit_number": "PV1-19 component 1 (CX, type VN) == FHIR Encounter.identifier value",
            "lab_order": "ORC-2/ORC-3/OBR-2/OBR-3 component 1 == FHIR DiagnosticReport.identifier value",
            "timestamps": "2.5/2.5.1 carry the UTC offset (-0500); 2.3/2.4 are facility local time, UTC-05:00",
        },
        "fhir": {"mrn": "Patient.identifier with type v2-0203 MR and system mrn_system; assigner display + "
                        "identifier (urn:oid:<authority_oid>)",
                 "visit_number": "Encounter.identifier (type VN, system visit_number_system)"},
        "dicom": {"PatientID": "MRN", "IssuerOfPatientID": model.ASSIGNING_AUTHORITY,
                  "OtherPatientIDsSequence": "SSN (issuer USSSA)", "AccessionNumber": "== ImagingStudy ACSN identifier",
                  "RequestAttributesSequence": "AccessionNumber, RequestedProcedureID, ScheduledProcedureStepID",
                  "private_block": {"group": f"{PRIVATE_GROUP:04X}", "creator": PRIVATE_CREATOR,
                                    "elements": {"01": "MRN", "02": "patient name", "03": "phone",
                                                 "04": "visit number"}}},
    }


def _patient_record(p: Patient, bundle: str) -> dict[str, Any]:
    return {
        "id": p.id, "mrn": p.mrn, "bundle": bundle, "gender": p.gender,
        "deceased": fhir.ts(p.deceased) if p.deceased else None,
        "age_at_base": (model.BASE_TIME.date() - p.birth_date).days // 365,
        "phi": phi(p),
        "encounters": [_encounter_record(e) for e in p.encounters],
        "imaging_studies": [{"study_instance_uid": st.uid, "accession": st.accession, "modality": st.modality,
                             "instances": st.instance_count} for e in p.encounters for st in e.studies],
    }


def _encounter_record(e: Encounter) -> dict[str, Any]:
    record: dict[str, Any] = {"id": e.id, "visit_number": e.visit_number, "class": e.klass, "start": fhir.ts(e.start),
                              "end": fhir.ts(e.end), "readmission_30d": e.readmission,
                              "discharge_expired": e.discharge_expired,
                              "vitals_charted": (e.vitals is not None) + (e.hl7_vitals is not None) + len(e.rounds)}
    if e.klass == "inpatient":
        record.update({"readmitted_within_30d": e.readmitted, "readmission_risk": round(e.readmission_risk or 0.0, 6),
                       "risk_features": e.risk_features,
                       "canary": {"observation_id": e.canary.id, "effective": fhir.ts(e.canary.time),
                                  "value": e.canary.value} if e.canary else None})
    return record


def _readmission_model() -> dict[str, Any]:
    return {
        "description": "each inpatient stay is followed by an unplanned inpatient readmission 2-28 days after "
                       "discharge with probability 1/(1+exp(-(intercept + sum(coefficient * feature)))); "
                       "features as gold.features_readmission computes them at discharge",
        "intercept": model.READMISSION_INTERCEPT, "coefficients": dict(model.READMISSION_COEFFICIENTS),
        "features": {
            "charlson_index": "Charlson index (Quan 2005 categories, Charlson 1987 weights) of the ICD-10 diagnoses "
                              "known at discharge",
            "prior_admissions_12m": f"inpatient admissions in the 365 days before admission, capped at "
                                    f"{model.PRIOR_ADMISSIONS_CAP}",
            "length_of_stay_days": "discharge - admission, in days",
            "creatinine_high": "1 when the last creatinine at or before discharge (from up to "
                               f"{model.LAB_LOOKBACK_DAYS} days before admission) is above 1.3 mg/dL",
            "sodium_low": "1 when the last sodium, taken the same way, is below 136 mmol/L",
            "age_75_plus": "1 when the age at admission is 75 or more",
        },
        "label": "encounters[].readmitted_within_30d: the next inpatient admission starts within 30 days of this "
                 "discharge (a drawn readmission that would end after base_time does not happen)",
        "readmission": "PV1-4 admission type U / Encounter.priority UR, an acute diagnosis (pneumonia, UTI, sepsis or "
                       "myocardial infarction), no potentially planned procedure",
    }


def _canary() -> dict[str, Any]:
    code, display = model.CANARY_CODE
    return {
        "description": "leakage canary: a follow-up call 4-30 h after each inpatient discharge (before any next "
                       "encounter), a FHIR Observation (category survey, no encounter) with a score 0-10 drawn "
                       "around 7 when the stay is readmitted and 2.5 when not. Recorded only after discharge: "
                       "point-in-time features never use it; alone it predicts the label (AUROC near 1)",
        "system": model.CANARY_SYSTEM, "code": code, "display": display, "unit": "{score}",
    }


def _harmonization_pairs(hl7_files: list[HL7File], bundle_path: Callable[[Patient], str]) -> list[dict[str, Any]]:
    pairs = []
    for f in hl7_files:
        for index, m in enumerate(f.messages):
            ev = m.event
            if m.kind != "good" or ev is None or ev.lab is None or ev.lab.route != "both":
                continue
            for set_id, lv in enumerate(ev.lab.values, start=1):
                t = lv.test
                si = lv.fhir_si and t.si_loinc is not None
                factor, decimals = (t.si_factor, t.si_decimals) if si else (1.0, t.decimals)
                pairs.append({
                    "patient_id": ev.patient.id, "mrn": ev.patient.mrn, "effective": fhir.ts(ev.lab.collected),
                    "order_number": ev.lab.order_number, "test": t.key,
                    "hl7": {"file": f.path, "message_index": index, "control_id": m.control_id, "obx_set_id": set_id,
                            "local_code": t.local_code, "coding_system": f.style.local_system,
                            "value": round(lv.value, t.decimals), "unit": lv.hl7_unit},
                    "fhir": {"bundle": bundle_path(ev.patient), "observation_id": lv.obs_id,
                             "loinc": t.si_loinc if si else t.loinc, "value": round(lv.value * factor, decimals),
                             "unit": t.si_ucum if si else t.ucum},
                })
    return pairs


class ManifestWriter:
    """Accumulates the ground truth cohort by cohort; the large per-patient parts are spooled to disk so memory
    stays bounded at any N, then `finish` writes `_generator/manifest.json` (compact JSON)."""

    def __init__(self, out: Path, seed: int, bad_rate: float, pool: Pool) -> None:
        self.out, self.seed, self.bad_rate, self.pool = out, seed, bad_rate, pool
        (out / MANIFEST_PATH).parent.mkdir(parents=True, exist_ok=True)
        self._spool = {name: (out / MANIFEST_PATH).parent / f".{name}.jsonl.tmp"
                       for name in ("harmonization_pairs", "patients")}
        self._spooled = {name: 0 for name in self._spool}
        for path in self._spool.values():
            path.write_bytes(b"")
        self.patient_count = self.deceased = self.over_89 = 0
        self.encounters: Counter[str] = Counter()
        self.readmissions = self.canaries = 0
        self.fhir: Counter[str] = Counter()
        self.ndjson: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.modalities: Counter[str] = Counter()
        self.series = self.studies = 0
        self.files: dict[str, list[Any]] = {"fhir_bundles": [], "hl7v2": [], "dicom": [], "fhir_ndjson": []}
        self.bad: list[dict[str, Any]] = []
        self.duplicates: list[dict[str, Any]] = []

    def _append(self, name: str, records: list[dict[str, Any]]) -> None:
        if records:
            with self._spool[name].open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
            self._spooled[name] += len(records)

    def add_cohort(self, *, patients: list[Patient], hl7_files: list[HL7File], instances: list[Instance],
                   fhir_counts: Counter[str], bad: list[dict[str, Any]], duplicates: list[dict[str, Any]],
                   bundle_path: Callable[[Patient], str]) -> None:
        self.patient_count += len(patients)
        self.deceased += sum(p.deceased is not None for p in patients)
        self.over_89 += sum((model.BASE_TIME.date() - p.birth_date).days // 365 > 89 for p in patients)
        for p in patients:
            for e in p.encounters:
                self.encounters[e.klass] += 1
                self.readmissions += e.readmission
                self.canaries += e.canary is not None
        self.fhir.update(fhir_counts)
        good = [m for f in hl7_files for m in f.messages if m.kind == "good"]
        self.messages.update(m.message_type for m in good)
        self.versions.update(m.version for m in good)
        self.modalities.update(i.study.modality for i in instances)
        self.series += len({i.series.uid for i in instances})
        self.studies += len({i.study.uid for i in instances})
        self.files["fhir_bundles"] += [bundle_path(p) for p in patients]
        self.files["hl7v2"] += [{"file": f.path, "messages_in_file": len(f.messages), "version": f.style.version,
                                 "eol": f.style.eol, "bom": f.style.bom, "batch_envelope": f.style.envelope}
                                for f in hl7_files]
        self.files["dicom"] += [i.path for i in instances]
        self.bad += bad
        self.duplicates += duplicates
        self._append("harmonization_pairs", _harmonization_pairs(hl7_files, bundle_path))
        self._append("patients", [_patient_record(p, bundle_path(p)) for p in patients])

    def add_ndjson(self, counts: dict[str, int]) -> None:
        self.ndjson.update(counts)
        self.files["fhir_ndjson"] = [f"fhir/ndjson/{t}.ndjson" for t in sorted(self.ndjson)]

    def head(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "generator": "synthetic", "format_version": FORMAT_VERSION, "seed": self.seed,
            "patient_count": self.patient_count, "bad_rate": self.bad_rate, "base_time": fhir.ts(model.BASE_TIME),
            # the zone of every timestamp written without an offset (HL7 v2.3/2.4): set facility_timezone to it
            "facility_timezone": model.LOCAL_TZ_NAME,
            "identifiers": _identifiers(pool),
            "readmission_model": _readmission_model(),
            "leakage_canary": _canary(),
            "organizations": [{"id": o.id, "name": o.name, "oid": o.identifier}
                              for o in [pool.hospital, *pool.clinics]],
            "practitioners": [{"id": pr.id, "npi": pr.npi, "family": pr.family, "given": pr.given}
                              for pr in pool.practitioners],
            "hospital": people.HOSPITAL,
            "expected": {
                "patients": {"total": self.patient_count, "deceased": self.deceased, "over_89": self.over_89},
                "encounters": {"total": sum(self.encounters.values()),
                               "by_class": dict(sorted(self.encounters.items())),
                               "inpatient_stays": self.encounters["inpatient"], "readmissions_30d": self.readmissions,
                               "canaries": self.canaries},
                "fhir": {"bundles": self.patient_count, "resources": sum(self.fhir.values()),
                         "resources_by_type": dict(sorted(self.fhir.items())),
                         "ndjson_resources_by_type": dict(sorted(self.ndjson.items())),
                         "note": "distinct good resources; shared Organization/Practitioner counted once"},
                "hl7v2": {"files": len(self.files["hl7v2"]), "messages": sum(self.messages.values()),
                          "messages_by_type": dict(sorted(self.messages.items())),
                          "messages_by_version": dict(sorted(self.versions.items())),
                          "note": "distinct good messages; excludes planted broken and duplicate messages"},
                "dicom": {"instances": len(self.files["dicom"]), "series": self.series, "studies": self.studies,
                          "instances_by_modality": dict(sorted(self.modalities.items()))},
            },
            "files": self.files,
            "reader_expectations": bad_items.READER_EXPECTATIONS,
            "bad_items": sorted(self.bad, key=lambda b: (b["file"], b.get("entry_index", b.get("message_index", -1)))),
            "duplicates": sorted(self.duplicates, key=lambda d: (d["file"], d.get("message_index", -1))),
        }

    def finish(self) -> dict[str, Any]:
        """Write the manifest; return its head (everything except the spooled per-patient lists)."""
        head = self.head()
        target = self.out / MANIFEST_PATH
        with target.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1])
            for name, path in self._spool.items():
                fh.write(f',"{name}":[')
                with path.open(encoding="utf-8") as spool:
                    for i, line in enumerate(spool):
                        fh.write(("," if i else "") + line.rstrip("\n"))
                fh.write("]")
                path.unlink()
            fh.write("}")
        (self.out / FACILITY_PATH).write_text(json.dumps({"facility_timezone": head["facility_timezone"]}),
                                              encoding="utf-8")
        return {**head, "harmonization_pair_count": self._spooled["harmonization_pairs"]}
