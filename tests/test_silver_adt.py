"""The ADT event set folds into encounter and patient history: transfers, class changes, cancellations, pending
events, person updates and patient merges (HL7 v2.5.1 messages written here, one Silver build for the module).

Visits: V100 admitted to 4EAST (MED), transferred to the ICU and the transfer cancelled (the A02 was sent late,
so its message time is after the A12's: only the event time orders them right), transferred to 5WEST (SUR),
discharged, the discharge cancelled, discharged again. V200 registered (A04) and the registration cancelled (A11).
V300 discharged and the discharge cancelled (A13 last). V400 registered as an outpatient, changed to inpatient
(A06), then a pending discharge (A16) that changes nothing. silver.encounter_location keeps the stays. Patient
MRN2002 (visit V200 and a glucose result) is merged into MRN1001 (A40). MRN3003 is added (A28, no PV1) and, after
visit V400, updated (A31, PV1 without a visit number).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from helpers import ingest_and_build_silver, new_lakehouse

from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from silver.deid import pseudonym_py
from silver.deid.dates import date_shift_days_py

pytestmark = pytest.mark.slow

KEY = "adt-key-not-secret-0123456789abcdef"
FACILITY = "GENHOSP"
PATIENTS = {
    "MRN1001": "DOE^JANE^Q||19700412|F|||12 MAIN ST^^SPRINGFIELD^IL^62701^USA||^PRN^PH^^^217^5550101|||M",
    "MRN2002": "DOE^JANE||19700412|F|||40 ELM ST^^SPRINGFIELD^IL^62704^USA||^PRN^PH^^^217^5550199|||S",
    "MRN3003": "ROE^RICHARD||19581103|M|||7 OAK AVE^^PEORIA^IL^61602^USA||^PRN^PH^^^309^5550123|||S",
}
STRUCTURE = {"A01": "ADT_A01", "A02": "ADT_A02", "A03": "ADT_A03", "A04": "ADT_A01", "A06": "ADT_A06",
             "A11": "ADT_A09", "A12": "ADT_A12", "A13": "ADT_A01", "A16": "ADT_A16", "A28": "ADT_A05",
             "A31": "ADT_A05", "A40": "ADT_A39", "A08": "ADT_A01"}


def pv1(visit: str | None, klass: str, location: str = "", service: str = "", admit: str = "",
        discharge: str = "", disposition: str = "", prior_location: str = "", admission_type: str = "") -> str:
    f = [""] * 46
    f[1], f[2], f[3], f[4], f[6], f[10] = "1", klass, location, admission_type, prior_location, service
    f[7] = "1234^WELBY^MARCUS^^^DR"
    f[19] = f"{visit}^^^{FACILITY}^VN" if visit else ""
    f[36], f[44], f[45] = disposition, admit, discharge
    return "PV1|" + "|".join(f[1:]).rstrip("|")


def adt(control: str, sent: str, event: str, recorded: str, mrn: str, *rest: str, person: str = "",
        occurred: str = "") -> str:
    evn = f"EVN|{event}|{recorded}" + (f"||||{occurred}" if occurred else "")
    segs = [f"MSH|^~\\&|ADT1|{FACILITY}|LAKEHOUSE|{FACILITY}|{sent}||ADT^{event}^{STRUCTURE[event]}|{control}|P|2.5.1",
            evn, f"PID|1||{mrn}^^^{FACILITY}^MR||{person or PATIENTS[mrn]}", *rest]
    return "\r".join(segs) + "\r"


LOC_4EAST, LOC_ICU, LOC_5WEST = "4EAST^401^1^GENHOSP", "ICU^12^1^GENHOSP", "5WEST^510^2^GENHOSP"
MESSAGES = [
    # V100 (MRN1001)
    adt("V100-1", "20240301080100-0500", "A01", "20240301080000-0500", "MRN1001",
        pv1("V100", "I", LOC_4EAST, "MED", admit="20240301075500-0500", admission_type="E")),
    # sent late (message time after the A12's): the event time puts it before the A12
    adt("V100-2", "20240302110000-0500", "A02", "20240302100000-0500", "MRN1001",
        pv1("V100", "I", LOC_ICU, "CCM", admit="20240301075500-0500", prior_location=LOC_4EAST)),
    adt("V100-3", "20240302103100-0500", "A12", "20240302103000-0500", "MRN1001",
        pv1("V100", "I", LOC_4EAST, "MED", admit="20240301075500-0500", prior_location=LOC_ICU)),
    # recorded 15 minutes after the move (EVN-6 event occurred)
    adt("V100-4", "20240303090100-0500", "A02", "20240303090000-0500", "MRN1001",
        pv1("V100", "I", LOC_5WEST, "SUR", admit="20240301075500-0500", prior_location=LOC_4EAST),
        occurred="20240303084500-0500"),
    adt("V100-5", "20240305113100-0500", "A03", "20240305113000-0500", "MRN1001",
        pv1("V100", "I", LOC_5WEST, "SUR", admit="20240301075500-0500", discharge="20240305110000-0500",
            disposition="01")),
    # the sender echoes the cancelled discharge time in PV1-45: cleared all the same
    adt("V100-6", "20240305120100-0500", "A13", "20240305120000-0500", "MRN1001",
        pv1("V100", "I", LOC_5WEST, "SUR", admit="20240301075500-0500", discharge="20240305110000-0500")),
    adt("V100-7", "20240306140100-0500", "A03", "20240306140000-0500", "MRN1001",
        pv1("V100", "I", LOC_5WEST, "SUR", admit="20240301075500-0500", discharge="20240306133000-0500",
            disposition="01")),
    # V200 (MRN2002, merged into MRN1001 below)
    adt("V200-1", "20240310090100-0500", "A04", "20240310090000-0500", "MRN2002",
        pv1("V200", "O", "CLINIC^3^^GENHOSP", "CAR", admit="20240310085000-0500")),
    adt("V200-2", "20240310093100-0500", "A11", "20240310093000-0500", "MRN2002",
        pv1("V200", "O", "CLINIC^3^^GENHOSP", "CAR")),
    # V300 (MRN1001): discharged, discharge cancelled
    adt("V300-1", "20240401080100-0500", "A01", "20240401080000-0500", "MRN1001",
        pv1("V300", "I", LOC_4EAST, "MED", admit="20240401074500-0500", admission_type=" c ")),
    adt("V300-2", "20240403100100-0500", "A03", "20240403100000-0500", "MRN1001",
        pv1("V300", "I", LOC_4EAST, "MED", admit="20240401074500-0500", discharge="20240403093000-0500",
            disposition="01")),
    adt("V300-3", "20240403101600-0500", "A13", "20240403101500-0500", "MRN1001",
        pv1("V300", "I", LOC_4EAST, "MED", admit="20240401074500-0500")),
    # V400 (MRN3003): outpatient -> inpatient, then a pending discharge
    adt("V400-1", "20240501100100-0500", "A04", "20240501100000-0500", "MRN3003",
        pv1("V400", "O", "CLINIC^5^^GENHOSP", "CAR", admit="20240501095500-0500")),
    adt("V400-2", "20240501150100-0500", "A06", "20240501150000-0500", "MRN3003",
        pv1("V400", "I", LOC_5WEST, "CAR", admit="20240501095500-0500", prior_location="CLINIC^5^^GENHOSP")),
    adt("V400-3", "20240503090100-0500", "A16", "20240503090000-0500", "MRN3003",
        pv1("V400", "I", "ICU^2^1^GENHOSP", "CCM", admit="20240501095500-0500", discharge="20240504120000-0500",
            disposition="01")),
    # person events: no PV1, and a PV1 without a visit number (class N): no encounter
    adt("P3-1", "20240420080000-0500", "A28", "20240420080000-0500", "MRN3003"),
    adt("P3-2", "20240601080000-0500", "A31", "20240601080000-0500", "MRN3003", pv1(None, "N"),
        person=PATIENTS["MRN3003"].removesuffix("|||S") + "|||M"),
    # merge: MRN2002 (prior) into MRN1001 (survivor)
    adt("MERGE-1", "20240320120100-0500", "A40", "20240320120000-0500", "MRN1001",
        f"MRG|MRN2002^^^{FACILITY}^MR"),
    # a lab result of the prior patient, in visit V200
    "\r".join([
        f"MSH|^~\\&|LAB1|{FACILITY}|LAKEHOUSE|{FACILITY}|20240310091500-0500||ORU^R01^ORU_R01|LAB-1|P|2.5.1",
        f"PID|1||MRN2002^^^{FACILITY}^MR||{PATIENTS['MRN2002']}",
        pv1("V200", "O", "CLINIC^3^^GENHOSP", "CAR"),
        "ORC|RE|ORD1|FIL1",
        "OBR|1|ORD1|FIL1|2345-7^Glucose^LN|||20240310090500-0500",
        "OBX|1|NM|2345-7^Glucose [Mass/volume] in Serum or Plasma^LN||105|mg/dL|70-99|H|||F|||20240310090500-0500",
    ]) + "\r",
]


def key(value: str, namespace: str) -> str:
    """The pseudonym of ``value``; MRNs and visit numbers qualified by their authority first (silver.identity)."""
    qualified = f"{FACILITY}|{value}" if namespace in ("patient", "encounter") else value
    return pseudonym_py(qualified, KEY.encode(), namespace) or ""


def utc(text: str, patient_key: str) -> datetime:
    """A UTC wall time as Silver publishes it: moved by the patient's date shift (naive, as the session returns)."""
    days = date_shift_days_py(patient_key, KEY.encode(), 365)
    return datetime.fromisoformat(text) + timedelta(days=days)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("silver-adt")
    settings = new_lakehouse(root / "lh", pseudonym_key=KEY)
    feed = root / "feed"
    feed.mkdir()
    files = []
    for i, message in enumerate(MESSAGES):
        path = feed / f"msg_{i:02d}.hl7"
        path.write_bytes(message.encode())
        files.append(path)
    report = ingest_and_build_silver(settings, files)
    catalog = Catalog(spark, settings)  # type: ignore[arg-type]

    def rows(table: str) -> list[dict[str, Any]]:
        return [r.asDict() for r in catalog.read(f"silver.{table}").collect()]

    yield {"report": report, "rows": rows}
    set_settings(None)


