"""Unit normalization on the real engine: UCUM conversions from ucumvert, applied with a join."""

from __future__ import annotations

import pytest

from silver import units
from silver.terminology import rows


def _normalize(spark, data: list[tuple], **kwargs):
    df = spark.createDataFrame(data, "id STRING, loinc_code STRING, value DOUBLE, unit STRING")
    return {r.id: r for r in units.normalize_units(df, **kwargs).collect()}


@pytest.mark.fast
def test_unit_spellings_are_unambiguous_and_every_target_parses() -> None:
    lowered: dict[str, str] = {}
    for text, ucum in rows("unit_synonyms"):
        key = str(text).strip().lower()
        assert lowered.setdefault(key, str(ucum)) == ucum, f"{text!r} means two units"
    for unit in units.known_ucum_units():
        assert units._ucum(unit) is not None


def test_clinical_conversions(spark) -> None:
    out = _normalize(spark, [
        ("glu_mass", "2345-7", 180.0, "mg/dl"), ("glu_molar", "15074-8", 180.0, "MG/DL"),
        ("glu_back", "2345-7", 10.0, "mmol/L"), ("temp_f", "8310-5", 98.6, "degF"), ("temp_deg", "8310-5", 98.6, "°F"),
        ("temp_c", "8310-5", 37.2, "Cel"), ("wt_lb", "29463-7", 154.0, "lbs"), ("wt_kg", "29463-7", 70.0, "kg"),
        ("creat", "14682-9", 1.0, "mg/dL"), ("hr", "8867-4", 72.0, "bpm"), ("wbc", "6690-2", 7.5, "K/uL"),
        ("wbc_si", "6690-2", 7.5, "10*9/L"), ("na", "2951-2", 140.0, "mEq/L"), ("ca", "17861-6", 2.5, "mmol/L"),
        ("ca_meq", "17861-6", 5.0, "mEq/L"), ("hgb", "718-7", 138.0, "g/L"), ("inr", "6301-6", 1.1, None),
    ])
    expected = {"glu_mass": (180.0, "mg/dL"), "glu_molar": (9.99, "mmol/L"), "glu_back": (180.16, "mg/dL"),
                "temp_f": (37.0, "Cel"), "temp_deg": (37.0, "Cel"), "temp_c": (37.2, "Cel"),
                "wt_lb": (69.85, "kg"), "wt_kg": (70.0, "kg"), "creat": (88.4, "umol/L"), "hr": (72.0, "/min"),
                "wbc": (7.5, "10*3/uL"), "wbc_si": (7.5, "10*3/uL"), "na": (140.0, "mmol/L"), "ca": (10.02, "mg/dL"),
                "ca_meq": (10.02, "mg/dL"), "hgb": (13.8, "g/dL"), "inr": (1.1, "{INR}")}
    for rid, (value, unit) in expected.items():
        r = out[rid]
        assert r.is_unit_known is True, rid
        assert r.unit == unit, rid
        assert r.value_num == pytest.approx(value, abs=0.01), rid
    assert out["temp_f"].value_num == 37.0  # rounding noise removed
    assert (out["wt_lb"].value_original, out["wt_lb"].unit_original) == (154.0, "lbs")


def test_unknown_and_incompatible_units_are_flagged_not_guessed(spark) -> None:
    out = _normalize(spark, [
        ("unknown", "2345-7", 100.0, "furlongs"), ("wrong_dim", "29463-7", 70.0, "mmHg"),
        ("bare_percent", "59408-5", 97.0, None), ("inr_as_pct", "59408-5", 1.0, "{INR}"),
        ("iu_to_count", "6690-2", 5.0, "mIU/L"), ("no_value", "2345-7", None, "mg/dL"),
        ("no_canonical", "99999-9", 5.0, "mg/dl"), ("no_canonical_unknown", "99999-9", 5.0, "zz"),
    ])
    for rid in ("unknown", "wrong_dim", "bare_percent", "inr_as_pct", "iu_to_count"):
        r = out[rid]
        assert (r.is_unit_known, r.value_num, r.unit) == (False, None, None), rid
        assert r.value_original is not None
    assert (out["no_value"].is_unit_known, out["no_value"].value_num) == (None, None)
    assert (out["no_canonical"].is_unit_known, out["no_canonical"].value_num, out["no_canonical"].unit) == \
        (True, 5.0, "mg/dL")
    assert (out["no_canonical_unknown"].is_unit_known, out["no_canonical_unknown"].value_num) == (False, None)
    assert (out["unknown"].unit_original, out["bare_percent"].unit_original) == ("furlongs", None)


def test_reference_range_converted_with_the_value(spark) -> None:
    df = spark.createDataFrame([("2345-7", 5.5, "mmol/L", 3.9, 5.5)],
                               "loinc_code STRING, value DOUBLE, unit STRING, ref_low DOUBLE, ref_high DOUBLE")
    r = units.normalize_units(df, convert_also=("ref_low", "ref_high")).collect()[0]
    assert (r.value_num, r.ref_low, r.ref_high) == pytest.approx((99.09, 70.26, 99.09), abs=0.01)
