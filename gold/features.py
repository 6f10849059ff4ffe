"""Readmission features, one row per discharged inpatient encounter, point-in-time correct at discharge.

Every feature uses only rows whose effective time is <= the encounter's ``discharge_at``:
observations by ``effective_at``, conditions by ``recorded_at`` (else ``onset_at``), prior stays by ``admit_at``.
Rows with no effective time are not used (their availability at discharge cannot be shown).
The label ``readmitted_within_30d`` is the only column that looks past discharge, by definition. It is not
computed here: it is ``gold.fct_encounter.readmitted_within_30d``, the one readmission definition the dbt mart
uses too (dbt_project/models/intermediate/int_encounters_readmissions.sql: deaths, discharges against advice and
transfers out are no index stays, transfer chains are one episode, planned readmissions do not count). The rows are
that model's index admissions; a censored stay (under 30 days of data after discharge) has a NULL label, kept for
scoring and left out of training.

Missing values are explicit: a lab last measured before admission (within ``LAB_LOCF_DAYS``) is carried
forward with ``<feature>_imputed = true``; a vital with no measurement in the ``VITAL_WINDOW_HOURS`` before
discharge carries the last measurement within ``VITAL_LOCF_HOURS`` forward, flagged the same way; with nothing
in the window the value is NULL (the training pipeline imputes it and adds a missing indicator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import Window
from pyspark.sql import functions as F

from gold.charlson import charlson_index, mapping_frame
from lakehouse.catalog import Catalog, is_delta_table
from lakehouse.engine import get_spark
from lakehouse.errors import LakehouseError
from silver import schemas

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from lakehouse.catalog import Catalog
    from lakehouse.config import Settings
    from lakehouse.runlog import Run

FEATURE_TABLE = "gold.features_readmission"
QUARANTINE_TABLE = "quarantine.features_readmission"
OUTCOME_TABLE = "gold.fct_encounter"  # the readmission label: one definition, the dbt model's
LABEL = "readmitted_within_30d"

# FHIR v3 ActCode (IMP, ACUTE, NONAC), HL7 v2 PV1-2 patient class (I), and plain words
INPATIENT_CLASSES = ("IMP", "ACUTE", "NONAC", "I", "INPATIENT", "INPATIENT ENCOUNTER")
VOID_STATUSES = ("cancelled", "entered-in-error")
VOID_VERIFICATION = ("refuted", "entered-in-error")

LAB_LOCF_DAYS = 30
VITAL_WINDOW_HOURS = 24
VITAL_LOCF_HOURS = 72
PRIOR_WINDOWS_MONTHS = (6, 12)
AGE_BANDS = ((18, "0-17"), (35, "18-34"), (50, "35-49"), (65, "50-64"), (75, "65-74"), (90, "75-89"))


@dataclass(frozen=True)
class Measure:
    """A feature from observations: LOINC codes, accepted UCUM spellings of one canonical unit, aggregate."""

    name: str
    loinc: tuple[str, ...]
    units: tuple[str, ...]
    agg: str = "last"  # last | avg | max | min


LABS = (
    Measure("lab_glucose", ("2345-7", "2339-0"), ("mg/dL",)),
    Measure("lab_creatinine", ("2160-0", "38483-4"), ("mg/dL",)),
    Measure("lab_hemoglobin", ("718-7",), ("g/dL",)),
    Measure("lab_sodium", ("2951-2", "2947-0"), ("mmol/L", "meq/L", "mEq/L")),
    Measure("lab_potassium", ("2823-3", "6298-4"), ("mmol/L", "meq/L", "mEq/L")),
)
VITALS = (
    Measure("vital_heart_rate_mean", ("8867-4",), ("/min", "{beats}/min"), "avg"),
    Measure("vital_systolic_bp_mean", ("8480-6",), ("mm[Hg]", "mmHg"), "avg"),
    Measure("vital_temperature_max", ("8310-5", "8331-1"), ("Cel",), "max"),
    Measure("vital_spo2_min", ("59408-5", "2708-6"), ("%",), "min"),
)
CATEGORICAL_FEATURES = ("age_band", "sex")
NUMERIC_FEATURES = (
    "age_at_admission", "length_of_stay_days", "prior_admissions_6m", "prior_admissions_12m", "charlson_index",
    *(m.name for m in LABS), *(m.name for m in VITALS),
    *(f"{m.name}_imputed" for m in LABS), *(f"{m.name}_imputed" for m in VITALS),
)


def _interval(col: str, amount: int, unit: str, sign: int = -1) -> Column:
    op = "-" if sign < 0 else "+"
    return F.expr(f"{col} {op} INTERVAL {amount} {unit}")


# -- encounters ----------------------------------------------------------------------------------

def inpatient_stays(encounters: DataFrame) -> DataFrame:
    """Inpatient encounters that happened (not cancelled or entered in error), any admit/discharge."""
    cls = F.upper(F.trim(F.col("encounter_class")))
    status = F.lower(F.coalesce(F.col("status"), F.lit("")))
    return encounters.where(cls.isin(*INPATIENT_CLASSES) & ~status.isin(*VOID_STATUSES))


def invalid_stays(encounters: DataFrame) -> DataFrame:
    """Inpatient stays that cannot get features, with the reason (the job quarantines them)."""
    stays = inpatient_stays(encounters)
    reason = (
        F.when(F.col("admit_at").isNull() & F.col("discharge_at").isNotNull(),
               F.lit("inpatient encounter has no admit_at"))
        .when(F.col("discharge_at") < F.col("admit_at"), F.lit("discharge_at is before admit_at"))
    )
    return stays.withColumn("reason", reason).where(F.col("reason").isNotNull())


def feature_base(encounters: DataFrame) -> DataFrame:
    """One row per discharged inpatient stay with a valid admit/discharge interval."""
    return inpatient_stays(encounters).where(
        F.col("admit_at").isNotNull() & F.col("discharge_at").isNotNull() & (F.col("discharge_at") >= F.col("admit_at"))
    ).select("encounter_key", "patient_key", "admit_at", "discharge_at").dropDuplicates(["encounter_key"])


# -- features ------------------------------------------------------------------------------------

def demographics(base: DataFrame, patients: DataFrame) -> DataFrame:
    """Age at admission (90 for the Safe Harbor 90+ group), age band, sex."""
    p = patients.select("patient_key", "birth_date", "birth_year", "is_age_90_plus", "gender").dropDuplicates(
        ["patient_key"])
    age_from_date = F.floor(F.months_between(F.col("admit_at"), F.col("birth_date").cast("timestamp")) / 12)
    age_from_year = F.year("admit_at") - F.col("birth_year")
    raw_age = F.coalesce(age_from_date, age_from_year).cast("int")
    age = F.when(F.coalesce(F.col("is_age_90_plus"), F.lit(False)) | (raw_age >= 90), F.lit(90)).otherwise(raw_age)
    band: Column = F.when(F.col("age_at_admission").isNull(), F.lit("unknown"))
    for upper, label in AGE_BANDS:
        band = band.when(F.col("age_at_admission") < upper, F.lit(label))
    band = band.otherwise(F.lit("90+"))
    gender = F.lower(F.trim(F.col("gender")))
    sex = F.when(gender.isin("male", "female", "other"), gender).otherwise(F.lit("unknown"))
    return (
        base.join(p, "patient_key", "left")
        .select("encounter_key", age.alias("age_at_admission"), sex.alias("sex"))
        .withColumn("age_band", band)
    )


def prior_admissions(base: DataFrame, stays: DataFrame) -> DataFrame:
    """Inpatient admissions of the same patient that started in the 6 and 12 months before this admission."""
    prior = stays.where(F.col("admit_at").isNotNull()).select(
        "patient_key", F.col("encounter_key").alias("prior_key"), F.col("admit_at").alias("prior_admit_at"))
    b = base.select("encounter_key", "patient_key", "admit_at")
    longest = max(PRIOR_WINDOWS_MONTHS)
    joined = b.join(prior, "patient_key").where(
        (F.col("prior_key") != F.col("encounter_key"))
        & (F.col("prior_admit_at") < F.col("admit_at"))
        & (F.col("prior_admit_at") >= _interval("admit_at", longest, "MONTHS"))
    )
    aggs = [
        F.count(F.when(F.col("prior_admit_at") >= _interval("admit_at", months, "MONTHS"), 1)).cast("int")
        .alias(f"prior_admissions_{months}m")
        for months in PRIOR_WINDOWS_MONTHS
    ]
    counts = joined.groupBy("encounter_key").agg(*aggs)
    cols = [f"prior_admissions_{m}m" for m in PRIOR_WINDOWS_MONTHS]
    return b.select("encounter_key").join(counts, "encounter_key", "left").fillna(0, subset=cols)


def comorbidity(base: DataFrame, conditions: DataFrame, mapping: DataFrame) -> DataFrame:
    """Charlson index from the patient's ICD-10-CM conditions recorded at or before discharge."""
    known_at = F.coalesce(F.col("recorded_at"), F.col("onset_at"))
    verification = F.lower(F.coalesce(F.col("verification_status"), F.lit("")))
    c = conditions.where(F.col("icd10cm_code").isNotNull() & ~verification.isin(*VOID_VERIFICATION)).select(
        "patient_key", F.col("icd10cm_code").alias("icd10"), known_at.alias("known_at"))
    codes = (
        base.select("encounter_key", "patient_key", "discharge_at").join(c, "patient_key")
        .where(F.col("known_at").isNotNull() & (F.col("known_at") <= F.col("discharge_at")))
        .select("encounter_key", "icd10")
    )
    scores = charlson_index(codes, mapping)
    return (
        base.select("encounter_key").join(scores, "encounter_key", "left")
        .select("encounter_key", F.coalesce("charlson_index", F.lit(0)).alias("charlson_index"),
                F.coalesce("charlson_categories", F.array().cast("array<string>")).alias("charlson_categories"))
    )


