"""silver.observation from lab results as labs send them: HL7 v2.5.1 ORU^R01 (two OBR groups that both restart
OBX-1 at 1, SN comparators/ranges/ratios, coded, formatted-text, embedded-data and date results, NTE comments, SPM
specimens, OBX-23 performing lab, a preliminary send and then the final one of the same MSH-10) and OUL^R22 (SPM,
its own OBX, then OBR with OBX). Hand-written from the v2.5.1 message structures; built once for the module."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from helpers import ingest_and_build_silver, new_lakehouse

from lakehouse.catalog import Catalog
from lakehouse.config import set_settings
from silver.deid import date_shift_days_py, pseudonym_py

pytestmark = pytest.mark.slow

KEY = "labs-key-not-secret-0123456789abcdef"
MRN, VISIT, OUL_VISIT = "MRN70017", "VN70017", "VN70018"
SENDER = "LABSYS^2.16.840.1.113883.3.999.1^ISO"
FACILITY = "CITYLAB^2.16.840.1.113883.3.999.2^ISO"
BASE64 = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK"
LAB = "City Hospital Laboratory^L^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^05D0000001"
STATE_LAB = "State Hygienic Laboratory^L^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^16D0648109"


def seg(name: str, fields: dict[int, str]) -> str:
    """One segment with fields by their HL7 number (MSH numbering starts at MSH-3: MSH-1/2 are written)."""
    n = max(fields)
    values = [fields.get(i, "") for i in range(1, n + 1)]
    if name == "MSH":
        return "MSH|^~\\&|" + "|".join(values[2:])
    return "|".join([name, *values])


def msh(control_id: str, sent: str, message_type: str, sender: str = SENDER, facility: str = FACILITY) -> str:
    return seg("MSH", {3: sender, 4: facility, 5: "EHR", 6: "GENHOSP", 7: sent, 9: message_type, 10: control_id,
                       11: "P", 12: "2.5.1", 15: "AL", 16: "NE"})


def pid() -> str:
    return seg("PID", {1: "1", 3: f"{MRN}^^^GENHOSP^MR", 5: "Testperson^Alicia^Q", 7: "19700412", 8: "F",
                       11: "12 Elm St^^Springfield^IL^62701^USA", 13: "^PRN^PH^^1^217^5550123"})


def pv1(visit: str) -> str:
    return seg("PV1", {1: "1", 2: "O", 3: "LAB^^^GENHOSP", 7: "1234^Welby^Marcus^^^Dr^MD", 19: visit})


def obx(set_id: str, vtype: str, code: str, value: str, unit: str = "", ref: str = "", flags: str = "",
        status: str = "F", at: str = "", lab: str = "") -> str:
    return seg("OBX", {1: set_id, 2: vtype, 3: code, 5: value, 6: unit, 7: ref, 8: flags, 11: status, 14: at,
                       23: lab})


PRELIMINARY = [
    msh("LABMSG0001", "20240305110000-0500", "ORU^R01^ORU_R01"), pid(), pv1(VISIT),
    seg("ORC", {1: "RE", 2: "ORD1001^EHR", 3: "FIL1001^LABSYS", 5: "IP"}),
    seg("OBR", {1: "1", 2: "ORD1001^EHR", 3: "FIL1001^LABSYS", 4: "24323-8^Comprehensive metabolic panel^LN",
                7: "20240305081500-0500", 25: "P"}),
    obx("1", "NM", "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN", "104", "mg/dL", "70-99", "H", "P",
        "20240305081500-0500", LAB),
]
ORU = [
    msh("LABMSG0001", "20240305143000-0500", "ORU^R01^ORU_R01"), pid(), pv1(VISIT),
    seg("ORC", {1: "RE", 2: "ORD1001^EHR", 3: "FIL1001^LABSYS", 5: "CM"}),
    seg("OBR", {1: "1", 2: "ORD1001^EHR", 3: "FIL1001^LABSYS", 4: "24323-8^Comprehensive metabolic panel^LN",
                7: "20240305081500-0500", 22: "20240305142500-0500", 24: "CH", 25: "F"}),
    obx("1", "NM", "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN", "105", "mg/dL", "70-99", "H~A", "F",
        "20240305081500-0500", LAB),
    obx("2", "SN", "2160-0^Creatinine [Mass/volume] in Serum or Plasma^LN", "<^0.5", "mg/dL", "0.6 - 1.2", "L",
        "F", "20240305081500-0500", LAB),
    obx("3", "SN", "5804-0^Protein [Mass/volume] in Urine by Test strip^LN", "^1^-^5", "mg/dL", "<15", "", "F",
        "20240305081500-0500", LAB),
    obx("4", "FT", "8251-1^Service comment^LN",
        "Specimen slightly hemolyzed.\\.br\\Potassium may be falsely elevated.~Called Alicia Testperson at "
        "217-555-0123.", status="F"),
    seg("NTE", {1: "1", 2: "L", 3: "Result verified by repeat analysis."}),
    seg("NTE", {1: "2", 2: "L", 3: "Alicia Testperson notified."}),
    seg("SPM", {1: "1", 2: "SP1001&LABSYS", 4: "SER^Serum^HL70487", 11: "P", 17: "20240305081500-0500"}),
    seg("OBR", {1: "2", 2: "ORD1002^EHR", 3: "FIL1002^LABSYS",
                4: "625-4^Bacteria identified in Stool by Culture^LN", 7: "20240304100000-0500",
                22: "20240305142500-0500", 24: "MB", 25: "F"}),
    seg("NTE", {1: "1", 3: "Order comment, not a result comment."}),
    obx("1", "CWE", "625-4^Bacteria identified in Stool by Culture^LN",
        "27268008^Salmonella^SCT^^^^^^Salmonella species", flags="A", status="F", at="20240305090000-0500",
        lab=STATE_LAB),
    seg("NTE", {1: "1", 3: "Reported to the state health department."}),
    obx("2", "ED", "11502-2^Laboratory report^LN", f"LABSYS^AP^PDF^Base64^{BASE64}", status="F"),
    obx("3", "SN", "22314-9^Hepatitis A virus IgM Ab [Titer] in Serum^LN", "^1^:^128", ref="<1:16", flags="H",
        status="C", at="20240305090000-0500"),
    obx("4", "TS", "8665-2^Last menstrual period start date^LN", "20240220", status="F"),
    seg("SPM", {1: "1", 2: "SP1002&LABSYS", 4: "STL^Stool^HL70487", 11: "P", 17: "20240304100000-0500"}),
]
OUL = [
    msh("LABMSG0002", "20240306101500+0000", "OUL^R22^OUL_R22"), pid(), pv1(OUL_VISIT),
    seg("SPM", {1: "1", 2: "SP2001&LABSYS", 4: "BLD^Whole blood^HL70487", 11: "P", 17: "20240306090000+0000"}),
    obx("1", "NM", "SPVOL^Specimen volume^L", "3", "mL", status="F"),
    seg("SAC", {3: "CONT2001^LABSYS"}),
    seg("OBR", {1: "1", 2: "ORD2001^EHR", 3: "FIL2001^LABSYS",
                4: "57021-8^CBC W Auto Differential panel - Blood^LN", 7: "20240306090000+0000"}),
    seg("ORC", {1: "SC", 2: "ORD2001^EHR", 3: "FIL2001^LABSYS", 5: "CM"}),
    obx("1", "NM", "718-7^Hemoglobin [Mass/volume] in Blood^LN", "13.2", "g/dL", "12.0-15.5 g/dL", "N", "F",
        "20240306093000+0000", LAB),
    obx("2", "NM", "6690-2^Leukocytes [#/volume] in Blood by Automated count^LN", "11.8", "10*3/uL", "4.5-11.0",
        "H", "P", "20240306093000+0000", LAB),
]


def _key(value: str, namespace: str) -> str:
    return pseudonym_py(value, KEY.encode(), namespace)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark: object) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("silver-labs")
    settings = new_lakehouse(tmp / "lh", pseudonym_key=KEY)
    files = []
    for name, message in (("oru_preliminary.hl7", PRELIMINARY), ("oru_final.hl7", ORU), ("oul_r22.hl7", OUL)):
        path = tmp / name
        path.write_bytes("\r".join(message).encode() + b"\r")
        files.append(path)
    report = ingest_and_build_silver(settings, files)
    catalog = Catalog(spark, settings)  # type: ignore[arg-type]
    rows = [r.asDict() for r in catalog.read("silver.observation").collect()]
    by_code: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_code.setdefault(r["code_original"], []).append(r)
    patient_key = _key(f"GENHOSP|{MRN}", "patient")  # PID-3 with its authority (silver.identity)
    shift = timedelta(days=date_shift_days_py(patient_key, KEY.encode(), settings.max_shift_days))
    yield {"report": report, "rows": rows, "by_code": by_code, "shift": shift, "patient_key": patient_key}
    set_settings(None)


def _one(built: dict[str, Any], code: str) -> dict[str, Any]:
    rows = built["by_code"][code]
    assert len(rows) == 1, code
    return rows[0]


def test_every_obx_lands_once_and_reconciles(built: dict[str, Any]) -> None:
    # 1 OBX of the preliminary send, 8 of the final one (a different body: a message of its own), 3 of the OUL^R22;
    # the preliminary glucose is a version of the final one (same order and test): superseded, one result
    assert built["report"]["observation"] == {**built["report"]["observation"], "bronze_input": 11, "silver": 11,
                                              "quarantined": 0, "superseded_results": 1}
    rows = built["rows"]
    # set ids 1-4 twice in the ORU and 1 twice in the OUL: every result has a key of its own
    assert len({r["observation_key"] for r in rows}) == 11
    assert all(len(r["observation_key"]) == 64 for r in rows)
    codes = {"2345-7": 1, "2160-0": 1, "5804-0": 1, "8251-1": 1, "625-4": 1, "11502-2": 1, "22314-9": 1, "8665-2": 1,
             "SPVOL": 1, "718-7": 1, "6690-2": 1}
    assert {c: len(v) for c, v in built["by_code"].items()} == codes
    assert all(r["patient_key"] == built["patient_key"] for r in rows)
    assert all(r["sources"] == ["hl7v2"] and r["category"] == "laboratory" for r in rows)


def test_numeric_and_structured_numeric_results(built: dict[str, Any]) -> None:
    shift = built["shift"]
    # OBX-11 P in the first send, F in the final one: one result, the final version, both messages in its lineage
    glucose = _one(built, "2345-7")
    assert (glucose["status"], glucose["value_num"], len(glucose["bronze_hashes"])) == ("final", 105.0, 2)
    assert (glucose["loinc_code"], glucose["value_num"], glucose["unit"], glucose["value_comparator"]) == \
        ("2345-7", 105.0, "mg/dL", None)
    assert (glucose["ref_low"], glucose["ref_high"], glucose["ref_text"]) == (70.0, 99.0, "70-99")
    assert glucose["interpretation"] == "H,A" and glucose["abnormal_flag"] == "H"
    assert glucose["effective_at"] == datetime(2024, 3, 5, 13, 15) + shift  # 08:15 -05:00 in UTC
    assert glucose["encounter_key"] == _key(f"|{VISIT}", "encounter")
    assert glucose["performing_organization"] == "City Hospital Laboratory"
    assert (glucose["specimen_type"], glucose["specimen_display"]) == ("SER", "Serum")

    creatinine = _one(built, "2160-0")
    assert (creatinine["value_comparator"], creatinine["value_num"], creatinine["unit"]) == ("<", 0.5, "mg/dL")
    assert (creatinine["ref_low"], creatinine["ref_high"]) == (0.6, 1.2)  # "0.6 - 1.2"
    assert creatinine["abnormal_flag"] == "L"  # below 0.5 is certainly below 0.6

    protein = _one(built, "5804-0")
    assert (protein["value_num"], protein["value_low"], protein["value_high"]) == (None, 1.0, 5.0)
    assert protein["value_text"] == "1-5" and protein["value_comparator"] is None
    assert (protein["ref_low"], protein["ref_high"], protein["ref_text"]) == (None, 15.0, "<15")

    titer = _one(built, "22314-9")
    assert (titer["value_text"], titer["value_num"], titer["status"]) == ("1:128", None, "corrected")
    assert titer["ref_text"] == "<1:16" and titer["interpretation"] == "H"
    assert (titer["ref_low"], titer["ref_high"]) == (None, None)  # a ratio is no numeric bound


def test_text_coded_embedded_and_date_results(built: dict[str, Any]) -> None:
    shift = built["shift"]
    comment = _one(built, "8251-1")
    text = comment["value_text"]
    assert text.startswith("Specimen slightly hemolyzed.\nPotassium may be falsely elevated.\nCalled ")
    assert "Result verified by repeat analysis." in text and "notified." in text  # the NTEs after the OBX
    assert "Testperson" not in text and "Alicia" not in text and "555-0123" not in text
    assert comment["value_num"] is None and comment["status"] == "final"

    culture = _one(built, "625-4")
    assert (culture["value_code"], culture["value_code_system"], culture["value_display"]) == \
        ("27268008", "SCT", "Salmonella")
    assert culture["value_text"] == "Reported to the state health department."  # not the OBR's NTE
    assert culture["performing_organization"] == "State Hygienic Laboratory"
    assert (culture["specimen_type"], culture["specimen_display"]) == ("STL", "Stool")  # its group's SPM
    assert culture["effective_at"] == datetime(2024, 3, 5, 14, 0) + shift

    report = _one(built, "11502-2")
    assert report["value_text"] == "[embedded data not loaded]"
    assert not any(BASE64[:12] in str(v) for r in built["rows"] for v in r.values())

    lmp = _one(built, "8665-2")
    assert lmp["value_time"] == datetime(2024, 2, 20) + shift and lmp["value_text"] is None
    # without OBX-14 the time of its OBR (OBR-7)
    assert lmp["effective_at"] == datetime(2024, 3, 4, 15, 0) + shift


def test_oul_r22_specimen_and_order_results(built: dict[str, Any]) -> None:
    shift = built["shift"]
    volume, hemoglobin, leukocytes = (_one(built, c) for c in ("SPVOL", "718-7", "6690-2"))
    assert all((r["specimen_type"], r["specimen_display"]) == ("BLD", "Whole blood")
               for r in (volume, hemoglobin, leukocytes))
    assert all(r["encounter_key"] == _key(f"|{OUL_VISIT}", "encounter") for r in (volume, hemoglobin, leukocytes))
    # a specimen observation before any OBR: the time of its SPM (SPM-17)
    assert (volume["value_original"], volume["unit_original"]) == (3.0, "mL")
    assert volume["effective_at"] == datetime(2024, 3, 6, 9, 0) + shift
    assert (hemoglobin["loinc_code"], hemoglobin["value_num"], hemoglobin["unit"]) == ("718-7", 13.2, "g/dL")
    assert (hemoglobin["ref_low"], hemoglobin["ref_high"], hemoglobin["abnormal_flag"]) == (12.0, 15.5, "N")
    assert hemoglobin["effective_at"] == datetime(2024, 3, 6, 9, 30) + shift
    assert (leukocytes["value_original"], leukocytes["unit_original"], leukocytes["status"]) == \
        (11.8, "10*3/uL", "preliminary")
    assert leukocytes["interpretation"] == "H" and leukocytes["performing_organization"] == "City Hospital Laboratory"
