"""silver.care_team: FHIR CareTeam with its status, period, SNOMED CT reason and the SNOMED CT roles of its
participants. Members (patients, relatives, practitioners: names and references) and the team name are not loaded.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.care_plan import untyped_time
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


def fhir_care_teams(resources: DataFrame, patients: DataFrame, encounters: DataFrame, deid: Deid) -> DataFrame:
    t = resolve_references(flatten(resources, "care_team"), patients, encounters)
    roles = F.array_sort(F.array_distinct(F.coalesce(F.col("participant_roles"), F.array().cast("array<string>"))))
    return t.select(
        pseudonym(F.col("id"), deid.key, "care_team").alias("care_team_key"), patient_key_or_ref(deid),
        "encounter_key", "status", fhir_timestamp("period_start").alias("period_start"),
        fhir_timestamp("period_end").alias("period_end"), "reason_code", "reason_display",
        pseudonym(F.col("organization_ref"), deid.key, "organization").alias("organization_key"),
        F.coalesce(F.col("participant_count"), F.lit(0)).alias("participant_count"),
        roles.alias("participant_roles"), *record_lineage(FHIR),
        invalid_values(**{"period.start": untyped_time("period_start"), "period.end": untyped_time("period_end")}))