def _measure_name(measures: tuple[Measure, ...]) -> Column:
    """The feature an observation row feeds (NULL when none): LOINC code and canonical unit must both match."""
    name: Column | None = None
    for m in measures:
        cond = F.col("loinc_code").isin(*m.loinc) & F.col("unit").isin(*m.units)
        name = F.when(cond, F.lit(m.name)) if name is None else name.when(cond, F.lit(m.name))
    assert name is not None
    return name


def usable_observations(observations: DataFrame, measures: tuple[Measure, ...]) -> DataFrame:
    """Numeric, timed, not voided observations of the given measures, tagged with the feature name."""
    status = F.lower(F.coalesce(F.col("status"), F.lit("")))
    return (
        observations.where(F.col("value_num").isNotNull() & F.col("effective_at").isNotNull()
                           & ~status.isin(*VOID_STATUSES))
        .withColumn("feature", _measure_name(measures))
        .where(F.col("feature").isNotNull())
        .select("patient_key", "observation_key", "feature", "value_num", "effective_at")
    )


def last_labs(base: DataFrame, observations: DataFrame) -> DataFrame:
    """Last value of each lab at or before discharge; carried forward from up to LAB_LOCF_DAYS before admission."""
    obs = usable_observations(observations, LABS)
    b = base.select("encounter_key", "patient_key", "admit_at", "discharge_at")
    in_window = b.join(obs, "patient_key").where(
        (F.col("effective_at") <= F.col("discharge_at"))
        & (F.col("effective_at") >= _interval("admit_at", LAB_LOCF_DAYS, "DAYS"))
    )
    latest = Window.partitionBy("encounter_key", "feature").orderBy(F.col("effective_at").desc(),
                                                                    F.col("observation_key").desc())
    last = in_window.withColumn("rn", F.row_number().over(latest)).where(F.col("rn") == 1)
    aggs: list[Column] = []
    for m in LABS:
        hit = F.col("feature") == m.name
        aggs += [F.max(F.when(hit, F.col("value_num"))).alias(m.name),
                 F.max(F.when(hit, F.col("effective_at") < F.col("admit_at"))).alias(f"{m.name}_imputed")]
    values = last.groupBy("encounter_key").agg(*aggs)
    flags = [f"{m.name}_imputed" for m in LABS]
    return b.select("encounter_key").join(values, "encounter_key", "left").fillna(False, subset=flags)


