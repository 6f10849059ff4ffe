"""Small seeded Silver tables for the consumer tests (features, training, report), built without the pipeline."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from silver import schemas


def _row(table: str, values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values.get(c) for c in schemas.columns(table))


def synthetic_silver(patients: int = 80, seed: int = 7) -> dict[str, list[tuple[Any, ...]]]:
    """Patients with 1-4 inpatient stays; sicker patients (more conditions, worse labs) come back more often."""
    rng = random.Random(seed)
    out: dict[str, list[tuple[Any, ...]]] = {"patient": [], "encounter": [], "observation": [], "condition": []}
    for p in range(patients):
        pk = f"P{p:04d}"
        sick = rng.random()
        born = date(1930 + rng.randrange(70), rng.randrange(1, 13), rng.randrange(1, 28))
        out["patient"].append(_row("patient", {
            "patient_key": pk, "gender": rng.choice(["male", "female"]), "birth_date": born}))
        admit = datetime(2023, 1, 1) + timedelta(days=rng.randrange(300), hours=rng.randrange(24))
        first, previous = admit, None
        for s in range(rng.randrange(1, 5)):
            ek = f"{pk}-E{s}"
            discharge = admit + timedelta(hours=rng.randrange(24, 24 * 9))
            out["encounter"].append(_row("encounter", {
                "encounter_key": ek, "patient_key": pk, "encounter_class": "IMP", "status": "finished",
                "admit_at": admit, "discharge_at": discharge,
                # the durations Silver computes from the true times (silver.encounter.with_intervals)
                "length_of_stay_hours": int((discharge - admit).total_seconds() // 3600),
                "length_of_stay_days": (discharge - admit).days, "stay_sequence": s + 1,
                "age_at_admission": min(90, admit.year - born.year
                                        - ((admit.month, admit.day) < (born.month, born.day))),
                "days_since_previous_discharge": None if previous is None else (admit - previous).days,
                "admit_offset_seconds": int((admit - first).total_seconds()),
                "discharge_offset_seconds": int((discharge - first).total_seconds())}))
            previous = discharge
            labs = (("2345-7", "mg/dL", 90 + 150 * sick), ("2160-0", "mg/dL", 1.0), ("8867-4", "/min", 75 + 25 * sick))
            for i, (loinc, unit, mean) in enumerate(labs):
                out["observation"].append(_row("observation", {
                    "observation_key": f"{ek}-O{i}", "patient_key": pk, "encounter_key": ek, "loinc_code": loinc,
                    "unit": unit, "value_num": round(rng.gauss(mean, mean * 0.05), 1), "status": "final",
                    "effective_at": discharge - timedelta(hours=rng.randrange(1, 20))}))
            if rng.random() < sick:
                out["condition"].append(_row("condition", {
                    "condition_key": f"{ek}-C", "patient_key": pk, "encounter_key": ek,
                    "icd10cm_code": rng.choice(["I50.9", "E11.9", "J44.1", "N18.3", "C78.0"]),
                    "verification_status": "confirmed", "recorded_at": admit + timedelta(hours=2)}))
            gap = rng.randrange(3, 25) if rng.random() < 0.05 + 0.9 * sick else rng.randrange(40, 200)
            admit = discharge + timedelta(days=gap)
    return out


OUTCOME_DDL = "encounter_key STRING, is_index_admission BOOLEAN, readmitted_within_30d BOOLEAN"


def readmission_outcomes(encounters: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The gold.fct_encounter columns the features job reads, for :func:`synthetic_silver` stays (all discharged
    home, none planned or transferred): readmitted when the patient's next admission is within 30 days."""
    cols = schemas.columns("encounter")
    stays = sorted((dict(zip(cols, r, strict=True)) for r in encounters),
                   key=lambda r: (r["patient_key"], r["admit_at"]))
    out = []
    for stay, following in zip(stays, [*stays[1:], None], strict=True):
        nxt = following if following is not None and following["patient_key"] == stay["patient_key"] else None
        out.append((stay["encounter_key"], True,
                    nxt is not None and nxt["admit_at"] - stay["discharge_at"] <= timedelta(days=30)))
    return out


def write_outcomes(catalog: Any, encounters: list[tuple[Any, ...]]) -> None:
    """gold.fct_encounter as the features job reads it (the dbt model's rules have their own dbt unit tests)."""
    catalog.create("gold.fct_encounter", OUTCOME_DDL)
    rows = readmission_outcomes(encounters)
    if rows:
        catalog.append(catalog.spark.createDataFrame(rows, OUTCOME_DDL), "gold.fct_encounter")


def write_silver(catalog: Any, tables: dict[str, list[tuple[Any, ...]]]) -> None:
    for name, rows in tables.items():
        catalog.create(f"silver.{name}", schemas.ddl(name))
        if rows:
            catalog.append(catalog.spark.createDataFrame(rows, schemas.ddl(name)), f"silver.{name}")
