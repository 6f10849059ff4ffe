"""silver.goal: FHIR Goal with its statuses, description (free text scrubbed), start and target due dates and
the conditions it addresses (as the keys silver.condition gives them)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.care_plan import untyped_time
from silver.common import (
    FHIR,
    Deid,
    fhir_date,
    fhir_timestamp,
    flatten,
    invalid_values,
    patient_key_or_ref,
    record_lineage,
    resolve_references,
)
from silver.deid import pseudonym, scrub_text
from silver.deid.pseudonym import pseudonym_array


def fhir_goals(resources: DataFrame, patients: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    g = resolve_references(flatten(resources, "goal"), patients)
    g = g.join(known, "patient_key", "left")
    # several targets: the earliest due date (ISO dates order as text)
    due = F.array_min("due_dates")
    return g.select(
        pseudonym(F.col("id"), deid.key, "goal").alias("goal_key"), patient_key_or_ref(deid), "lifecycle_status",
        "achievement_status", "description_code",
        scrub_text(F.coalesce("description_text", "description_display"), F.col("known")).alias("description"),
        fhir_date("start_date").alias("start_date"), fhir_date(due).alias("target_due_date"),
        pseudonym_array(F.col("condition_refs"), deid.key, "condition").alias("condition_keys"),
        *record_lineage(FHIR),
        invalid_values(startDate=untyped_time("start_date"),
                       **{"target.dueDate": F.exists("due_dates", lambda d: fhir_timestamp(d).isNull())}))