def vital_aggregates(base: DataFrame, observations: DataFrame) -> DataFrame:
    """Vitals over the VITAL_WINDOW_HOURS before discharge; else the last value within VITAL_LOCF_HOURS (imputed)."""
    obs = usable_observations(observations, VITALS)
    b = base.select("encounter_key", "patient_key", "discharge_at")
    rows = b.join(obs, "patient_key").where(
        (F.col("effective_at") <= F.col("discharge_at"))
        & (F.col("effective_at") >= _interval("discharge_at", VITAL_LOCF_HOURS, "HOURS"))
    ).withColumn("in_window", F.col("effective_at") >= _interval("discharge_at", VITAL_WINDOW_HOURS, "HOURS"))
    windowed = F.when(F.col("in_window"), F.col("value_num"))
    per_feature = rows.groupBy("encounter_key", "feature").agg(
        F.count(windowed).alias("n_window"),
        F.avg(windowed).alias("avg_v"), F.max(windowed).alias("max_v"), F.min(windowed).alias("min_v"),
        F.max(F.struct("effective_at", "observation_key", "value_num")).getField("value_num").alias("last_v"),
    )
    aggs: list[Column] = []
    for m in VITALS:
        hit = F.col("feature") == m.name
        in_window = F.col(f"{m.agg}_v")
        value = F.when(F.col("n_window") > 0, F.round(in_window, 2)).otherwise(F.col("last_v"))
        aggs += [F.max(F.when(hit, value)).alias(m.name),
                 F.max(F.when(hit, F.col("n_window") == 0)).alias(f"{m.name}_imputed")]
    values = per_feature.groupBy("encounter_key").agg(*aggs)
    flags = [f"{m.name}_imputed" for m in VITALS]
    return b.select("encounter_key").join(values, "encounter_key", "left").fillna(False, subset=flags)


