"""Render the population as FHIR R4 resources: Synthea-style transaction Bundles and Bulk Data NDJSON."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any

from synthetic import contacts, model, vocab
from synthetic.model import Encounter, LabValue, Organization, Patient, Pool, Practitioner, Vitals

Resource = dict[str, Any]
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
INTERPRETATION_DISPLAY = {"N": "Normal", "L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high"}
SHARED_TYPES = ("Organization", "Practitioner")


def ts(value: datetime) -> str:
    return value.isoformat()


def ref(resource_id: str, display: str | None = None) -> dict[str, str]:
    out = {"reference": f"urn:uuid:{resource_id}"}
    if display:
        out["display"] = display
    return out


def concept(system: str, code: str, display: str, *more: tuple[str, str, str]) -> dict[str, Any]:
    codings = [{"system": system, "code": code, "display": display}]
    codings += [{"system": s, "code": c, "display": d} for s, c, d in more]
    return {"coding": codings, "text": display}


def interpretation_flag(test: vocab.LabTest, value: float) -> str:
    if test.critical_low is not None and value < test.critical_low:
        return "LL"
    if test.critical_high is not None and value > test.critical_high:
        return "HH"
    return "L" if value < test.low else "H" if value > test.high else "N"


def organization(org: Organization) -> Resource:
    a = org.address
    return {
        "resourceType": "Organization", "id": org.id,
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{org.identifier}"}],
        "active": True,
        "type": [concept("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider")],
        "name": org.name, "telecom": [{"system": "phone", "value": org.phone}],
        "address": [{"line": [a.line], "city": a.city, "state": a.state, "postalCode": a.zip, "country": "US"}],
    }


def practitioner(p: Practitioner) -> Resource:
    return {
        "resourceType": "Practitioner", "id": p.id,
        "identifier": [{"system": model.NPI_SYSTEM, "value": p.npi}], "active": True,
        "name": [{"family": p.family, "given": [p.given], "prefix": ["Dr."]}], "gender": p.gender,
    }


def patient_resource(p: Patient, pool: Pool, last_updated: datetime) -> Resource:
    a = p.address
    name: dict[str, Any] = {"use": "official", "family": p.family, "given": [p.given, p.middle]}
    if p.prefix:
        name["prefix"] = [p.prefix]
    res: Resource = {
        "resourceType": "Patient", "id": p.id, "meta": {"lastUpdated": ts(last_updated)},
        "identifier": [
            {"use": "usual", "type": concept(V2_0203, "MR", "Medical Record Number"), "system": model.MRN_SYSTEM,
             "value": p.mrn, "assigner": {"display": pool.hospital.name,
                                          "identifier": {"system": "urn:ietf:rfc:3986",
                                                         "value": f"urn:oid:{pool.hospital.identifier}"}}},
            {"type": concept(V2_0203, "SS", "Social Security Number"), "system": model.SSN_SYSTEM, "value": p.ssn},
        ],
        "name": [name],
        "telecom": [{"system": "phone", "value": p.phone, "use": "home"}, {"system": "email", "value": p.email}],
        "gender": p.gender, "birthDate": p.birth_date.isoformat(),
    }
    if p.deceased is not None:
        res["deceasedDateTime"] = ts(p.deceased)
    res["address"] = [{"use": "home", "line": [a.line], "city": a.city, "state": a.state, "postalCode": a.zip,
                       "country": "US"}]
    res["maritalStatus"] = concept("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", p.marital,
                                   {"M": "Married", "S": "Never Married", "D": "Divorced", "W": "Widowed"}[p.marital])
    res["communication"] = [{"language": concept("urn:ietf:bcp:47", "en-US", "English")}]
    kin = contacts.next_of_kin(p)
    res["contact"] = [{"relationship": [concept("http://terminology.hl7.org/CodeSystem/v2-0131", "N", "Next-of-Kin")],
                       "name": {"family": kin.family, "given": [kin.given]},
                       "telecom": [{"system": "phone", "value": kin.phone}],
                       "address": {"line": [kin.line], "city": kin.city, "state": kin.state, "postalCode": kin.zip}}]
    res["generalPractitioner"] = [ref(p.general_practitioner.id)]
    res["managingOrganization"] = ref(p.managing_org.id)
    return res


def encounter_resource(p: Patient, e: Encounter) -> Resource:
    act, sct, display, _ = vocab.ENCOUNTER_TYPES[e.klass]
    res: Resource = {
        "resourceType": "Encounter", "id": e.id,
        "identifier": [{"use": "official", "type": concept(V2_0203, "VN", "Visit number"),
                        "system": model.VISIT_SYSTEM, "value": e.visit_number}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": act},
        "type": [concept(vocab.SNOMED, sct, display)],
        # v3-ActPriority, as PV1-4 admission type: an unplanned readmission is urgent (U), others routine (R)
        "priority": concept("http://terminology.hl7.org/CodeSystem/v3-ActPriority",
                            *(("EM", "emergency") if e.klass == "emergency" else ("UR", "urgent") if e.readmission
                              else ("R", "routine"))),
        "subject": ref(p.id), "participant": [{"individual": ref(e.practitioner.id)}],
        "period": {"start": ts(e.start), "end": ts(e.end)},
    }
    if e.klass == "inpatient":
        disposition = ("exp", "Expired") if e.discharge_expired else ("home", "Home")
        res["hospitalization"] = {"dischargeDisposition": concept(
            "http://terminology.hl7.org/CodeSystem/discharge-disposition", *disposition)}
    res["serviceProvider"] = ref(e.organization.id)
    return res


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": vocab.UCUM, "code": unit}


def _observation(obs_id: str, category: str, code: dict[str, Any], p: Patient, e: Encounter,
                 when: datetime) -> Resource:
    return {
        "resourceType": "Observation", "id": obs_id, "status": "final",
        "category": [concept("http://terminology.hl7.org/CodeSystem/observation-category", category, category)],
        "code": code, "subject": ref(p.id), "encounter": ref(e.id), "effectiveDateTime": ts(when), "issued": ts(when),
    }


def vital_observations(p: Patient, e: Encounter, v: Vitals) -> list[Resource]:
    def loinc(key: str) -> dict[str, Any]:
        code, display, _ = vocab.VITALS[key]
        return concept(vocab.LOINC, code, display)

    out = []
    hr = _observation(v.ids["heart_rate"], "vital-signs", loinc("heart_rate"), p, e, v.time)
    hr["valueQuantity"] = _quantity(v.heart_rate, "/min")
    bp = _observation(v.ids["blood_pressure"], "vital-signs", loinc("blood_pressure"), p, e, v.time)
    bp["component"] = [{"code": loinc("systolic"), "valueQuantity": _quantity(v.systolic, "mm[Hg]")},
                       {"code": loinc("diastolic"), "valueQuantity": _quantity(v.diastolic, "mm[Hg]")}]
    temp = _observation(v.ids["temperature"], "vital-signs", loinc("temperature"), p, e, v.time)
    temp["valueQuantity"] = (_quantity(round(v.temp_c * 9 / 5 + 32, 1), "[degF]") if v.temp_in_f
                             else _quantity(v.temp_c, "Cel"))
    spo2_code, spo2_display, _ = vocab.VITALS["spo2"]
    alt_code, alt_display, _ = vocab.VITALS["spo2_alt"]
    spo2 = _observation(v.ids["spo2"], "vital-signs",
                        concept(vocab.LOINC, spo2_code, spo2_display, (vocab.LOINC, alt_code, alt_display)),
                        p, e, v.time)
    spo2["valueQuantity"] = _quantity(v.spo2, "%")
    out += [hr, bp, temp, spo2]
    if v.weight_kg is not None:
        weight = _observation(v.ids["weight"], "vital-signs", loinc("weight"), p, e, v.time)
        weight["valueQuantity"] = (_quantity(round(v.weight_kg * 2.20462, 1), "[lb_av]") if v.weight_in_lb
                                   else _quantity(v.weight_kg, "kg"))
        out.append(weight)
    if v.height_cm is not None:
        height = _observation(v.ids["height"], "vital-signs", loinc("height"), p, e, v.time)
        height["valueQuantity"] = _quantity(v.height_cm, "cm")
        out.append(height)
    return out


def lab_observation(p: Patient, e: Encounter, lv: LabValue, when: datetime) -> Resource:
    t = lv.test
    if lv.fhir_si and t.si_loinc and t.si_ucum and t.si_display:
        code, display, unit = t.si_loinc, t.si_display, t.si_ucum
        factor, decimals = t.si_factor, t.si_decimals
    else:
        code, display, unit, factor, decimals = t.loinc, t.loinc_display, t.ucum, 1.0, t.decimals
    obs = _observation(lv.obs_id, "laboratory", concept(vocab.LOINC, code, display), p, e, when)
    obs["valueQuantity"] = _quantity(round(lv.value * factor, decimals), unit)
    flag = interpretation_flag(t, lv.value)
    obs["interpretation"] = [concept(INTERPRETATION, flag, INTERPRETATION_DISPLAY[flag])]
    obs["referenceRange"] = [{"low": _quantity(round(t.low * factor, decimals), unit),
                              "high": _quantity(round(t.high * factor, decimals), unit)}]
    return obs


def encounter_resources(p: Patient, e: Encounter) -> list[Resource]:
    out = [encounter_resource(p, e)]
    for c in e.conditions:
        cond = c.condition
        res: Resource = {
            "resourceType": "Condition", "id": c.id,
            "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                      "resolved" if c.abated else "active",
                                      "Resolved" if c.abated else "Active"),
            "verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                          "confirmed", "Confirmed"),
            "category": [concept("http://terminology.hl7.org/CodeSystem/condition-category",
                                 *(("problem-list-item", "Problem List Item") if cond.chronic
                                   else ("encounter-diagnosis", "Encounter Diagnosis")))],
            "code": concept(vocab.ICD10CM, cond.icd10, cond.display, (vocab.SNOMED, cond.snomed, cond.display)),
            "subject": ref(p.id), "encounter": ref(e.id), "onsetDateTime": ts(c.onset),
        }
        if c.abated:
            res["abatementDateTime"] = ts(c.abated)
        res["recordedDate"] = ts(max(c.onset, e.start))
        out.append(res)
    if e.vitals:
        out += vital_observations(p, e, e.vitals)
    for v in e.rounds:
        if v.route == "fhir":
            out += vital_observations(p, e, v)
    for lab in e.labs:
        if lab.route == "hl7":
            continue
        observations = [lab_observation(p, e, lv, lab.collected) for lv in lab.values]
        out += observations
        out.append({
            "resourceType": "DiagnosticReport", "id": lab.id,
            "identifier": [{"system": model.ORDER_SYSTEM, "value": lab.order_number}], "status": "final",
            "category": [concept("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")],
            "code": concept(vocab.LOINC, lab.panel.loinc, lab.panel.display),
            "subject": ref(p.id), "encounter": ref(e.id), "effectiveDateTime": ts(lab.collected),
            "issued": ts(lab.resulted),
            "result": [ref(o["id"], o["code"]["text"]) for o in observations],
        })
    for m in e.medications:
        med: Resource = {
            "resourceType": "MedicationRequest", "id": m.id, "status": m.status, "intent": "order",
            "medicationCodeableConcept": concept(vocab.RXNORM, m.medication.rxnorm, m.medication.display),
            "subject": ref(p.id), "encounter": ref(e.id), "authoredOn": ts(m.authored),
            "requester": ref(e.practitioner.id),
        }
        if m.condition_id:
            med["reasonReference"] = [ref(m.condition_id)]
        med["dosageInstruction"] = [{"sequence": 1, "text": "Take as directed"}]
        out.append(med)
    for pr in e.procedures:
        out.append({"resourceType": "Procedure", "id": pr.id, "status": "completed",
                    "code": concept(vocab.SNOMED, pr.code, pr.display), "subject": ref(p.id), "encounter": ref(e.id),
                    "performedPeriod": {"start": ts(pr.start), "end": ts(pr.end)}})
    for st in e.studies:
        out.append(imaging_study(p, e, st))
    for im in e.immunizations:
        out.append({"resourceType": "Immunization", "id": im.id, "status": "completed",
                    "vaccineCode": concept(vocab.CVX, im.cvx, im.display), "patient": ref(p.id),
                    "encounter": ref(e.id), "occurrenceDateTime": ts(im.time), "primarySource": True})
    for note in e.notes:
        out.append(note_resource(p, e, note))
    if e.canary:
        out.append(canary_observation(p, e.canary))
    return out


def canary_observation(p: Patient, c: model.Canary) -> Resource:
    """The leakage canary: a follow-up call score recorded after discharge (no encounter: the stay is over)."""
    code, display = model.CANARY_CODE
    return {
        "resourceType": "Observation", "id": c.id, "status": "final",
        "category": [concept("http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey")],
        "code": concept(model.CANARY_SYSTEM, code, display), "subject": ref(p.id),
        "effectiveDateTime": ts(c.time), "issued": ts(c.time), "valueQuantity": _quantity(c.value, "{score}"),
    }


def imaging_study(p: Patient, e: Encounter, st: model.Study) -> Resource:
    spec = vocab.IMAGING[st.modality]
    body_code, body_display, _ = vocab.BODY_PARTS[st.body_part]
    modality = {"system": vocab.DCM, "code": st.modality, "display": spec["display"]}
    proc_code, proc_display = spec["procedure"]  # type: ignore[misc]
    return {
        "resourceType": "ImagingStudy", "id": st.id,
        "identifier": [{"use": "official", "system": "urn:dicom:uid", "value": f"urn:oid:{st.uid}"},
                       {"type": concept(V2_0203, "ACSN", "Accession ID"), "system": model.ACCESSION_SYSTEM,
                        "value": st.accession}],
        "status": "available", "modality": [modality], "subject": ref(p.id), "encounter": ref(e.id),
        "started": ts(st.time), "referrer": ref(st.referring.id),
        "numberOfSeries": len(st.series), "numberOfInstances": st.instance_count,
        "procedureCode": [concept(vocab.SNOMED, proc_code, proc_display)],
        "series": [{
            "uid": s.uid, "number": s.number, "modality": modality, "description": s.description,
            "numberOfInstances": len(s.instances),
            "bodySite": {"system": vocab.SNOMED, "code": body_code, "display": body_display},
            "started": ts(st.time),
            "instance": [{"uid": uid, "sopClass": {"system": "urn:ietf:rfc:3986",
                                                   "code": f"urn:oid:{spec['sop_class']}"}, "number": n}
                         for uid, n in s.instances],
        } for s in st.series],
    }


def note_resource(p: Patient, e: Encounter, note: model.Note) -> Resource:
    code, display = vocab.NOTE_TYPES[e.klass]
    if note.kind == "observation":
        obs = _observation(note.id, "exam", concept(vocab.LOINC, *vocab.NOTE_OBSERVATION), p, e, note.time)
        obs["valueString"] = note.text
        return obs
    return {
        "resourceType": "DocumentReference", "id": note.id, "status": "current",
        "type": concept(vocab.LOINC, code, display),
        "category": [concept("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                             "clinical-note", "Clinical Note")],
        "subject": ref(p.id), "date": ts(note.time), "author": [ref(e.practitioner.id)],
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "title": display,
                                    "data": base64.b64encode(note.text.encode()).decode()}}],
        "context": {"encounter": [ref(e.id)], "period": {"start": ts(e.start), "end": ts(e.end)}},
    }


def allergy_resource(p: Patient, a: model.AllergyRecord) -> Resource:
    return {
        "resourceType": "AllergyIntolerance", "id": a.id,
        "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                  "active", "Active"),
        "verificationStatus": concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                                      "confirmed", "Confirmed"),
        "type": "allergy", "category": [a.category], "criticality": "low",
        "code": concept(vocab.SNOMED, a.code, a.display), "patient": ref(p.id), "encounter": ref(a.encounter_id),
        "recordedDate": ts(a.recorded),
        "reaction": [{"manifestation": [concept(vocab.SNOMED, *a.reaction)]}],
    }


def shared_for(p: Patient, pool: Pool) -> list[Resource]:
    """The Organizations and Practitioners a patient's resources reference, in order of first use."""
    orgs: dict[str, Organization] = {p.managing_org.id: p.managing_org}
    pracs: dict[str, Practitioner] = {p.general_practitioner.id: p.general_practitioner}
    for e in p.encounters:
        orgs.setdefault(e.organization.id, e.organization)
        pracs.setdefault(e.practitioner.id, e.practitioner)
        for st in e.studies:
            pracs.setdefault(st.referring.id, st.referring)
    return [organization(o) for o in orgs.values()] + [practitioner(pr) for pr in pracs.values()]


