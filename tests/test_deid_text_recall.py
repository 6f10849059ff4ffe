"""Scrubbing recall on the hand-written case list (silver/deid/scrub_cases.csv) and false positives on clinical
phrases without PHI (silver/deid/scrub_benign.csv), measured by benchmarks/scrub_recall.py on the real engine;
the recognizers as Python reads them; the free-text exclusion; the known identifiers of relatives and contacts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pyspark.sql import functions as F

from benchmarks.scrub_recall import benign_false_positives, case_recall, load_benign, load_cases
from lakehouse.config import load_settings
from silver.deid.patterns import MERGED_RECOGNIZERS, RECOGNIZERS, Recognizer
from silver.deid.text import exclude_free_text, free_text_columns, known_identifiers, scrub_text
from silver.schemas import TABLES, columns


@pytest.fixture(scope="module")
def cases(spark: Any) -> dict[str, Any]:
    return case_recall(spark)


@pytest.fixture(scope="module")
def benign(spark: Any) -> dict[str, Any]:
    return benign_false_positives(spark)


def test_every_planted_identifier_of_the_case_list_is_gone(cases: dict[str, Any]) -> None:
    assert cases["cases"] >= 45 and cases["planted"] >= 70
    assert cases["missed"] == [], cases["missed"]
    assert cases["removed"] == cases["planted"] and cases["recall"] == 1.0
    assert cases["placeholders_missing"] == [], cases["placeholders_missing"]


@pytest.mark.parametrize(("case", "expected"), [
    # the examples: relatives and contacts, unit numbers, ages, partial dates, accession and serial numbers
    ("nk1_name", "Daughter [NAME] [NAME] called; spoke with [NAME] about discharge."),
    ("guarantor_name", "Guarantor [NAME] [NAME] agreed to a payment plan."),
    ("insured_name_policy", "Insured: [NAME] [NAME] (spouse), policy [ID]"),
    ("nk1_address_unit", "Lives at [ADDRESS] with her son."),
    ("address_hash_unit", "Home is [ADDRESS] now."),
    ("address_tail", "Home: [ADDRESS]"),
    ("address_partial", "Moved from [ADDRESS] last year."),
    ("unit_unknown", "moved to [ADDRESS] last month"),
    ("age_yo", "[AGE90+] female with CHF"),
    ("age_year_old", "a [AGE90+] man"),
    ("age_aged", "[AGE90+], lives alone"),
    ("age_yo_short", "[AGE90+] M presents"),
    ("date_month_day", "seen [DATE] for follow-up"),
    ("date_dd_mon_yyyy", "admitted [DATE]"),
    ("date_month_name_day", "Surgery on [DATE] went well"),
    ("date_dotted", "ECG dated [DATE] normal"),
    ("date_year_month", "symptoms since [DATE]"),
    ("date_cue_small_day", "on [DATE] started metformin"),
    ("accession", "CT [ID] reviewed"),
    ("serial_sn", "Pacemaker [ID] interrogated"),
    ("relative_unknown", "wife [NAME] at bedside"),
    ("nok_unknown", "NOK: [NAME] [PHONE]"),
    ("title_unknown", "Mrs. [NAME] called about results"),
])
def test_case_output(cases: dict[str, Any], case: str, expected: str) -> None:
    assert cases["outputs"][case] == expected


def test_clinical_phrases_survive(benign: dict[str, Any]) -> None:
    assert benign["texts"] >= 35
    # the one accepted false positive: a five-digit code is taken for a ZIP code
    assert benign["changes"] == [{"text": "ICD-10 E11.9, CPT 99213", "output": "ICD-10 E11.9, CPT [ZIP]"}]
    assert benign["changed"] == 1 and benign["placeholders"] == 1


def test_ages_up_to_89_stay_and_over_89_go(spark: Any) -> None:
    df = spark.createDataFrame([("89-year-old, aged 89, 89 yo",), ("90-year-old, aged 90, 104 y/o",)], "t string")
    assert [r[0] for r in df.select(scrub_text(F.col("t"))).collect()] == [
        "89-year-old, aged 89, 89 yo", "[AGE90+], [AGE90+], [AGE90+]"]


def test_relative_in_known_identifiers_goes_without_a_cue(spark: Any) -> None:
    """A relative named without any relation word is found only as a known identifier of the patient."""
    df = spark.createDataFrame([("Called Ingrid Halvorsen at 978-555-0134, 7 Mill Rd Unit 3.",)], "t string")
    known = known_identifiers(NAME=[F.lit("Ingrid"), F.lit("Halvorsen")], PHONE=F.lit("(978) 555-0134"),
                              ADDRESS=F.lit("7 Mill Rd Unit 3"))
    out = df.select(scrub_text(F.col("t"), known), scrub_text(F.col("t"))).first()
    assert out[0] == "Called [NAME] [NAME] at [PHONE], [ADDRESS]."
    assert out[1] == "Called Ingrid Halvorsen at [PHONE], [ADDRESS]."  # the patterns alone miss the name


def test_free_text_exclusion_nulls_every_free_text_column(spark: Any) -> None:
    expected = {"observation": {"value_text", "value_display"}, "medication_request": {"dosage_text"},
                "diagnostic_report": {"conclusion"}, "imaging_study": {"description"},
                "imaging_series": {"description"}, "goal": {"description"}, "document": {"text"}}
    assert {t: set(c) for t, c in free_text_columns().items()} == expected
    for table, cols in free_text_columns().items():
        assert table in TABLES and set(cols) <= set(columns(table))
    df = spark.createDataFrame([("k1", "Maria called", "Lab", 1.0)], "observation_key string, value_text string, "
                               "value_display string, value_num double")
    row = exclude_free_text(df, "observation").first()
    assert row["value_text"] is None and row["value_display"] is None and row["value_num"] == 1.0
    assert exclude_free_text(df, "patient").first()["value_text"] == "Maria called"  # no free text there


@pytest.mark.fast
def test_free_text_setting() -> None:
    assert load_settings(config_file=None, environ={}).free_text == "deidentified"
    assert load_settings(config_file=None, environ={"LAKEHOUSE_FREE_TEXT": "exclude"}).free_text == "exclude"


def _py_scrub(text: str, recognizers: tuple[Recognizer, ...]) -> str:
    for r in recognizers:
        text = re.sub(r.regex, r.python_replacement, text)
    return text


@pytest.mark.fast
def test_recognizers_read_the_same_in_python_one_by_one_and_merged() -> None:
    """The engine runs consecutive recognizers of a kind as one alternation (plan depth); Python's ``re`` (the
    DICOM clean action and the PHI scan use it) gives the same text either way, and no recognizer matches ''."""
    texts = [c["text"] for c in load_cases()] + load_benign()
    for text in texts:
        assert _py_scrub(text, RECOGNIZERS) == _py_scrub(text, MERGED_RECOGNIZERS), text
    assert len(MERGED_RECOGNIZERS) <= 20
    for r in RECOGNIZERS:
        assert re.search(r.regex, "") is None, r
        assert not r.keep_prefix or re.compile(r.regex).groups >= 1, r
