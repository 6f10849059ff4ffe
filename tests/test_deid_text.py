"""Free-text scrubbing: the patient's own identifiers and pattern recognizers, per identifier class."""

from __future__ import annotations

import re
import time

import pytest
from pyspark.sql import functions as F

from silver.deid.text import known_identifiers, scrub_text

PATIENT = {"given": "Maria", "family": "O'Connor-Smith", "mrn": "MRN00482913", "phone": "(617) 555-0142",
           "ssn": "078-05-1120", "email": "maria.oc@example.org", "line": "42 Elm Street", "city": "Springfield"}
CASES = [
    # (note, must be gone, placeholder expected)
    ("Mrs. Maria O'Connor-Smith presented with chest pain.", ["Maria", "O'Connor", "Smith"], "[NAME]"),
    ("spoke with MARIA; o'connor-smith family at bedside", ["MARIA", "connor"], "[NAME]"),
    ("Call back at 617-555-0142 or 617.555.0142 or +1 617 555 0142.", ["555"], "[PHONE]"),
    ("Alt number (212) 555-0199", ["555-0199"], "[PHONE]"),
    ("SSN 078051120 verified; also 078-05-1120", ["078"], "[SSN]"),
    ("Other SSN 123-45-6789 on file", ["6789"], "[SSN]"),
    ("email maria.oc@example.org or m.x@hospital.com", ["example.org", "hospital.com"], "[EMAIL]"),
    ("see https://portal.example.org/p?id=7 and www.foo.com", ["portal", "foo.com"], "[URL]"),
    ("login from 192.168.10.24 noted", ["192.168"], "[IP]"),
    ("chart MRN00482913 reviewed, MRN: 99812345 too", ["00482913", "99812345"], "[MRN]"),
    ("lives at 42 Elm Street, Springfield 01105-2231", ["Elm", "Springfield", "01105"], "[ADDRESS]"),
    ("seen on 03/14/2021, follow up 2021-04-02 and March 3, 2022 and 20210505", ["2021", "2022"], "[DATE]"),
    ("a 93-year-old woman, age 97", ["93", "97"], "[AGE90+]"),
    ("ZIP 02139 on the form", ["02139"], "[ZIP]"),
]


@pytest.fixture(scope="module")
def scrubbed(spark) -> list[str]:
    rows = [(note, *PATIENT.values()) for note, _, _ in CASES]
    df = spark.createDataFrame(rows, "note string, " + ", ".join(f"{k} string" for k in PATIENT))
    ids = known_identifiers(NAME=[F.col("given"), F.col("family")], MRN=F.col("mrn"), PHONE=F.col("phone"),
                            SSN=F.col("ssn"), EMAIL=F.col("email"), ADDRESS=[F.col("line"), F.col("city")])
    return [r[0] for r in df.select(scrub_text(F.col("note"), ids)).collect()]


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[2] + str(i) for i, c in enumerate(CASES)])
def test_identifier_class_is_replaced(scrubbed: list[str], i: int) -> None:
    _, gone, placeholder = CASES[i]
    out = scrubbed[i]
    assert placeholder in out, out
    for fragment in gone:
        assert fragment.lower() not in out.lower(), out


def test_clinical_words_survive(spark) -> None:
    note = "BP 120/80, HR 72, glucose 5.4 mmol/L, 2 tablets daily; Maria feels better"
    df = spark.createDataFrame([(note, "Maria")], "note string, given string")
    out = df.select(scrub_text(F.col("note"), known_identifiers(NAME=F.col("given")))).first()[0]
    assert out == "BP 120/80, HR 72, glucose 5.4 mmol/L, 2 tablets daily; [NAME] feels better"


def test_null_text_and_no_identifiers(spark) -> None:
    df = spark.createDataFrame([(None, None), ("Call 617-555-0142", None)], "note string, given string")
    rows = df.select(scrub_text(F.col("note"), known_identifiers(NAME=F.col("given")))).collect()
    assert [r[0] for r in rows] == [None, "Call [PHONE]"]
    assert df.select(scrub_text(F.col("note"))).collect()[1][0] == "Call [PHONE]"


def test_another_patients_name_is_not_this_patients_identifier(spark) -> None:
    df = spark.createDataFrame([("Maria met Dr. Jones", "Maria"), ("Maria met Dr. Jones", "Jones")],
                               "note string, given string")
    rows = [r[0] for r in df.select(scrub_text(F.col("note"), known_identifiers(NAME=F.col("given")))).collect()]
    assert rows == ["[NAME] met Dr. Jones", "Maria met Dr. [NAME]"]


def test_throughput_is_reported(spark, capsys: pytest.CaptureFixture[str]) -> None:
    n = 20_000
    df = spark.range(n).select(F.format_string("Pt Maria Smith %d called 617-555-%04d on 2021-03-04", F.col("id"),
                                               (F.col("id") % 10000).cast("int")).alias("note"),
                               F.lit("Maria").alias("given"), F.lit("Smith").alias("family"))
    start = time.perf_counter()
    out = df.select(scrub_text(F.col("note"), known_identifiers(NAME=[F.col("given"), F.col("family")])))
    sample = out.where(F.col("scrubbed_text").rlike("Maria|Smith|-555-|2021-03")).count()
    elapsed = time.perf_counter() - start
    assert sample == 0
    with capsys.disabled():
        print(f"\nscrub_text: {n / elapsed:,.0f} rows/s ({n} rows, {elapsed:.2f} s)")
    assert re.search(r"\[NAME\] \[NAME\] \d+ called \[PHONE\] on \[DATE\]", out.first()[0])
