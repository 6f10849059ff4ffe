"""silver.patient: FHIR Patient and HL7 PID harmonized on the MRN pseudonym; the patient index for other domains.

``patient_key = pseudonym(MRN, key, "patient")`` where the MRN is the MR-typed identifier (FHIR identifier with
type MR, HL7 PID-3 repetition with CX.5 = MR); without an MRN the FHIR Patient id is used. Attributes: the latest
non-null value across sources wins (FHIR meta.lastUpdated vs HL7 message time).
Dates are real here; ``silver.job`` applies the date policy.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.hl7v2 import hl7_time
from silver.common import (
    FHIR,
    HL7V2,
    Deid,
    collect_lineage,
    cx_typed,
    fhir_date,
    fhir_timestamp,
    field,
    flatten,
    invalid_values,
    latest_value,
    segment_fields,
    source_lineage,
    with_index_key,
)
from silver.deid import (
    birth_date_90plus_rule,
    birth_year_90plus_rule,
    generalize_zip3,
    is_90_plus,
    known_identifiers,
    known_identifiers_from_arrays,
    pseudonym,
)
from silver.terminology import map_gender

KNOWN_TYPE = "array<struct<kind:string,value:string>>"
ATTRIBUTES = ("gender", "birth_date", "postal_code", "state", "country", "deceased", "deceased_date", "race",
              "ethnicity", "marital_status", "language", "insurance")


def fhir_patient_index(resources: DataFrame, deid: Deid) -> DataFrame:
    """(fhir_id, mrn, patient_key) for every FHIR Patient: resolves ``Patient/<id>`` references."""
    ids = flatten(resources, "patient_identifier")
    mrn = ids.filter(F.upper(F.col("kind")) == "MR").groupBy("id").agg(F.min("value").alias("mrn"))
    pats = flatten(resources, "patient").select(F.col("id").alias("fhir_id"))
    return (pats.join(mrn.withColumnRenamed("id", "fhir_id"), "fhir_id", "left")
            .withColumn("patient_key", pseudonym(F.coalesce(F.col("mrn"), F.col("fhir_id")), deid.key, "patient")))


FHIR_GENDERS = ("male", "female", "other", "unknown")  # AdministrativeGender


def fhir_patients(resources: DataFrame, index: DataFrame) -> DataFrame:
    """One row per FHIR Patient (latest version) with raw attributes, ``updated_at``, lineage."""
    p = with_index_key(flatten(resources, "patient"), index)
    return p.select(
        "patient_key", F.col("gender"), fhir_date("birth_date").alias("birth_date"),
        F.col("postal_code"), F.col("state"), F.col("country"),
        F.coalesce(F.col("deceased_boolean"), F.col("deceased_datetime").isNotNull()).alias("deceased"),
        fhir_date("deceased_datetime").alias("deceased_date"),
        F.lit(None).cast("string").alias("race"), F.lit(None).cast("string").alias("ethnicity"),
        F.col("marital_status"), F.col("language"), F.lit(None).cast("string").alias("insurance"),
        fhir_timestamp("last_updated").alias("updated_at"), *source_lineage(FHIR),
        invalid_values(
            birthDate=F.col("birth_date").isNotNull() & fhir_date("birth_date").isNull(),
            gender=F.col("gender").isNotNull() & ~F.col("gender").isin(*FHIR_GENDERS),
            deceasedDateTime=F.col("deceased_datetime").isNotNull() & fhir_timestamp("deceased_datetime").isNull()))


def hl7_mrn() -> Column:
    """The MRN of a PID segment: the MR-typed PID-3 repetition, else the first PID-3 ID."""
    return F.coalesce(cx_typed(3, "MR"), field(3, 1, 1, decode=False))


def pid_fields(segs: DataFrame) -> DataFrame:
    """PID segments with an MRN, their raw fields as columns (step one of two, see ``silver.common.field``)."""
    return segment_fields(segs, "PID", {
        "mrn": hl7_mrn(), "gender": field(8, decode=False), "birth": field(7, 1, decode=False),
        "postal_code": field(11, 5), "state": field(11, 4), "country": field(11, 6),
        "death": field(29, 1, decode=False), "death_flag": field(30, decode=False),
        "race_text": field(10, 2), "race_code": field(10, 1, decode=False), "ethnicity_text": field(22, 2),
        "ethnicity_code": field(22, 1, decode=False), "marital_status": field(16, 1, decode=False),
        "language": field(15, 1, decode=False),
    }).filter(F.col("mrn").isNotNull())


def hl7_patients(segs: DataFrame, deid: Deid) -> DataFrame:
    """One row per PID segment of every (deduplicated) message, same shape as :func:`fhir_patients`."""
    pid = pid_fields(segs)
    flag = F.upper(F.col("death_flag"))
    return pid.select(
        pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"), "gender",
        F.to_date(F.try_to_timestamp(F.substring("birth", 1, 8), F.lit("yyyyMMdd"))).alias("birth_date"),
        "postal_code", "state", "country",
        F.when(flag == "Y", True).when(flag == "N", False).when(F.col("death").isNotNull(), True).alias("deceased"),
        F.to_date(hl7_time(F.col("death"), deid.facility_timezone)).alias("deceased_date"),
        F.coalesce("race_text", "race_code").alias("race"),
        F.coalesce("ethnicity_text", "ethnicity_code").alias("ethnicity"), "marital_status", "language",
        F.lit(None).cast("string").alias("insurance"), F.col("message_ts").alias("updated_at"),
        *source_lineage(HL7V2))


def harmonize(rows: DataFrame, per_record: bool = False) -> DataFrame:
    """Source rows -> one row per patient_key: latest non-null value per attribute; all sources and hashes.

    ``per_record``: one row per (patient_key, source record) instead, for records quarantined on their own."""
    aggs = [latest_value(a, "updated_at").alias(a) for a in ATTRIBUTES]
    invalid = F.coalesce(F.col("invalid"), F.array().cast("array<string>")) if "invalid" in rows.columns \
        else F.array().cast("array<string>")
    return rows.groupBy("patient_key", *(["content_hash"] if per_record else [])).agg(
        *aggs, F.max("updated_at").alias("source_updated_at"), *collect_lineage(),
        F.array_distinct(F.flatten(F.collect_list(invalid))).alias("invalid"))


def deidentify(patients: DataFrame, as_of: Column | None = None) -> DataFrame:
    """De-identified shape of silver.patient: ZIP3, 90+ (dates still real: the job applies the date policy)."""
    ref = as_of if as_of is not None else F.current_date()
    over_89 = is_90_plus(F.col("birth_date"), F.coalesce(F.col("deceased_date"), ref))
    ref_date = F.coalesce(F.col("deceased_date"), ref)
    return patients.select(
        "patient_key", map_gender(F.col("gender")).alias("gender"),
        birth_date_90plus_rule(F.col("birth_date"), ref_date).alias("birth_date"),
        birth_year_90plus_rule(F.col("birth_date"), ref_date).alias("birth_year"),
        F.coalesce(over_89, F.lit(False)).alias("is_age_90_plus"),
        generalize_zip3(F.col("postal_code")).alias("zip3"), "state", "country",
        F.coalesce(F.col("deceased"), F.lit(False)).alias("deceased"), "deceased_date", "race", "ethnicity",
        "marital_status", "language", "insurance", "source_updated_at", "sources", "bronze_hashes",
        *[c for c in ("invalid",) if c in patients.columns])


def fhir_known_identifiers(resources: DataFrame, index: DataFrame) -> DataFrame:
    """(patient_key, known) from FHIR Patient: names, identifiers, telecom, address parts (to scrub free text)."""
    p = with_index_key(flatten(resources, "patient"), index)
    names = p.select("patient_key", known_identifiers_from_arrays(
        NAME=F.concat(F.coalesce("family_names", F.array().cast("array<string>")),
                      F.coalesce("given_names", F.array().cast("array<string>"))),
        ADDRESS=F.concat(F.coalesce("address_lines", F.array().cast("array<string>")),
                         F.coalesce("cities", F.array().cast("array<string>")))).alias("known"))
    ids = with_index_key(flatten(resources, "patient_identifier"), index)
    kind = F.when(F.upper("kind") == "MR", "MRN").when(F.upper("kind") == "SS", "SSN") \
            .when((F.col("kind") == "telecom") & (F.col("system") == "email"), "EMAIL") \
            .when((F.col("kind") == "telecom") & (F.col("system").isin("phone", "fax", "sms")), "PHONE") \
            .otherwise("ID")
    other = ids.select("patient_key", F.array(F.struct(kind.alias("kind"), F.col("value").cast("string")
                                                       .alias("value"))).alias("known"))
    return names.unionByName(other)


def hl7_known_identifiers(segs: DataFrame, deid: Deid) -> DataFrame:
    """(patient_key, known) from HL7 PID: names, MRN, SSN, phones, e-mail, address parts."""
    pid = segment_fields(segs, "PID", {
        "mrn": hl7_mrn(), "family": field(5, 1), "given": field(5, 2), "middle": field(5, 3),
        "maiden": field(6, 1), "alias": field(9, 1), "ssn": field(19, decode=False),
        "phone1": field(13, 1, 1, decode=False), "phone2": field(13, 1, 2, decode=False),
        "phone3": field(14, 1, 1, decode=False), "email1": field(13, 4, 1, decode=False),
        "email2": field(13, 4, 2, decode=False), "street": field(11, 1), "city": field(11, 3),
    }).filter(F.col("mrn").isNotNull())
    known = known_identifiers(
        NAME=[F.col(c) for c in ("family", "given", "middle", "maiden", "alias")], MRN=[F.col("mrn")],
        SSN=[F.col("ssn")], PHONE=[F.col(c) for c in ("phone1", "phone2", "phone3")],
        EMAIL=[F.col("email1"), F.col("email2")], ADDRESS=[F.col("street"), F.col("city")])
    return pid.select(pseudonym(F.col("mrn"), deid.key, "patient").alias("patient_key"), known.alias("known"))


def known_by_patient(frames: list[DataFrame]) -> DataFrame:
    """(patient_key, known): every known identifier of each patient across sources, once."""
    typed = [f.select("patient_key", F.col("known").cast(KNOWN_TYPE).alias("known")) for f in frames]
    rows = typed[0]
    for f in typed[1:]:
        rows = rows.unionByName(f)
    return rows.groupBy("patient_key").agg(F.array_distinct(F.flatten(F.collect_list("known"))).alias("known"))
