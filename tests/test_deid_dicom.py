"""DICOM JSON headers: PS3.15 Annex E Basic Profile, nested sequences, private tags, UID remapping, recording."""

from __future__ import annotations

import json

import pytest
from helpers import engine_key
from pyspark.sql import functions as F

from silver.deid.dates import date_shift_days_py
from silver.deid.dicom import action_for, deidentify_dicom_column, deidentify_dicom_json, dicom_uid_py
from silver.deid.pseudonym import pseudonym_py

KEY = b"unit-test-key-0123456789abcdef"
STUDY, SERIES, SOP = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def header() -> dict:
    return {
        "00080016": {"vr": "UI", "Value": [CT_IMAGE]},
        "00080018": {"vr": "UI", "Value": [SOP]},
        "00080020": {"vr": "DA", "Value": ["20210314"]},
        "00080030": {"vr": "TM", "Value": ["101500"]},
        "00080050": {"vr": "SH", "Value": ["ACC998877"]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00080080": {"vr": "LO", "Value": ["Springfield General"]},
        "00080090": {"vr": "PN", "Value": [{"Alphabetic": "House^Gregory"}]},
        "00081030": {"vr": "LO", "Value": ["CT chest for Maria Smith"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Smith^Maria"}]},
        "00100020": {"vr": "LO", "Value": ["MRN00482913"]},
        "00100030": {"vr": "DA", "Value": ["19520704"]},
        "00101040": {"vr": "LO", "Value": ["42 Elm Street"]},
        "0020000D": {"vr": "UI", "Value": [STUDY]},
        "0020000E": {"vr": "UI", "Value": [SERIES]},
        "00280010": {"vr": "US", "Value": [512]},
        "00091001": {"vr": "LO", "Value": ["private vendor data: Smith"]},
        "00090010": {"vr": "LO", "Value": ["ACME 1.1"]},
        "00081140": {"vr": "SQ", "Value": [{  # Referenced Image Sequence
            "00081150": {"vr": "UI", "Value": [CT_IMAGE]},
            "00081155": {"vr": "UI", "Value": [SOP]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Smith^Maria"}]},
            "00111010": {"vr": "LO", "Value": ["nested private"]},
        }]},
        "00400275": {"vr": "SQ", "Value": [{  # Request Attributes Sequence
            "00401001": {"vr": "SH", "Value": ["RP-77"]},
            "0040A730": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["X"]},
                                                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Deep^Name"}]}}]},
        }]},
    }


def walk(ds: dict):
    for tag, elem in ds.items():
        yield tag, elem
        if elem.get("vr") == "SQ":
            for item in elem.get("Value", []):
                yield from walk(item)


@pytest.fixture(scope="module")
def shifted() -> dict:
    days = date_shift_days_py(pseudonym_py("MRN00482913", KEY, "patient") or "", KEY, 365)
    return json.loads(deidentify_dicom_json(json.dumps(header()), KEY, days))


@pytest.mark.fast
def test_profile_table_is_the_standard_one() -> None:
    assert action_for("00100010") == "Z" and action_for("00100030") == "Z"
    assert action_for("0020000D") == "U" and action_for("00081030") == "X"
    assert action_for("60224000") == "X"  # overlay comments, repeating group 60xx
    assert action_for("00280010") is None  # Rows: kept


@pytest.mark.fast
def test_identifiers_removed_everywhere_including_sequences(shifted: dict) -> None:
    text = json.dumps(shifted)
    for phi in ("Smith", "Maria", "Deep^Name", "MRN00482913", "19520704", "ACC998877", "House", "Elm", "RP-77"):
        assert phi not in text, phi
    assert "00081030" not in shifted and "00101040" not in shifted  # X: removed
    assert shifted["00100010"] == {"vr": "PN"} and shifted["00100030"] == {"vr": "DA"}  # Z: empty
    assert shifted["00100020"]["Value"] == [pseudonym_py("MRN00482913", KEY, "patient")]


@pytest.mark.fast
def test_private_tags_removed_at_every_depth(shifted: dict) -> None:
    assert not [tag for tag, _ in walk(shifted) if int(tag[:4], 16) % 2 == 1]


@pytest.mark.fast
def test_uids_remapped_consistently_and_classes_kept(shifted: dict) -> None:
    assert shifted["0020000D"]["Value"] == [dicom_uid_py(STUDY, KEY)]
    assert shifted["00080018"]["Value"][0].startswith("2.25.") and len(shifted["00080018"]["Value"][0]) <= 64
    ref = shifted["00081140"]["Value"][0]
    assert ref["00081155"]["Value"] == shifted["00080018"]["Value"]  # the link between instances survives
    assert ref["00081150"]["Value"] == [CT_IMAGE] == shifted["00080016"]["Value"]
    other = json.loads(deidentify_dicom_json(json.dumps(header()), b"other-key-0123456789", None))
    assert other["0020000D"]["Value"] != shifted["0020000D"]["Value"]


@pytest.mark.fast
def test_dates_shifted_times_kept_and_method_recorded(shifted: dict) -> None:
    days = date_shift_days_py(pseudonym_py("MRN00482913", KEY, "patient") or "", KEY, 365)
    import datetime as dt

    expected = (dt.date(2021, 3, 14) + dt.timedelta(days=days)).strftime("%Y%m%d")
    assert shifted["00080020"]["Value"] == [expected] and shifted["00080030"]["Value"] == ["101500"]
    assert shifted["00120062"]["Value"] == ["YES"]
    assert "Basic Application Level Confidentiality Profile" in shifted["00120063"]["Value"][0]
    codes = [item["00080100"]["Value"][0] for item in shifted["00120064"]["Value"]]
    assert codes == ["113100", "113107"] and shifted["00280303"]["Value"] == ["MODIFIED"]


@pytest.mark.fast
def test_without_shift_dates_follow_the_profile() -> None:
    out = json.loads(deidentify_dicom_json(json.dumps(header()), KEY, None, patient_pseudonym="abc"))
    assert out["00080020"] == {"vr": "DA"} and out["00100020"]["Value"] == ["abc"]
    assert [i["00080100"]["Value"][0] for i in out["00120064"]["Value"]] == ["113100"]


@pytest.mark.parametrize("bad", ["not json", "[1, 2]", '{"0010": {"vr": "PN"}}', '{"00100010": "x"}'])
@pytest.mark.fast
def test_bad_headers_raise_with_a_reason(bad: str) -> None:
    with pytest.raises(ValueError):
        deidentify_dicom_json(bad, KEY, None)


def test_spark_column_matches_python_and_reports_errors(spark) -> None:
    good = json.dumps(header())
    df = spark.createDataFrame([(good, "pk1", 12), ("not json", "pk2", None), (None, None, None)],
                               "h string, pk string, days int")
    rows = df.select(deidentify_dicom_column(F.col("h"), engine_key(KEY), F.col("pk"), F.col("days"))).collect()
    assert rows[0][0].header_json == deidentify_dicom_json(good, KEY, 12, "pk1") and rows[0][0].deid_error is None
    assert rows[1][0].header_json is None and "not JSON" in rows[1][0].deid_error
    assert rows[2][0].header_json is None and rows[2][0].deid_error is None