def patient_resources(p: Patient, pool: Pool) -> list[Resource]:
    out = [patient_resource(p, pool, model.BASE_TIME)] + shared_for(p, pool)
    for i, e in enumerate(p.encounters):
        out += encounter_resources(p, e)
        if i == 0:
            out += [allergy_resource(p, a) for a in p.allergies]
    return out


def entry(resource: Resource, method: str = "POST") -> dict[str, Any]:
    rtype = resource["resourceType"]
    request: dict[str, str] = {"method": method, "url": rtype if method == "POST" else f"{rtype}/{resource['id']}"}
    if rtype in SHARED_TYPES:  # conditional create: a server keeps one copy of what many bundles repeat
        ident = resource["identifier"][0]
        request["ifNoneExist"] = f"identifier={ident['system']}|{ident['value']}"
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource, "request": request}


def transaction_bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def dump_bundle(bundle: dict[str, Any], pretty: bool) -> bytes:
    if pretty:
        return json.dumps(bundle, ensure_ascii=False, indent=2).encode()
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode()


_URN_REF = re.compile(r'"reference":"urn:uuid:([0-9a-f-]{36})"')


def ndjson_line(resource: Resource, type_of: dict[str, str]) -> str:
    """One Bulk Data line: the same resource with `Type/id` references instead of `urn:uuid:` ones."""
    text = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
    return _URN_REF.sub(lambda m: f'"reference":"{type_of[m.group(1)]}/{m.group(1)}"', text)
