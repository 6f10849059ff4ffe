"""silver.practitioner and its index: ``practitioner_key = pseudonym(NPI, key, "practitioner")`` (HL7 XCN.1 of
PV1-7/ORC-12 carries the NPI in the feeds this project reads), falling back to the FHIR Practitioner id."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from silver.common import FHIR, Deid, fhir_timestamp, first_per_partition, flatten, with_index_key
from silver.deid import pseudonym
from silver.terminology import map_gender

# the NPI: the value of the identifier of this system (the practitioner view selects it per identifier)
NPI = "http://hl7.org/fhir/sid/us-npi"


def fhir_practitioner_index(resources: DataFrame, deid: Deid) -> DataFrame:
    """(fhir_id, practitioner_key) for every FHIR Practitioner."""
    p = flatten(resources, "practitioner")
    return p.select(F.col("id").alias("fhir_id"),
                    pseudonym(F.coalesce("npi", "id"), deid.key, "practitioner").alias("practitioner_key")) \
            .dropDuplicates(["fhir_id"])


def fhir_practitioners(resources: DataFrame, index: DataFrame) -> DataFrame:
    p = with_index_key(flatten(resources, "practitioner"), index)
    latest = Window.partitionBy("practitioner_key").orderBy(fhir_timestamp("last_updated").desc_nulls_last(),
                                                            "content_hash")
    hashes = p.groupBy("practitioner_key").agg(F.collect_set("content_hash").alias("bronze_hashes"))
    one = first_per_partition(p, latest).join(hashes, "practitioner_key")
    return one.select("practitioner_key", map_gender(F.col("gender")).alias("gender"), "specialty_code",
                      "specialty_display", F.array(F.lit(FHIR)).alias("sources"), "bronze_hashes")