def _encounters(built: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["encounter_key"]: r for r in built["rows"]("encounter")}


def test_transfers_cancellations_and_discharge_fold_in_event_time_order(built: dict[str, Any]) -> None:
    v100 = _encounters(built)[key("V100", "encounter")]
    p1 = key("MRN1001", "patient")
    assert v100["patient_key"] == p1
    assert (v100["location"], v100["department"], v100["encounter_class"]) == ("5WEST", "SUR", "inpatient")
    assert v100["status"] == "finished"
    assert v100["transfer_count"] == 1  # the ICU transfer was cancelled (A12)
    assert v100["admit_at"] == utc("2024-03-01T12:55:00", p1)
    assert v100["discharge_at"] == utc("2024-03-06T18:30:00", p1)  # the A03 after the A13
    assert v100["discharge_disposition"] == "01"
    assert (v100["last_adt_event"], v100["adt_event_count"]) == ("A03", 7)
    # PV1-4 of the A01 (later events leave it empty); the data reach past 30 days after the discharge
    assert (v100["admission_type"], v100["has_30_day_follow_up"]) == ("E", True)


def test_cancel_discharge_reopens_and_cancel_admit_marks_cancelled(built: dict[str, Any]) -> None:
    encs = _encounters(built)
    p1 = key("MRN1001", "patient")
    v300 = encs[key("V300", "encounter")]
    assert (v300["status"], v300["discharge_at"], v300["discharge_disposition"]) == ("in-progress", None, None)
    assert (v300["admission_type"], v300["has_30_day_follow_up"]) == ("C", None)  # trimmed upper-case; no discharge
    assert v300["admit_at"] == utc("2024-04-01T12:45:00", p1)
    assert (v300["location"], v300["department"], v300["transfer_count"]) == ("4EAST", "MED", 0)
    v200 = encs[key("V200", "encounter")]
    assert (v200["status"], v200["encounter_class"], v200["last_adt_event"]) == ("cancelled", "outpatient", "A11")
    # the survivor's date shift applies to the merged-away patient's visit
    assert v200["admit_at"] == utc("2024-03-10T13:50:00", p1)


