"""silver.care_plan and silver.care_plan_activity: FHIR CarePlan with its SNOMED CT category, the conditions it
addresses and its goals (as the keys silver.condition and silver.goal give them), and one row per activity
detail.

An activity is either an inline ``detail`` (a row of care_plan_activity) or a reference to a request resource
(ServiceRequest, MedicationRequest, ...: that resource's own table); ``activity_count`` counts both. Free text
(title, description, notes, activity descriptions and progress) is not loaded.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.common import (
    FHIR,
    Deid,
    fhir_timestamp,
    flatten,
    invalid_values,
    patient_key_or_ref,
    record_lineage,
    resolve_references,
)
from silver.deid import pseudonym
from silver.deid.pseudonym import pseudonym_array


def untyped_time(raw: str) -> F.Column:
    """The FHIR date/dateTime ``raw`` was sent but is not one."""
    return F.col(raw).isNotNull() & fhir_timestamp(raw).isNull()


def fhir_care_plans(resources: DataFrame, patients: DataFrame, encounters: DataFrame, deid: Deid) -> DataFrame:
    c = resolve_references(flatten(resources, "care_plan"), patients, encounters)
    return c.select(
        pseudonym(F.col("id"), deid.key, "care_plan").alias("care_plan_key"), patient_key_or_ref(deid),
        "encounter_key", "status", "intent", "category_code", "category_display",
        fhir_timestamp("period_start").alias("period_start"), fhir_timestamp("period_end").alias("period_end"),
        pseudonym_array(F.col("condition_refs"), deid.key, "condition").alias("condition_keys"),
        pseudonym_array(F.col("goal_refs"), deid.key, "goal").alias("goal_keys"),
        F.coalesce(F.col("activity_count"), F.lit(0)).alias("activity_count"), *record_lineage(FHIR),
        invalid_values(**{"period.start": untyped_time("period_start"), "period.end": untyped_time("period_end")}))


def fhir_care_plan_activities(resources: DataFrame, patients: DataFrame, deid: Deid) -> DataFrame:
    """One row per CarePlan.activity.detail; its key is the care plan id and the detail's position among the
    plan's activity details (``activity_index``)."""
    a = resolve_references(flatten(resources, "care_plan_activity"), patients)
    activity_id = F.concat_ws("/", F.col("id"), F.lit("activity"), F.col("activity_index").cast("string"))
    return a.select(
        pseudonym(activity_id, deid.key, "care_plan_activity").alias("care_plan_activity_key"),
        pseudonym(F.col("id"), deid.key, "care_plan").alias("care_plan_key"), patient_key_or_ref(deid),
        F.col("activity_index").cast("int").alias("activity_index"), "code", "display", "status",
        *record_lineage(FHIR))


def activity_detail_count(resources: DataFrame) -> DataFrame:
    """The number of CarePlan.activity elements with a ``detail`` in the latest CarePlans, counted in the JSON
    without the view (the reconciliation input of silver.care_plan_activity)."""
    activities = F.from_json(F.get_json_object("raw", "$.activity"), "array<string>")
    with_detail = F.size(F.filter(activities, lambda a: F.get_json_object(a, "$.detail").isNotNull()))
    plans = resources.filter(F.col("resource_type") == "CarePlan")
    return plans.select(F.coalesce(F.sum(F.greatest(with_detail, F.lit(0))), F.lit(0)).cast("long").alias("n"))
