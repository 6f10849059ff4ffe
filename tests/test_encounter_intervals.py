"""silver.encounter.with_intervals: the durations Gold's readmission and length of stay use, from the true times."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from silver.encounter import with_intervals

T = datetime
ENC = "encounter_key STRING, patient_key STRING, admit_at TIMESTAMP, discharge_at TIMESTAMP"


def test_durations_order_offsets_and_follow_up(spark: Any) -> None:
    encounters = spark.createDataFrame([
        ("a1", "pa", T(2024, 1, 1, 8), T(2024, 1, 5, 12)),
        ("a2", "pa", T(2024, 1, 20, 8), T(2024, 1, 22, 12)),
        ("a3", "pa", T(2024, 3, 1, 8), None),                 # still in the house
        ("b1", "pb", T(2024, 1, 31, 8), T(2024, 2, 1, 8)),    # exactly 30 x 24 h before the end of the data
        ("b2", "pb", T(2024, 2, 20, 8), T(2024, 3, 2, 8)),    # the last event of the data
        ("c1", "pc", T(2024, 2, 10), T(2024, 2, 9)),          # discharge before admission
    ], ENC)
    births = spark.createDataFrame([("pa", date(1930, 1, 2)), ("pb", date(1990, 6, 1))],
                                   "patient_key STRING, birth_date DATE")
    rows: dict[str, dict[str, Any]] = {r["encounter_key"]: r.asDict()
                                       for r in with_intervals(encounters, births).collect()}
    a1, a2, a3, b1, b2, c1 = (rows[k] for k in ("a1", "a2", "a3", "b1", "b2", "c1"))
    assert (a1["length_of_stay_hours"], a1["length_of_stay_days"]) == (100, 4)
    assert a1["age_at_admission"] == 90 and b1["age_at_admission"] == 33  # 93 years: the 90+ category
    assert [r["stay_sequence"] for r in (a1, a2, a3)] == [1, 2, 3]
    assert a2["days_since_previous_discharge"] == 14
    assert (a1["admit_offset_seconds"], a2["admit_offset_seconds"]) == (0, (T(2024, 1, 20, 8) - T(2024, 1, 1, 8))
                                                                        .total_seconds())
    # follow-up: the end of the data is the latest admission or discharge of any patient (b2's discharge)
    assert (a1["has_30_day_follow_up"], a2["has_30_day_follow_up"]) == (True, True)
    assert b1["has_30_day_follow_up"] is True          # 30 days exactly: followed up
    assert b2["has_30_day_follow_up"] is False         # discharged on the last day of the data: censored in Gold
    assert a3["has_30_day_follow_up"] is None          # no discharge, nothing to follow
    assert c1["length_of_stay_days"] is None and c1["has_30_day_follow_up"] is False  # 22 days before the end


def test_harmonize_takes_the_period_as_a_pair_from_one_source(spark: Any) -> None:
    from silver.encounter import FIELDS, harmonize

    cols = [*FIELDS, "last_adt_event", "adt_event_count", "updated_at", "sources", "bronze_hashes"]
    def sql_type(c: str) -> str:
        if c.endswith("_at"):
            return "TIMESTAMP"
        if c.endswith("count"):
            return "INT"
        return "ARRAY<STRING>" if c in ("sources", "bronze_hashes") else "STRING"

    ddl = ", ".join(f"{c} {sql_type(c)}" for c in ["encounter_key", *cols])

    def row(key: str, source: str, admit: datetime | None, discharge: datetime | None, updated: datetime,
            status: str) -> tuple[Any, ...]:
        values = {"encounter_key": key, "patient_key": "p", "status": status, "admit_at": admit,
                  "discharge_at": discharge, "updated_at": updated, "sources": [source],
                  "bronze_hashes": [source + key], "adt_event_count": 1 if source == "hl7v2" else None}
        return tuple(values.get(c) for c in ["encounter_key", *cols])

    rows = spark.createDataFrame([
        # the HL7 feed, later, says the patient is still in the house; the FHIR feed had a discharge
        row("e1", "hl7v2", T(2024, 1, 1, 8), None, T(2024, 1, 3, 10), "in-progress"),
        row("e1", "fhir", T(2024, 1, 1, 8, 5), T(2024, 1, 2, 12), T(2024, 1, 2, 13), "finished"),
        # a later row without an admission does not lend its discharge to another source's admission
        row("e2", "hl7v2", T(2024, 2, 1, 8), T(2024, 2, 3, 9), T(2024, 2, 3, 9), "finished"),
        row("e2", "fhir", None, T(2024, 2, 4, 9), T(2024, 2, 5, 9), "finished"),
    ], ddl)
    out = {r["encounter_key"]: r for r in harmonize(rows).collect()}
    assert (out["e1"]["admit_at"], out["e1"]["discharge_at"]) == (T(2024, 1, 1, 8), None)
    assert out["e1"]["status"] == "in-progress" and sorted(out["e1"]["sources"]) == ["fhir", "hl7v2"]
    assert (out["e2"]["admit_at"], out["e2"]["discharge_at"]) == (T(2024, 2, 1, 8), T(2024, 2, 3, 9))