def test_class_change_and_pending_events(built: dict[str, Any]) -> None:
    v400 = _encounters(built)[key("V400", "encounter")]
    p3 = key("MRN3003", "patient")
    assert v400["encounter_class"] == "inpatient"  # A06: PV1-2 of the latest event
    # the A16 pending discharge is counted, but moves nothing and discharges nobody
    assert (v400["status"], v400["discharge_at"], v400["location"], v400["department"]) == \
        ("in-progress", None, "5WEST", "CAR")
    assert (v400["last_adt_event"], v400["adt_event_count"], v400["transfer_count"]) == ("A16", 3, 0)
    assert v400["admit_at"] == utc("2024-05-01T14:55:00", p3)


def test_person_events_update_the_patient_and_create_no_encounter(built: dict[str, Any]) -> None:
    encs = _encounters(built)
    assert set(encs) == {key(v, "encounter") for v in ("V100", "V200", "V300", "V400")}
    patients = {r["patient_key"]: r for r in built["rows"]("patient")}
    p3 = patients[key("MRN3003", "patient")]
    assert (p3["gender"], p3["marital_status"], p3["zip3"]) == ("male", "M", "616")


def test_merge_rekeys_every_domain_to_the_survivor(built: dict[str, Any]) -> None:
    p1, p2 = key("MRN1001", "patient"), key("MRN2002", "patient")
    patients = {r["patient_key"]: r for r in built["rows"]("patient")}
    assert set(patients) == {p1, key("MRN3003", "patient")}  # no row for the prior key
    # the survivor's row carries the lineage of both patients' messages: 11 of MRN1001 (with the A40), 3 of MRN2002
    assert len(patients[p1]["bronze_hashes"]) == 14
    (obs,) = [r for r in built["rows"]("observation") if r["loinc_code"] == "2345-7"]
    assert obs["patient_key"] == p1 and obs["encounter_key"] == key("V200", "encounter")
    assert (obs["value_num"], obs["abnormal_flag"]) == (105.0, "H")
    assert obs["effective_at"] == utc("2024-03-10T14:05:00", p1)
    assert _encounters(built)[key("V200", "encounter")]["patient_key"] == p1
    for table in ("patient", "encounter", "observation"):
        assert all(r["patient_key"] != p2 for r in built["rows"](table)), table


