"""silver.organization: FHIR Organization (organizations are not individuals: name and type are kept)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from silver.common import FHIR, Deid, flatten, record_lineage
from silver.deid import generalize_zip3, pseudonym


def fhir_organizations(resources: DataFrame, deid: Deid) -> DataFrame:
    o = flatten(resources, "organization")
    return o.select(
        pseudonym(F.col("id"), deid.key, "organization").alias("organization_key"), "name", "type_code",
        "type_display", generalize_zip3(F.col("postal_code")).alias("zip3"), "state",
        *record_lineage(FHIR))
