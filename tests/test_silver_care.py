"""Silver care_plan, care_plan_activity, care_team, device and goal from FHIR R4: two Synthea bundles of the
fixtures (CarePlan, Goal) and a hand-written transaction bundle shaped as Synthea writes CareTeam and Device
(which the fixtures lack). Built once for the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import ingest_and_build_silver, new_lakehouse, transaction_bundle

from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from silver.deid import date_shift_days_py, pseudonym_py
from silver.deid.scan import scan
from silver.schemas import TABLES

pytestmark = pytest.mark.slow

KEY = "care-fixture-key-not-secret-0123456789abcdef"
SCT = "http://snomed.info/sct"
GLORIA = "Gloria_Covarrubias_15044ad5-0e57-4c20-b927-87490a5e8827.json"
ORALIA = "Oralia_Stark_b21200a6-ec96-408b-b8ab-e481402ac607.json"
CARE_TABLES = ("care_plan", "care_plan_activity", "care_team", "device", "goal")

PATIENT, ENCOUNTER, CONDITION = ("5b0c7f0e-2d4b-4c6a-9a51-7c1f0e3d2a11", "8e2d6a4f-1c3b-4f7e-b0a2-3d9c5e7f1a22",
                                 "a3f1c9d2-6b7e-4a58-9c0d-2e4f6a8b0c33")
ORG, PRACTITIONER = "c4e2a0b8-7d9f-4b1c-8e3a-5f7d9b1c3e44", "d5f3b1c9-8e0a-4c2d-9f4b-6a8e0c2d4f55"
TEAM, TEAM_OLD = "e6a4c2d0-9f1b-4d3e-a05c-7b9f1d3e5a66", "f7b5d3e1-a02c-4e4f-b16d-8c0a2e4f6b77"
DEVICE, DEVICE_2 = "0a8c6e4f-b13d-4f50-c27e-9d1b3f5a7c88", "1b9d7f50-c24e-4061-d38f-ae2c4061b899"
GOAL, GOAL_CODED, PLAN = ("2cae8061-d35f-4172-e49a-bf3d5172c9aa", "3dbf9172-e460-4283-f5ab-c04e6283dabb",
                          "4ec0a283-f571-4394-06bc-d15f7394ebcc")
MRN, NAMES = "MRN-CARE-40417", ("Marisol", "Okonkwo-Brandt", "Evander", "Thistlewood")
# the authority of the MR identifiers of Synthea (and of the crafted patient): its system (silver.identity)
SMART = "http://hospital.smarthealthit.org|"
UDI, LOT, SERIAL = "00844588003288", "LOT8475RT", "SN5512390"
UDI_2, LOT_2, SERIAL_2 = "00643169007222", "LOT2231XQ", "SN0091772"
FORBIDDEN = (*NAMES, MRN, UDI, LOT, SERIAL, UDI_2, LOT_2, SERIAL_2, "617-555-0199")


def _urn(uuid: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{uuid}"}


def _sct(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": SCT, "code": code, "display": display}], "text": display}


def _udi(di: str, lot: str, serial: str) -> dict[str, str]:
    return {"deviceIdentifier": di, "carrierHRF": f"(01){di}(11)220103(17)470103(10){lot}(21){serial}"}


def care_bundle() -> dict[str, Any]:
    """A Synthea-shaped FHIR R4 transaction bundle: a patient with an encounter, a condition, two care teams, two
    devices, two goals and a care plan (US Core category first, the SNOMED CT category second)."""
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": PATIENT,
         "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                              "code": "MR"}]},
                         "system": "http://hospital.smarthealthit.org", "value": MRN}],
         "name": [{"use": "official", "family": NAMES[1], "given": [NAMES[0]], "prefix": ["Mrs."]}],
         "telecom": [{"system": "phone", "value": "617-555-0199", "use": "home"}], "gender": "female",
         "birthDate": "1961-07-14",
         "address": [{"line": ["12 Quarry Lane"], "city": "Quincy", "state": "MA", "postalCode": "02169"}]},
        {"resourceType": "Organization", "id": ORG, "name": "Hillside Family Practice", "active": True,
         "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov",
                               "display": "Healthcare Provider"}]}]},
        {"resourceType": "Practitioner", "id": PRACTITIONER, "active": True, "gender": "male",
         "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999912345"}],
         "name": [{"family": NAMES[3], "given": [NAMES[2]], "prefix": ["Dr."]}]},
        {"resourceType": "Encounter", "id": ENCOUNTER, "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "type": [_sct("185349003", "Encounter for check up (procedure)")], "subject": _urn(PATIENT),
         "period": {"start": "2023-02-10T09:00:00-05:00", "end": "2023-02-10T09:45:00-05:00"},
         "serviceProvider": _urn(ORG)},
        {"resourceType": "Condition", "id": CONDITION,
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                            "code": "confirmed"}]},
         "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                   "code": "encounter-diagnosis"}]}],
         "code": _sct("44054006", "Diabetes mellitus type 2 (disorder)"), "subject": _urn(PATIENT),
         "encounter": _urn(ENCOUNTER), "onsetDateTime": "2023-02-10T09:00:00-05:00",
         "recordedDate": "2023-02-10T09:00:00-05:00"},
        {"resourceType": "CareTeam", "id": TEAM, "status": "active", "subject": _urn(PATIENT),
         "encounter": _urn(ENCOUNTER), "period": {"start": "2023-02-10T09:00:00-05:00"},
         "participant": [
             {"role": [_sct("116153009", "Patient")],
              "member": {**_urn(PATIENT), "display": f"Mrs. {NAMES[0]} {NAMES[1]}"}},
             {"role": [_sct("223366009", "Healthcare professional (occupation)")],
              "member": {**_urn(PRACTITIONER), "display": f"Dr. {NAMES[2]} {NAMES[3]}"}},
             {"role": [_sct("224891009", "Healthcare services (qualifier value)")],
              "member": {**_urn(ORG), "display": "Hillside Family Practice"}}],
         "reasonCode": [_sct("44054006", "Diabetes mellitus type 2 (disorder)")],
         "managingOrganization": [{**_urn(ORG), "display": "Hillside Family Practice"}]},
        {"resourceType": "CareTeam", "id": TEAM_OLD, "status": "inactive", "subject": _urn(PATIENT),
         "period": {"start": "2019-05-01T08:00:00Z", "end": "2019-06-01T08:00:00Z"},
         "participant": [{"role": [_sct("116153009", "Patient")],
                          "member": {**_urn(PATIENT), "display": f"Mrs. {NAMES[0]} {NAMES[1]}"}}]},
        {"resourceType": "Device", "id": DEVICE, "udiCarrier": [_udi(UDI, LOT, SERIAL)], "status": "active",
         "distinctIdentifier": UDI, "manufactureDate": "2022-01-03T10:15:00+00:00",
         "expirationDate": "2047-01-03T10:15:00+00:00", "lotNumber": LOT, "serialNumber": SERIAL,
         "deviceName": [{"name": "Blood glucose meter (physical object)", "type": "user-friendly-name"}],
         "type": _sct("337414009", "Blood glucose meter (physical object)"), "patient": _urn(PATIENT)},
        # the SNOMED CT type is the second coding: taken by its system, not by position
        {"resourceType": "Device", "id": DEVICE_2, "udiCarrier": [_udi(UDI_2, LOT_2, SERIAL_2)],
         "status": "inactive", "distinctIdentifier": UDI_2, "manufactureDate": "2018-06-20",
         "expirationDate": "2021-06-20", "lotNumber": LOT_2, "serialNumber": SERIAL_2,
         "type": {"coding": [{"system": "urn:oid:2.16.840.1.113883.3.26.1.1", "code": "LFR",
                              "display": "Blood glucose test system"},
                             {"system": SCT, "code": "702127004", "display": "Continuous glucose monitor"}]},
         "patient": _urn(PATIENT)},
        {"resourceType": "Goal", "id": GOAL, "lifecycleStatus": "active",
         "achievementStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/goal-achievement",
                                           "code": "improving"}]},
         "description": {"text": f"{NAMES[0]} {NAMES[1]} checks glucose before breakfast; "
                                 "call 617-555-0199 if above 250"},
         "subject": _urn(PATIENT), "startDate": "2023-02-10",
         "target": [{"measure": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                     "detailQuantity": {"value": 7.0, "unit": "%"}, "dueDate": "2023-08-10"},
                    {"measure": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                     "dueDate": "2023-05-10"}],
         "addresses": [_urn(CONDITION)]},
        {"resourceType": "Goal", "id": GOAL_CODED, "lifecycleStatus": "proposed",
         "description": {"coding": [{"system": SCT, "code": "160670007", "display": "Diabetic diet"}]},
         "subject": _urn(PATIENT)},
        {"resourceType": "CarePlan", "id": PLAN, "status": "active", "intent": "plan",
         "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                                   "code": "assess-plan"}]},
                      _sct("698360004", "Diabetes self management plan")],
         "subject": _urn(PATIENT), "encounter": _urn(ENCOUNTER),
         "period": {"start": "2023-02-10T09:30:00-05:00", "end": "2023-12-31T09:30:00-05:00"},
         "careTeam": [_urn(TEAM)], "addresses": [_urn(CONDITION)], "goal": [_urn(GOAL), _urn(GOAL_CODED)],
         "activity": [{"detail": {"code": _sct("160670007", "Diabetic diet"), "status": "in-progress"}},
                      {"detail": {"code": {"coding": [
                          {"system": "http://loinc.org", "code": "LP6284-2"},
                          {"system": SCT, "code": "229065009", "display": "Exercise therapy"}]},
                          "status": "scheduled"}},
                      {"reference": {"display": "Referral to a dietitian"}}]},
    ]
    return transaction_bundle(resources)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object, fixtures_dir: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("silver-care")
    settings = new_lakehouse(tmp / "lh", pseudonym_key=KEY)
    mine = tmp / "care_bundle.json"
    mine.write_text(json.dumps(care_bundle()), encoding="utf-8")
    files = [fixtures_dir / "synthea-bundles" / GLORIA, fixtures_dir / "synthea-bundles" / ORALIA, mine]
    report = ingest_and_build_silver(settings, files)
    resources = [e["resource"] for f in files for e in json.loads(f.read_text(encoding="utf-8"))["entry"]]
    catalog = Catalog(spark, settings)  # type: ignore[arg-type]
    tables = {t: [r.asDict() for r in catalog.read(f"silver.{t}").collect()] for t in CARE_TABLES}
    yield {"settings": settings, "catalog": catalog, "report": report, "resources": resources, "tables": tables}
    set_settings(None)


def _key(value: str, namespace: str) -> str:
    return pseudonym_py(value, KEY.encode(), namespace)


def _by(rows: list[dict[str, Any]], column: str) -> dict[str, dict[str, Any]]:
    return {r[column]: r for r in rows}


def _shift(built: dict[str, Any], patient_key: str) -> timedelta:
    return timedelta(days=date_shift_days_py(patient_key, KEY.encode(), built["settings"].max_shift_days))


def _of_type(built: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in built["resources"] if r["resourceType"] == resource_type]


def test_every_resource_lands_and_reconciles(built: dict[str, Any]) -> None:
    report = built["report"]
    for table in TABLES:
        counts = report[table]
        assert counts["silver"] + counts["quarantined"] == counts["bronze_input"], table
    plans = _of_type(built, "CarePlan")
    expected = {"care_plan": len(plans), "care_team": 2, "device": 2, "goal": len(_of_type(built, "Goal")),
                "care_plan_activity": sum("detail" in a for p in plans for a in p.get("activity", []))}
    assert expected == {"care_plan": 5, "care_team": 2, "device": 2, "goal": 12, "care_plan_activity": 9}
    for table, n in expected.items():
        assert report[table] == {**report[table], "bronze_input": n, "silver": n, "quarantined": 0}, table
        assert len(built["tables"][table]) == n


def test_synthea_care_plan_keys_its_conditions_goals_and_activities(built: dict[str, Any]) -> None:
    plans = _by(built["tables"]["care_plan"], "care_plan_key")
    gloria = _key(SMART + "15044ad5-0e57-4c20-b927-87490a5e8827", "patient")  # the patient's MR identifier
    row = plans[_key("e6ca785d-67ba-4a5e-b2fb-860b4b3e9fec", "care_plan")]
    assert (row["patient_key"], row["status"], row["intent"], row["category_code"], row["category_display"]) == (
        gloria, "active", "order", "698360004", "Diabetes self management plan")
    assert row["encounter_key"] == _key("7a135f4e-6717-4745-b6b9-209c00d81289", "encounter")
    assert row["period_start"] == datetime(2020, 4, 1, 2, 47, 3) + _shift(built, gloria)
    assert row["period_end"] is None and row["activity_count"] == 2
    assert row["condition_keys"] == [_key("270807cb-f59b-4811-8fb2-62efc2212be1", "condition")]
    assert row["goal_keys"] == sorted(_key(g, "goal") for g in (
        "d4d60c56-2f5a-4c94-b885-c7bc5ffa1680", "4642b73f-a31d-4d1d-bf7f-27fcdf0ce8a8",
        "2af58350-0d1c-4677-a3db-7b8b216206a2", "9c233d7b-77bc-4810-a3ba-485a096211b0",
        "4ff3abed-5faa-4db8-a347-61fa159268de"))
    # the keys are those of the Silver rows they point at
    conditions = {r.condition_key for r in built["catalog"].read("silver.condition").collect()}
    goals = {r["goal_key"] for r in built["tables"]["goal"]}
    for plan in plans.values():
        assert set(plan["condition_keys"]) <= conditions and set(plan["goal_keys"]) <= goals
    assert sum(len(p["condition_keys"]) for p in plans.values()) == 4
    completed = plans[_key("a96957e0-3765-41fc-891f-c488532a5026", "care_plan")]
    oralia = _key(SMART + "b21200a6-ec96-408b-b8ab-e481402ac607", "patient")
    assert completed["patient_key"] == oralia
    assert (completed["status"], completed["category_code"], completed["period_end"]) == (
        "completed", "91251008", datetime(2017, 4, 15, 23, 45, 8) + _shift(built, oralia))

    activities = [r for r in built["tables"]["care_plan_activity"] if r["care_plan_key"] == row["care_plan_key"]]
    assert sorted((a["activity_index"], a["code"], a["display"], a["status"], a["patient_key"]) for a in activities) \
        == [(0, "160670007", "Diabetic diet", "in-progress", gloria),
            (1, "229065009", "Exercise therapy", "in-progress", gloria)]


def test_hand_written_care_plan_picks_the_snomed_category_and_codings(built: dict[str, Any]) -> None:
    patient_key = _key(SMART + MRN, "patient")
    shift = _shift(built, patient_key)
    row = _by(built["tables"]["care_plan"], "care_plan_key")[_key(PLAN, "care_plan")]
    assert (row["patient_key"], row["intent"], row["category_code"], row["category_display"]) == (
        patient_key, "plan", "698360004", "Diabetes self management plan")
    assert row["period_start"] == datetime(2023, 2, 10, 14, 30) + shift  # -05:00 in UTC
    assert row["period_end"] == datetime(2023, 12, 31, 14, 30) + shift
    assert row["condition_keys"] == [_key(CONDITION, "condition")]
    assert row["goal_keys"] == sorted([_key(GOAL, "goal"), _key(GOAL_CODED, "goal")])
    assert row["activity_count"] == 3
    activities = sorted((a["activity_index"], a["code"], a["display"], a["status"])
                        for a in built["tables"]["care_plan_activity"] if a["care_plan_key"] == row["care_plan_key"])
    # the third activity only references a request (that resource's own row): counted, not a detail row
    assert activities == [(0, "160670007", "Diabetic diet", "in-progress"),
                          (1, "229065009", "Exercise therapy", "scheduled")]
    keys = [a["care_plan_activity_key"] for a in built["tables"]["care_plan_activity"]]
    assert _key(f"{PLAN}/activity/1", "care_plan_activity") in keys and len(set(keys)) == len(keys)


def test_care_team_status_period_reason_and_roles_without_members(built: dict[str, Any]) -> None:
    patient_key = _key(SMART + MRN, "patient")
    shift = _shift(built, patient_key)
    teams = _by(built["tables"]["care_team"], "care_team_key")
    team = teams[_key(TEAM, "care_team")]
    assert (team["patient_key"], team["encounter_key"], team["status"], team["reason_code"],
            team["reason_display"]) == (patient_key, _key(ENCOUNTER, "encounter"), "active", "44054006",
                                        "Diabetes mellitus type 2 (disorder)")
    assert team["period_start"] == datetime(2023, 2, 10, 14, 0) + shift and team["period_end"] is None
    assert team["participant_count"] == 3 and team["participant_roles"] == ["116153009", "223366009", "224891009"]
    assert team["organization_key"] == _key(ORG, "organization")
    assert team["organization_key"] in {r.organization_key for r in
                                        built["catalog"].read("silver.organization").collect()}
    old = teams[_key(TEAM_OLD, "care_team")]
    assert (old["status"], old["participant_count"], old["participant_roles"], old["reason_code"]) == (
        "inactive", 1, ["116153009"], None)
    assert (old["period_start"], old["period_end"]) == (datetime(2019, 5, 1, 8) + shift,
                                                        datetime(2019, 6, 1, 8) + shift)


def test_device_type_status_and_shifted_dates_without_udi(built: dict[str, Any]) -> None:
    patient_key = _key(SMART + MRN, "patient")
    shift = _shift(built, patient_key)
    devices = _by(built["tables"]["device"], "device_key")
    meter = devices[_key(DEVICE, "device")]
    assert (meter["patient_key"], meter["type_code"], meter["type_display"], meter["status"]) == (
        patient_key, "337414009", "Blood glucose meter (physical object)", "active")
    assert (meter["manufacture_date"], meter["expiration_date"]) == (date(2022, 1, 3) + shift,
                                                                    date(2047, 1, 3) + shift)
    cgm = devices[_key(DEVICE_2, "device")]
    assert (cgm["type_code"], cgm["type_display"], cgm["status"]) == (
        "702127004", "Continuous glucose monitor", "inactive")
    assert (cgm["manufacture_date"], cgm["expiration_date"]) == (date(2018, 6, 20) + shift,
                                                                date(2021, 6, 20) + shift)


def test_goals_statuses_dates_and_scrubbed_description(built: dict[str, Any]) -> None:
    patient_key = _key(SMART + MRN, "patient")
    shift = _shift(built, patient_key)
    goals = _by(built["tables"]["goal"], "goal_key")
    synthea = goals[_key("d4d60c56-2f5a-4c94-b885-c7bc5ffa1680", "goal")]
    assert (synthea["lifecycle_status"], synthea["achievement_status"], synthea["description"],
            synthea["start_date"], synthea["target_due_date"], synthea["condition_keys"]) == (
        "accepted", "in-progress", "Hemoglobin A1c total in Blood < 7.0", None, None, [])
    mine = goals[_key(GOAL, "goal")]
    assert (mine["patient_key"], mine["lifecycle_status"], mine["achievement_status"]) == (
        patient_key, "active", "improving")
    assert mine["start_date"] == date(2023, 2, 10) + shift
    assert mine["target_due_date"] == date(2023, 5, 10) + shift  # the earlier of the two targets
    assert mine["condition_keys"] == [_key(CONDITION, "condition")]
    assert "checks glucose before breakfast" in mine["description"]
    assert "[NAME]" in mine["description"] and "[PHONE]" in mine["description"]
    coded = goals[_key(GOAL_CODED, "goal")]
    assert (coded["lifecycle_status"], coded["description_code"], coded["description"]) == (
        "proposed", "160670007", "Diabetic diet")


def test_no_udi_serial_lot_or_names_in_silver(built: dict[str, Any]) -> None:
    catalog = built["catalog"]
    for table in TABLES:
        df = catalog.read(f"silver.{table}")
        text = "\n".join(r[0] for r in df.selectExpr("to_json(struct(*))").collect())
        leaked = [s for s in FORBIDDEN if s.lower() in text.lower()]
        assert leaked == [], f"silver.{table}: {leaked}"
    findings = scan(built["settings"], ["silver"], key=KEY.encode())
    assert findings == [], [f.line() for f in findings[:10]]