def test_location_history_has_one_row_per_stay(built: dict[str, Any]) -> None:
    p1, p3 = key("MRN1001", "patient"), key("MRN3003", "patient")
    stays: dict[str, list[tuple[Any, ...]]] = {}
    for r in sorted(built["rows"]("encounter_location"), key=lambda r: (r["encounter_key"], r["sequence"])):
        stays.setdefault(r["encounter_key"], []).append(
            (r["sequence"], r["patient_key"], r["location"], r["department"], r["start_at"], r["end_at"],
             r["start_event"]))
    # the cancelled ICU transfer left no stay; the move to 5WEST dates from EVN-6; the last stay ends at discharge
    assert stays[key("V100", "encounter")] == [
        (1, p1, "4EAST", "MED", utc("2024-03-01T12:55:00", p1), utc("2024-03-03T13:45:00", p1), "A01"),
        (2, p1, "5WEST", "SUR", utc("2024-03-03T13:45:00", p1), utc("2024-03-06T18:30:00", p1), "A02")]
    assert stays[key("V200", "encounter")] == [
        (1, p1, "CLINIC", "CAR", utc("2024-03-10T13:50:00", p1), None, "A04")]  # the merged patient's visit
    assert stays[key("V300", "encounter")] == [(1, p1, "4EAST", "MED", utc("2024-04-01T12:45:00", p1), None, "A01")]
    assert stays[key("V400", "encounter")] == [  # the A16 pending discharge to the ICU is no stay
        (1, p3, "CLINIC", "CAR", utc("2024-05-01T14:55:00", p3), utc("2024-05-01T20:00:00", p3), "A04"),
        (2, p3, "5WEST", "CAR", utc("2024-05-01T20:00:00", p3), None, "A06")]


def test_every_domain_reconciles(built: dict[str, Any]) -> None:
    report = built["report"]
    assert report["patient"] == {**report["patient"], "bronze_input": 2, "silver": 2, "quarantined": 0}
    assert report["encounter"] == {**report["encounter"], "bronze_input": 4, "silver": 4, "quarantined": 0}
    assert report["encounter_location"] == {**report["encounter_location"], "bronze_input": 6, "silver": 6,
                                             "quarantined": 0}
    for table, counts in report.items():
        if isinstance(counts, dict) and "bronze_input" in counts:
            assert counts["silver"] + counts["quarantined"] == counts["bronze_input"], table