def readmission_label(base: DataFrame, outcomes: DataFrame) -> DataFrame:
    """The index admissions of ``base`` with their label, from ``gold.fct_encounter`` (``outcomes``): the
    definition is the dbt model's, not a second implementation (NULL when censored)."""
    index = outcomes.where(F.col("is_index_admission")).select("encounter_key", LABEL).dropDuplicates(
        ["encounter_key"])
    return base.select("encounter_key").join(index, "encounter_key")


def readmission_features(encounters: DataFrame, patients: DataFrame, conditions: DataFrame,
                         observations: DataFrame, charlson_mapping: DataFrame, outcomes: DataFrame) -> DataFrame:
    """The feature table: keys, times, features, ``<feature>_imputed`` flags and the label, one row per index
    admission of ``outcomes`` (``gold.fct_encounter``)."""
    stays = inpatient_stays(encounters)
    base = feature_base(encounters)
    los = F.round((F.unix_timestamp("discharge_at") - F.unix_timestamp("admit_at")) / 86400.0, 4)
    out = (
        base.withColumn("length_of_stay_days", los)
        .join(demographics(base, patients), "encounter_key", "left")
        .join(prior_admissions(base, stays), "encounter_key", "left")
        .join(comorbidity(base, conditions, charlson_mapping), "encounter_key", "left")
        .join(last_labs(base, observations), "encounter_key", "left")
        .join(vital_aggregates(base, observations), "encounter_key", "left")
        .join(readmission_label(base, outcomes), "encounter_key")
    )
    cols = ["encounter_key", "patient_key", "admit_at", "discharge_at", "age_at_admission", "age_band", "sex",
            "length_of_stay_days", "prior_admissions_6m", "prior_admissions_12m", "charlson_index",
            "charlson_categories"]
    for m in (*LABS, *VITALS):
        cols += [m.name, f"{m.name}_imputed"]
    return out.select(*cols, LABEL)


# -- job -----------------------------------------------------------------------------------------

def _silver(catalog: Catalog, name: str, run: Run) -> DataFrame:

    table = f"silver.{name}"
    if catalog.exists(table):
        run.read(table, catalog.version(table))
        return catalog.read(table)
    return catalog.spark.createDataFrame([], schemas.ddl(name))  # no rows of this domain yet


def quarantine_rows(invalid: DataFrame, run_id: str) -> DataFrame:
    return invalid.select(
        "reason", "encounter_key", "patient_key",
        F.to_json(F.struct(*[F.col(c) for c in invalid.columns if c != "reason"])).alias("raw"),
        F.lit(run_id).alias("run_id"), F.current_timestamp().alias("quarantined_at"),
    )


def build_features(settings: Settings, run: Run) -> dict[str, Any]:
    """Build ``gold.features_readmission`` from Silver (MERGE by encounter: no new version when unchanged)."""

    if not is_delta_table(settings.table_path("silver", "encounter")):
        raise LakehouseError("silver.encounter does not exist: run `lakehouse silver` before building features")
    spark = get_spark(settings)
    catalog = Catalog(spark, settings)
    if not catalog.exists(OUTCOME_TABLE):
        raise LakehouseError(f"{OUTCOME_TABLE} does not exist: run `lakehouse gold` before building features "
                             "(the label is Gold's readmission definition)")
    run.read(OUTCOME_TABLE, catalog.version(OUTCOME_TABLE))
    encounters = _silver(catalog, "encounter", run)
    features = readmission_features(
        encounters, _silver(catalog, "patient", run), _silver(catalog, "condition", run),
        _silver(catalog, "observation", run), mapping_frame(spark), catalog.read(OUTCOME_TABLE),
    ).cache()
    changes = catalog.merge(features, FEATURE_TABLE, keys=["encounter_key"], delete_missing=True)
    rows = catalog.read(FEATURE_TABLE).count()
    run.wrote(FEATURE_TABLE, catalog.version(FEATURE_TABLE), rows)

    invalid = invalid_stays(encounters)
    quarantined = invalid.count()
    if quarantined or catalog.exists(QUARANTINE_TABLE):
        catalog.merge(quarantine_rows(invalid, run.run_id), QUARANTINE_TABLE, keys=["encounter_key", "reason"],
                      ignore_changes=["raw", "run_id", "quarantined_at"], delete_missing=True)
        run.wrote(QUARANTINE_TABLE, catalog.version(QUARANTINE_TABLE), quarantined)
    labelled = catalog.read(FEATURE_TABLE).where(F.col(LABEL).isNotNull())
    known, positives = labelled.count(), labelled.where(F.col(LABEL)).count()
    result = {"table": FEATURE_TABLE, "rows": rows, "version": catalog.version(FEATURE_TABLE), **changes,
              "quarantined": quarantined, "censored": rows - known,
              "readmission_rate": round(positives / known, 4) if known else None}
    for key in ("rows", "quarantined", "readmission_rate"):
        run.metric(f"features.{key}", result[key])
    return result
