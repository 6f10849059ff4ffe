"""silver.observation: FHIR Observation (and its components) and HL7 ORU OBX in one table, harmonized.

Codes are mapped to LOINC (``map_lab_codes``), values converted to the canonical UCUM unit of the LOINC code
(``normalize_units``, reference ranges too) and flagged against their range (``flag_abnormal``). Text results
(FHIR valueString, HL7 TX/ST/FT OBX-5) and the NTE comments that follow an OBX are scrubbed of PHI.

Harmonization: a FHIR row and an HL7 row with the same patient_key, LOINC code (after mapping; SI/conventional
variants of one analyte share a code, see ``PREFERRED_LOINC``), effective time and canonical value (within
``TOLERANCE``) are one row: the FHIR key, both sources, both Bronze hashes, and the value of the source that
was reported in the canonical unit (no rounding from a conversion), else the FHIR one.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.hl7v2 import hl7_time
from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    fhir_timestamp,
    field,
    first_per_partition,
    flatten,
    invalid_values,
    merge_lineage,
    patient_key_or_ref,
    resolve_references,
    segment_fields,
    source_lineage,
    with_segment_context,
)
from silver.deid import pseudonym, scrub_text
from silver.encounter import hl7_visit_number
from silver.patient import hl7_mrn
from silver.terminology import map_lab_codes
from silver.units import normalize_units

# SI-unit LOINC variant -> the conventional code of the same analyte, so that one analyte has one canonical unit
# (glucose mmol/L 15074-8 -> mg/dL 2345-7; creatinine umol/L 14682-9 -> mg/dL 2160-0); the original code is kept
# in code_original. TODO(terminology): move to a seed of silver/terminology.
PREFERRED_LOINC = {"15074-8": "2345-7", "14682-9": "2160-0"}
TOLERANCE = 0.02  # relative difference of canonical values still taken as the same result
VITAL_LOINC = ("8867-4", "9279-1", "8480-6", "8462-4", "8310-5", "59408-5", "2708-6", "29463-7", "8302-2",
               "39156-5", "85354-9")
TEXT_TYPES = ("TX", "ST", "FT")

# columns of a source row before conversion
ROW = ("observation_key", "patient_key", "encounter_key", "category", "code", "code_system", "alt_code",
       "alt_system", "display", "value", "unit_in", "value_text", "value_code", "effective_at", "status",
       "interpretation", "ref_low", "ref_high", "source", "content_hash")



def flag_abnormal(df: DataFrame, value_col: str = "value_num", low_col: str = "ref_low", high_col: str = "ref_high",
                  flag_col: str = "abnormal_flag") -> DataFrame:
    """``abnormal_flag``: H above ``ref_high``, L below ``ref_low``, N within; NULL without a value or any bound.

    Values and bounds must be in the same unit (convert the bounds with ``normalize_units(convert_also=...)``).
    """
    value, low, high = F.col(value_col), F.col(low_col), F.col(high_col)
    flag = F.when(value.isNull() | (low.isNull() & high.isNull()), F.lit(None).cast("string")) \
            .when(high.isNotNull() & (value > high), F.lit("H")) \
            .when(low.isNotNull() & (value < low), F.lit("L")) \
            .otherwise(F.lit("N"))
    return df.withColumn(flag_col, flag)

def fhir_observations(resources: DataFrame, patients: DataFrame, encounters: DataFrame, known: DataFrame,
                      deid: Deid) -> DataFrame:
    """One row per FHIR Observation value: the resource (component_index 0) and each component (1..n)."""
    parents = flatten(resources, "observation").withColumn("component_index", F.lit(0))
    o = resolve_references(parents.unionByName(flatten(resources, "observation_component")), patients, encounters)
    # a panel whose values are all in components has no value of its own: its components are the rows
    has_value = F.col("value_quantity").isNotNull() | F.col("value_string").isNotNull() \
        | F.col("value_code").isNotNull()
    # a window, not a grouped self-join: Sail would flatten the JSON twice (no sub-plan reuse)
    o = o.withColumn("_components", F.max("component_index").over(Window.partitionBy("id"))) \
         .filter(has_value | (F.col("component_index") > 0) | (F.col("_components") == 0))
    key = F.when(F.col("component_index") > 0, F.concat_ws("#", "id", F.col("component_index").cast("string"))) \
           .otherwise(F.col("id"))
    o = o.join(known, "patient_key", "left")
    return o.select(
        pseudonym(key, deid.key, "observation").alias("observation_key"), patient_key_or_ref(deid),
        "encounter_key", "category", F.col("code_code").alias("code"), F.col("code_system"),
        F.lit(None).cast("string").alias("alt_code"), F.lit(None).cast("string").alias("alt_system"),
        F.col("code_display").alias("display"), F.col("value_quantity").cast("double").alias("value"),
        F.coalesce("value_unit", "value_unit_text").alias("unit_in"),
        scrub_text(F.col("value_string"), F.col("known")).alias("value_text"), "value_code",
        fhir_timestamp(F.coalesce("effective", "effective_period_start", "issued")).alias("effective_at"),
        "status", "interpretation", F.col("ref_low").cast("double").alias("ref_low"),
        F.col("ref_high").cast("double").alias("ref_high"), *source_lineage(FHIR),
        invalid_values(
            value=F.col("value_quantity_text").isNotNull() & F.col("value_quantity_text").try_cast("double").isNull(),
            effectiveDateTime=F.col("effective").isNotNull() & fhir_timestamp("effective").isNull(),
            issued=F.col("issued").isNotNull() & fhir_timestamp("issued").isNull()))


def _range_bound(text: Column, low: bool) -> Column:
    """HL7 OBX-7 reference range '70-99', '<5', '>60' -> low or high bound."""
    pattern = r"^\s*(-?[0-9.]+)\s*-\s*(-?[0-9.]+)\s*$"
    both = F.regexp_extract(text, pattern, 1 if low else 2)
    one = F.regexp_extract(text, r"^\s*[>]=?\s*([0-9.]+)" if low else r"^\s*[<]=?\s*([0-9.]+)", 1)
    return F.coalesce(F.nullif(both, F.lit("")), F.nullif(one, F.lit(""))).try_cast("double")


def hl7_observations(segs: DataFrame, known: DataFrame, deid: Deid) -> DataFrame:
    """One row per OBX of every ORU message; NTE comments after an OBX are appended to its (scrubbed) text."""
    oru = with_segment_context(with_segment_context(segs.filter(F.col("message_type") == "ORU"), "OBR", "obr"),
                               "OBX", "obx")
    pid = segment_fields(oru, "PID", {"mrn": hl7_mrn()}).groupBy("content_hash").agg(F.first("mrn").alias("mrn"))
    pv1 = segment_fields(oru, "PV1", {"visit_number": hl7_visit_number()}) \
        .groupBy("content_hash").agg(F.first("visit_number").alias("visit_number"))
    obr = segment_fields(oru, "OBR", {"obr_time_raw": field(7, 1, decode=False)}) \
        .select("content_hash", F.col("segment_index").alias("obr_index"), "obr_time_raw")
    nte = oru.filter((F.col("segment_id") == "NTE") & F.col("obx_index").isNotNull()) \
             .select("content_hash", "obx_index", "segment_index", field(3).alias("text")) \
             .groupBy("content_hash", F.col("obx_index").alias("segment_index")) \
             .agg(F.concat_ws("\n", F.transform(F.array_sort(F.collect_list(F.struct("segment_index", "text"))),
                                                 lambda x: x["text"])).alias("nte"))
    obx = oru.filter(F.col("segment_id") == "OBX").select(
        "content_hash", "message_control_id", "segment_index", "obr_index",
        field(1, decode=False).alias("set_id"), F.upper(field(2, decode=False)).alias("vtype"),
        field(3, 1, decode=False).alias("code"), field(3, 2).alias("display"),
        field(3, 3, decode=False).alias("code_system"), field(3, 4, decode=False).alias("alt_code"),
        field(3, 6, decode=False).alias("alt_system"), field(5).alias("raw_value"),
        field(5, 1, decode=False).alias("value_code_raw"), field(5, 1, decode=False).alias("sn_comparator"),
        field(5, 2, decode=False).alias("sn_number"), field(6, 1).alias("unit_in"),
        field(7, decode=False).alias("range"), field(8, 1, decode=False).alias("interpretation"),
        field(11, decode=False).alias("result_status"), field(14, 1, decode=False).alias("obs_time_raw"))
    obx = obx.join(obr, ["content_hash", "obr_index"], "left").join(pid, "content_hash", "left") \
             .join(pv1, "content_hash", "left").join(nte, ["content_hash", "segment_index"], "left")
    obx = obx.withColumn("patient_key", pseudonym(F.col("mrn"), deid.key, "patient")).join(known, "patient_key",
                                                                                              "left")
    is_text = F.col("vtype").isin(*TEXT_TYPES)
    text = F.when(is_text, F.concat_ws("\n", "raw_value", "nte")).otherwise(F.col("nte"))
    set_id = F.coalesce(F.col("set_id"), F.col("segment_index").cast("string"))
    return obx.select(
        pseudonym(F.concat_ws("-", "message_control_id", set_id), deid.key, "observation").alias("observation_key"),
        "patient_key", pseudonym(F.col("visit_number"), deid.key, "encounter").alias("encounter_key"),
        F.lit("laboratory").alias("category"), "code", "code_system", "alt_code", "alt_system", "display",
        F.when(F.col("vtype").isin("NM") | F.col("vtype").isNull(), F.col("raw_value").try_cast("double"))
         .when((F.col("vtype") == "SN") & F.coalesce(F.col("sn_comparator"), F.lit("=")).isin("=", ""),
               F.col("sn_number").try_cast("double")).alias("value"), "unit_in",
        scrub_text(F.nullif(text, F.lit("")), F.col("known")).alias("value_text"),
        F.when(F.col("vtype").isin("CE", "CWE", "CNE"), F.col("value_code_raw")).alias("value_code"),
        F.coalesce(hl7_time(F.col("obs_time_raw"), deid.facility_timezone),
                   hl7_time(F.col("obr_time_raw"), deid.facility_timezone)).alias("effective_at"),
        F.lower("result_status").alias("status"), "interpretation",
        _range_bound(F.col("range"), True).alias("ref_low"), _range_bound(F.col("range"), False).alias("ref_high"),
        *source_lineage(HL7V2))


def standardize(rows: DataFrame) -> DataFrame:
    """Map codes to LOINC, one code per analyte, canonical units (reference range too), abnormal flag."""
    mapped = map_lab_codes(rows, "code", "code_system", "alt_code", "alt_system")
    preferred = F.col("loinc_code")
    for si, conventional in PREFERRED_LOINC.items():
        preferred = F.when(F.col("loinc_code") == si, F.lit(conventional)).otherwise(preferred)
    mapped = mapped.withColumn("loinc_code", preferred) \
                   .withColumn("display", F.coalesce("loinc_display", "display")).drop("loinc_display")
    converted = normalize_units(mapped, "loinc_code", "value", "unit_in", convert_also=("ref_low", "ref_high"))
    category = F.when(F.col("loinc_code").isin(*VITAL_LOINC), F.lit("vital-signs")).otherwise(F.col("category"))
    return flag_abnormal(converted.withColumn("category", category))


def harmonized_pairs(rows: DataFrame) -> DataFrame:
    """The FHIR/HL7 rows that are the same result: (fk, hk) observation keys, each key in at most one pair."""
    fhir = rows.filter(F.col("source") == FHIR).alias("f")
    hl7 = rows.filter(F.col("source") == HL7V2).alias("h")
    cond = (F.col("f.patient_key") == F.col("h.patient_key")) & (F.col("f.loinc_code") == F.col("h.loinc_code")) \
        & (F.col("f.effective_at") == F.col("h.effective_at"))
    diff = F.abs(F.col("f.value_num") - F.col("h.value_num"))
    scale = F.greatest(F.abs(F.col("f.value_num")), F.abs(F.col("h.value_num")), F.lit(1e-9))
    same_value = (diff <= scale * TOLERANCE) | (F.col("f.value_num").isNull() & F.col("h.value_num").isNull()
                                                 & (F.col("f.value_text") == F.col("h.value_text")))
    pairs = fhir.join(hl7, cond & same_value).select(
        F.col("f.observation_key").alias("fk"), F.col("h.observation_key").alias("hk"), diff.alias("d"))
    by_h = Window.partitionBy("hk").orderBy("d", "fk")
    by_f = Window.partitionBy("fk").orderBy("d", "hk")
    return first_per_partition(first_per_partition(pairs, by_h), by_f).drop("d")


def merge_pairs(rows: DataFrame, pairs: DataFrame) -> DataFrame:
    """One row per result: each pair of :func:`harmonized_pairs` becomes the FHIR key with both sources and both
    Bronze hashes, and the value of the row reported in the canonical unit (else the FHIR one)."""
    keyed = rows.withColumn("sources", F.array(F.col("source"))) \
                .withColumn("bronze_hashes", F.array(F.col("content_hash")))
    members = keyed.join(pairs.select(F.col("hk").alias("observation_key"), F.col("fk")), "observation_key", "left")
    group = F.coalesce(F.col("fk"), F.col("observation_key"))
    in_canonical = F.lower(F.trim(F.col("unit_original"))) == F.lower(F.col("unit"))
    # the representative row of a group: reported in the canonical unit first, then FHIR
    rank = Window.partitionBy("_group").orderBy(F.coalesce(in_canonical, F.lit(False)).desc(),
                                                (F.col("source") == FHIR).desc())
    grouped = members.withColumn("_group", group)
    lineage = grouped.groupBy("_group").agg(*merge_lineage("_sources", "_hashes"))
    best = first_per_partition(grouped, rank).join(lineage, "_group")
    out = best.withColumn("observation_key", F.col("_group")).withColumn("sources", F.col("_sources")) \
              .withColumn("bronze_hashes", F.col("_hashes"))
    return out.drop("_group", "_sources", "_hashes", "fk")
