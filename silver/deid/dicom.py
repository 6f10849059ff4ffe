"""DICOM header de-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile on a DICOM JSON
(PS3.18 F.2) header, with the Retain Longitudinal Temporal Information with Modified Dates option when a date
shift is given. The action table is ``dicom_basic_profile.csv`` (Table E.1-1, 'Basic Prof.' column).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from silver.deid.keys import EngineKey
from silver.deid.patterns import RECOGNIZERS
from silver.deid.pseudonym import pseudonym_py

if TYPE_CHECKING:
    from pyspark.sql import Column

PROFILE_CSV = Path(__file__).with_name("dicom_basic_profile.csv")
UID_NAMESPACE = "dicom-uid"
PATIENT_NAMESPACE = "patient"
PATIENT_ID = "00100020"
# File Meta Information is not in Table E.1-1 but must follow the SOP Instance UID it repeats
EXTRA_ACTIONS = {"00020003": "U"}
# An attribute flagged X/Z, Z/D, ... is resolved to the option that keeps the IOD valid without knowing its type
# the birth date is emptied even when other dates are shifted (90+ patients; silver.patient holds the policy's value)
NEVER_SHIFT = {"00100030", "00100032"}
RESOLVE = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U*"}
NUMERIC_VRS = {"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"}
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
DUMMY = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000Y", "CS": "ANONYMIZED"}
METHOD = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile (clinical-lakehouse silver.deid)"
CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
}


@cache
def profile_actions() -> tuple[dict[str, str], tuple[tuple[re.Pattern[str], str], ...]]:
    """(exact tag -> action, [(wildcard tag regex, action)]) from the shipped Table E.1-1."""
    lines = [ln for ln in PROFILE_CSV.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    exact: dict[str, str] = dict(EXTRA_ACTIONS)
    masks: list[tuple[re.Pattern[str], str]] = []
    for row in csv.DictReader(lines):
        tag, action = row["tag"].upper(), row["basic_profile"].strip()
        if "x" in row["tag"]:
            masks.append((re.compile("^" + row["tag"].upper().replace("X", "[0-9A-F]") + "$"), action))
        else:
            exact[tag] = action
    return exact, tuple(masks)


def action_for(tag: str) -> str | None:
    exact, masks = profile_actions()
    tag = tag.upper()
    if tag in exact:
        return exact[tag]
    for pattern, action in masks:
        if pattern.match(tag):
            return action
    return None


def dicom_uid_py(uid: str, key: bytes) -> str:
    """The lakehouse-wide replacement of a DICOM UID: ``2.25.<128-bit integer from HMAC(uid)>`` (at most 44 chars)."""
    digest = pseudonym_py(uid.strip().rstrip("\0"), key, UID_NAMESPACE)
    assert digest is not None
    return "2.25." + str(int(digest[:32], 16))


def scrub_text_py(text: str) -> str:
    """Python twin of the pattern part of ``scrub_text`` (for the DICOM clean action)."""
    for r in RECOGNIZERS:
        text = re.sub(r.regex, r.placeholder, text)
    return text


def _shift_da(value: str, days: int) -> str:
    v = value.strip()
    if len(v) != 8 or not v.isdigit():
        raise ValueError(f"DA value of length {len(v)} is not YYYYMMDD")
    return (date(int(v[:4]), int(v[4:6]), int(v[6:8])) + timedelta(days=days)).strftime("%Y%m%d")


def _shift_dt(value: str, days: int) -> str:
    v = value.strip()
    if len(v) < 8:
        return DUMMY["DT"]  # a year or year-month alone cannot be shifted by days
    return _shift_da(v[:8], days) + v[8:]


class _Context:
    def __init__(self, key: bytes, shift_days: int | None, patient_pseudonym: str | None) -> None:
        self.key = key
        self.shift_days = shift_days
        self.patient_pseudonym = patient_pseudonym


def _values(elem: dict[str, Any]) -> list[Any]:
    value = elem.get("Value")
    return value if isinstance(value, list) else []


def _dummy(vr: str, elem: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    if vr == "SQ":
        return {"vr": vr, "Value": [_deidentify(item, ctx) for item in _values(elem) if isinstance(item, dict)]}
    if vr == "UI":
        return _remap_uids(elem, ctx)
    if vr in BINARY_VRS:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": "ANONYMIZED"}]}
    if vr in NUMERIC_VRS:
        return {"vr": vr, "Value": [0]}
    return {"vr": vr, "Value": [DUMMY.get(vr, "ANONYMIZED")]}


def _remap_uids(elem: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    return {"vr": elem.get("vr", "UI"),
            "Value": [dicom_uid_py(v, ctx.key) if isinstance(v, str) and v.strip() else v for v in _values(elem)]}


def _shift(vr: str, elem: dict[str, Any], days: int) -> dict[str, Any]:
    if vr == "TM":  # whole-day shifts leave the time of day as it was
        return elem
    fn = _shift_da if vr == "DA" else _shift_dt
    return {"vr": vr, "Value": [fn(v, days) if isinstance(v, str) and v.strip() else v for v in _values(elem)]}


def _patient_id(elem: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    original = next((v for v in _values(elem) if isinstance(v, str) and v.strip()), None)
    pseudo = ctx.patient_pseudonym or (pseudonym_py(original.strip(), ctx.key, PATIENT_NAMESPACE) if original else None)
    return {"vr": "LO", "Value": [pseudo]} if pseudo else {"vr": "LO"}


def _element(tag: str, elem: dict[str, Any], ctx: _Context) -> dict[str, Any] | None:
    vr = str(elem.get("vr", "UN"))
    if tag == PATIENT_ID:
        return _patient_id(elem, ctx)
    action = action_for(tag)
    if action is None or action == "K":
        if vr == "SQ":
            return {"vr": vr, "Value": [_deidentify(item, ctx) for item in _values(elem) if isinstance(item, dict)]}
        return elem
    if vr in ("DA", "DT", "TM") and ctx.shift_days is not None and tag not in NEVER_SHIFT:
        return _shift(vr, elem, ctx.shift_days)
    action = RESOLVE.get(action, action)
    if action == "X":
        return None
    if action == "Z":
        return {"vr": vr}
    if action == "U":
        return _remap_uids(elem, ctx)
    if action == "U*":  # keep the references: the sequence is de-identified item by item, its UIDs remapped
        return _dummy("SQ", elem, ctx) if vr == "SQ" else _remap_uids(elem, ctx)
    if action == "C":
        return {"vr": vr, "Value": [scrub_text_py(v) if isinstance(v, str) else v for v in _values(elem)]}
    return _dummy(vr, elem, ctx)  # D


def _deidentify(dataset: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag, elem in dataset.items():
        tag = str(tag).upper()
        if len(tag) != 8 or not re.fullmatch(r"[0-9A-F]{8}", tag):
            raise ValueError(f"attribute key {tag[:12]!r} is not an 8-hex-digit DICOM tag")
        if int(tag[:4], 16) % 2 == 1:  # private group (creators and data): removed
            continue
        if not isinstance(elem, dict):
            raise ValueError(f"attribute {tag} is not a DICOM JSON object")
        new = _element(tag, elem, ctx)
        if new is not None:
            out[tag] = new
    return out


def _record(out: dict[str, Any], shifted: bool) -> dict[str, Any]:
    codes = ["113100"] + (["113107"] if shifted else [])
    out["00120062"] = {"vr": "CS", "Value": ["YES"]}
    out["00120063"] = {"vr": "LO", "Value": [METHOD]}
    out["00120064"] = {"vr": "SQ", "Value": [
        {"00080100": {"vr": "SH", "Value": [c]}, "00080102": {"vr": "SH", "Value": ["DCM"]},
         "00080104": {"vr": "LO", "Value": [CODES[c]]}} for c in codes]}
    out["00280303"] = {"vr": "CS", "Value": ["MODIFIED" if shifted else "REMOVED"]}
    return dict(sorted(out.items()))


def deidentify_dicom_json(header_json: str, key: bytes, date_shift_days: int | None,
                          patient_pseudonym: str | None = None) -> str:
    """De-identify one DICOM JSON header. Raises ``ValueError`` (with the reason) on input that is not one.

    ``date_shift_days``: the patient's shift (``date_shift_days_py``) to keep dates as shifted dates; ``None`` to
    apply the profile's own action (remove, empty or dummy). ``patient_pseudonym``: the PatientID to write;
    by default ``pseudonym_py(original PatientID, key, "patient")``.
    """
    try:
        dataset = json.loads(header_json)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"header is not JSON ({exc.__class__.__name__})") from None
    if isinstance(dataset, list) and len(dataset) == 1:  # a QIDO/WADO response holds a list of datasets
        dataset = dataset[0]
    if not isinstance(dataset, dict):
        raise ValueError("header is not a DICOM JSON dataset object")
    ctx = _Context(key, date_shift_days, patient_pseudonym)
    return json.dumps(_record(_deidentify(dataset, ctx), date_shift_days is not None), separators=(",", ":"))


def _deid_rows(headers: Iterator[tuple[Any, Any, Any]], key: bytes) -> Iterator[tuple[str | None, str | None]]:
    for header, pseudo, days in headers:
        if header is None:
            yield None, None
            continue
        try:
            shift = None if days is None or pd.isna(days) else int(days)
            yield deidentify_dicom_json(header, key, shift, pseudo if isinstance(pseudo, str) else None), None
        except (ValueError, OverflowError) as exc:
            yield None, str(exc)


def deidentify_dicom_column(header_col: Column, key: EngineKey, patient_pseudonym_col: Column | None = None,
                            date_shift_days_col: Column | None = None) -> Column:
    """Spark column ``struct<header_json: string, deid_error: string>`` (a pandas UDF around the function above).

    A row whose header cannot be de-identified gets ``header_json = NULL`` and the reason in ``deid_error``:
    quarantine it. The UDF reads the key on the engine (:class:`EngineKey`): no key material in the plan.
    """
    @pandas_udf("header_json string, deid_error string")  # type: ignore[call-overload]
    def _deid(headers: pd.Series, pseudos: pd.Series, days: pd.Series) -> pd.DataFrame:
        rows = list(_deid_rows(zip(headers, pseudos, days, strict=True), key.load()))
        return pd.DataFrame(rows, columns=["header_json", "deid_error"])

    pseudo = patient_pseudonym_col if patient_pseudonym_col is not None else F.lit(None).cast("string")
    shift = date_shift_days_col if date_shift_days_col is not None else F.lit(None).cast("int")
    return _deid(header_col.cast("string"), pseudo.cast("string"), shift.cast("int")).alias("dicom_deid")
