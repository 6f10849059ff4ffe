"""Bronze -> Silver: flatten, harmonize, de-identify, code, validate, quarantine, MERGE; reconcile per domain.

Each run recomputes every domain from the whole of Bronze (latest FHIR version per resource, one HL7 message per
control id, one DICOM instance per SOP Instance UID) and MERGEs by natural key, deleting rows no longer produced
(a row that moved to quarantine, a key superseded by harmonization). Re-running with no new input writes nothing.

Reconciliation, per domain: ``bronze_input`` is the number of distinct source records after deduplication and
harmonization (see ``DEFINITIONS``); it must equal ``silver + quarantined`` or the run fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bronze.schemas import DICOM_SCHEMA, DICOM_TABLE, FHIR_SCHEMA, FHIR_TABLE, HL7V2_SCHEMA, HL7V2_TABLE
from expectations import latest_plausible_time, quarantine_invalid, validate, write_results
from lakehouse import progress, uptodate
from lakehouse.catalog import Catalog, ddl_columns
from lakehouse.config import Settings
from lakehouse.engine import get_spark
from lakehouse.errors import ReconciliationError
from lakehouse.logs import get_logger
from lakehouse.runlog import Run
from lakehouse.staging import Staging, staging
from silver import (
    allergy,
    condition,
    diagnostic_report,
    encounter,
    imaging,
    immunization,
    medication_request,
    observation,
    organization,
    patient,
    practitioner,
    procedure,
)
from silver.common import Deid, latest_fhir, latest_messages, segments, to_contract, union_all
from silver.deid import apply_date_policy, engine_key, keyed_lineage, load_key, shifted_date_columns
from silver.schemas import VOLATILE, columns, ddl, natural_key

log = get_logger(__name__)

QUARANTINE_DDL = ("natural_key STRING, failed_rule STRING, reason STRING, sources ARRAY<STRING>, "
                  "bronze_hashes ARRAY<STRING>, content_hash STRING, source_file STRING, record STRING, "
                  "silver_run_id STRING, quarantined_at TIMESTAMP")
QUARANTINE_KEYS = ("natural_key", "failed_rule", "content_hash")
CODE_FOLDERS = ("bronze", "silver", "expectations", "lakehouse")

# the dates the date policy applies to, per table: the shift_date rules of silver/deid/rules.csv
DATE_COLUMNS: dict[str, tuple[str, ...]] = shifted_date_columns()

DEFINITIONS = {
    "patient": "distinct patient_key (MRN pseudonym, else FHIR id) over latest FHIR Patients and PID segments "
               "whose values all type, + each source record with a value that does not",
    "encounter": "distinct encounter_key (visit number, else FHIR id) over latest FHIR Encounters and ADT PV1s",
    "observation": "latest FHIR Observation values (resource or each component) + OBX of distinct ORU messages "
                   "- FHIR/HL7 pairs merged into one row",
    "condition": "latest FHIR Conditions + distinct (patient, code, onset) of DG1s - FHIR/HL7 pairs merged",
    "allergy": "latest FHIR AllergyIntolerances + distinct (patient, allergen) of AL1s",
    "imaging_study": "distinct Study Instance UIDs over FHIR ImagingStudy and DICOM instances",
    "imaging_series": "distinct Series Instance UIDs over FHIR ImagingStudy.series and DICOM instances",
    "imaging_instance": "distinct SOP Instance UIDs of DICOM instances",
    "practitioner": "distinct practitioner_key (NPI, else FHIR id) over latest FHIR Practitioners",
}
FHIR_TYPES = {"medication_request": "MedicationRequest", "procedure": "Procedure",
              "diagnostic_report": "DiagnosticReport", "immunization": "Immunization", "organization": "Organization"}
for _table, _type in FHIR_TYPES.items():
    DEFINITIONS[_table] = f"latest FHIR {_type} resources (one per resource id)"


class _Builder:
    def __init__(self, spark: SparkSession, catalog: Catalog, settings: Settings, run: Run, scratch: Staging) -> None:
        self.spark, self.catalog, self.settings, self.run, self.scratch = spark, catalog, settings, run, scratch
        self.deid = Deid(key=engine_key(settings), date_policy=settings.date_policy,
                         max_shift_days=settings.max_shift_days, facility_timezone=settings.facility_timezone)
        self.latest_time: datetime = latest_plausible_time(settings)
        self.valid: dict[str, DataFrame] = {}
        self.report: dict[str, dict[str, int]] = {}
        self.dq: list[dict[str, Any]] = []
        self.now = F.lit(datetime.now().astimezone()).cast("timestamp")
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()

    def stage(self, df: DataFrame, label: str) -> DataFrame:
        """Compute ``df`` once into a scratch table and continue from it (see lakehouse.staging)."""
        t = time.monotonic()
        out = self.scratch.stage(df, label)
        self.timings[f"stage_{label}"] = round(time.monotonic() - t, 1)
        return out

    def read(self, name: str, schema: Any) -> DataFrame:
        if not self.catalog.exists(name):
            return self.spark.createDataFrame([], schema)
        self.run.read(name, self.catalog.version(name))
        return self.catalog.read(name)

    def lineage_files(self, bronze: list[DataFrame]) -> None:
        self.files = union_all([b.select("content_hash", "source_file") for b in bronze]).dropDuplicates(
            ["content_hash"])

    def finish(self, table: str, df: DataFrame, bronze_input: int, pre_rejected: DataFrame | None = None) -> None:
        """Date policy, contract shape, row rules, GX, MERGE, quarantine, reconciliation for one domain."""
        progress.start("silver", table)
        dates = DATE_COLUMNS.get(table, ())
        if dates:
            df = apply_date_policy(df, dates, "patient_key", self.deid.key, self.deid.date_policy,
                                   self.deid.max_shift_days)
            if "birth_date" in dates and "birth_year" in df.columns:
                # the year of the published birth date: a real year beside shifted dates would narrow the shift
                df = df.withColumn("birth_year", F.year("birth_date"))
        untyped = None
        if "invalid" in df.columns:  # values that were sent but cannot be typed: quarantined, never NULL
            # computed once: both the rows kept and the rows quarantined come from it
            df = self.stage(df.withColumn("invalid", F.coalesce(F.col("invalid"), F.array().cast("array<string>"))),
                            f"{table}_typed")
            untyped = to_contract(
                df.filter(F.size("invalid") > 0)
                  .withColumn("failed_rule", F.lit(f"{table}.values_typed"))
                  .withColumn("reason", F.concat(F.lit("value sent but not of its FHIR type: "),
                                                 F.array_join(F.array_sort("invalid"), ", "))),
                table, self.run.run_id, self.now, extra=("failed_rule", "reason"))
            df = df.filter(F.size("invalid") == 0)
        shaped = self.stage(to_contract(df, table, self.run.run_id, self.now), f"{table}_shaped")
        valid, rejected = quarantine_invalid(shaped, table, reference=self.valid, latest_time=self.latest_time)
        valid = self.stage(valid, f"{table}_valid")
        rejected = rejected.select(*columns(table), "failed_rule", "reason")
        for extra in (pre_rejected, untyped):
            if extra is not None:
                rejected = rejected.unionByName(extra)
        n_valid, n_rejected = valid.count(), rejected.count()
        keys = natural_key(table)
        distinct = valid.select(*keys).distinct().count()
        self.valid[table] = valid
        t_gx = time.monotonic()
        self.dq.append(validate(self.spark, valid, table, self.run.run_id, reference=self.valid,
                                latest_time=self.latest_time))
        self.timings[f"{table}_gx"] = round(time.monotonic() - t_gx, 1)
        name = f"silver.{table}"
        self.catalog.create(name, ddl(table))
        # Silver keeps lineage through keyed hashes: a plain hash of a raw message would link a copy of it to its row
        published = valid.withColumn("bronze_hashes", keyed_lineage(F.col("bronze_hashes"), self.deid.key))
        changes = self.catalog.merge(published, name, keys, delete_missing=True, ignore_changes=VOLATILE)
        if any(changes.values()):
            self.run.wrote(name, self.catalog.version(name), n_valid)
        n_quarantined = self._quarantine(table, rejected) if n_rejected else 0
        self.report[table] = {"bronze_input": bronze_input, "silver": n_valid, "quarantined": n_rejected,
                              **{k: v for k, v in changes.items() if v}}
        if n_valid + n_rejected != bronze_input or distinct != n_valid or n_quarantined != n_rejected:
            raise ReconciliationError(
                f"silver.{table}: bronze input {bronze_input} ({DEFINITIONS[table]}) != silver {n_valid} "
                f"({distinct} distinct keys) + quarantined {n_rejected} ({n_quarantined} in quarantine)")
        self.timings[table] = round(time.monotonic() - self.started, 1)
        log.info("silver.%s: bronze input %d = silver %d + quarantined %d", table, bronze_input, n_valid,
                 n_rejected)
        progress.done("silver", table, rows=n_valid, quarantined=n_rejected, **{k: v for k, v in changes.items() if v})

    def _quarantine(self, table: str, rejected: DataFrame) -> int:
        """Append new rejections to quarantine.silver_<table>; returns how many of them the table holds."""
        keys = natural_key(table)
        record = F.to_json(F.struct(*[F.col(c) for c in columns(table) if c not in VOLATILE]))
        rows = rejected.select(
            F.concat_ws("|", *[F.col(k).cast("string") for k in keys]).alias("natural_key"), "failed_rule",
            "reason", "sources", "bronze_hashes", F.get(F.col("bronze_hashes"), 0).alias("content_hash"),
            record.alias("record"), F.lit(self.run.run_id).alias("silver_run_id"),
            self.now.alias("quarantined_at"))
        rows = rows.join(self.files, "content_hash", "left").select(*[c for c, _ in ddl_columns(QUARANTINE_DDL)])
        name = f"quarantine.silver_{table}"
        self.catalog.create(name, QUARANTINE_DDL)
        appended = self.catalog.append_new(rows, name, QUARANTINE_KEYS)
        if appended:
            self.run.wrote(name, self.catalog.version(name), appended)
        held = self.catalog.read(name).select(*QUARANTINE_KEYS).distinct()
        return rows.select(*QUARANTINE_KEYS).distinct().join(held, list(QUARANTINE_KEYS)).count()


def _count_type(resources: DataFrame, resource_type: str) -> int:
    return resources.filter(F.col("resource_type") == resource_type).count()


def _fingerprint(settings: Settings) -> dict[str, Any]:
    owned = uptodate.layer_tables(settings, "silver") + uptodate.layer_tables(settings, "quarantine", "silver_")
    return {**uptodate.fingerprint(settings, load_key(settings),
                                   uptodate.table_versions(settings, [FHIR_TABLE, HL7V2_TABLE, DICOM_TABLE]),
                                   uptodate.table_versions(settings, owned), CODE_FOLDERS),
            # plausibility of event times and ages over 89 are judged against today
            "as_of_day": date.today().isoformat()}


def build_silver(settings: Settings, run: Run, force: bool = False) -> dict[str, Any]:
    """Build every Silver domain from Bronze; returns per domain {"bronze_input", "silver", "quarantined"}.

    Nothing is recomputed when Bronze, the Silver tables, the code and rules, the configuration and the key are
    as the last completed build left them (see lakehouse.uptodate), unless ``force``.
    """
    t0 = time.monotonic()
    spark = get_spark(settings)
    catalog = Catalog(spark, settings)
    current = _fingerprint(settings)
    previous = None if force else uptodate.unchanged_since(settings, "silver", current)
    if previous is not None:
        run.metric(uptodate.metric_name("silver"), current)
        log.info("silver: up to date (Bronze, code, configuration and key unchanged since run %s)",
                 previous["run_id"])
        counts = {k.removeprefix("silver_"): v for k, v in previous.items()
                  if k.startswith("silver_") and isinstance(v, dict) and "bronze_input" in v}
        progress.done("silver", "all domains", status="up to date", since=f"run {previous['run_id'][:8]}")
        return {**counts, "up_to_date": True, "since_run": previous["run_id"]}
    progress.start("silver", "latest Bronze records, indexes")
    with staging(spark, settings, run.run_id) as scratch:
        b = _Builder(spark, catalog, settings, run, scratch)
        _build_domains(b)
    summary = write_results(catalog, b.dq)
    progress.done("silver", "data quality results", rows=summary["rows"])
    run.metric(uptodate.metric_name("silver"), _fingerprint(settings))
    run.metric("silver_seconds", round(time.monotonic() - t0, 2))
    run.metric("silver_timings", b.timings)
    for table, counts in b.report.items():
        run.metric(f"silver_{table}", counts)
    return {**b.report, "_dq": {"rows": summary["rows"], "data_docs": summary["data_docs"]}}


def _build_domains(b: _Builder) -> None:
    fhir_raw = b.read(FHIR_TABLE, FHIR_SCHEMA)
    hl7_raw = b.read(HL7V2_TABLE, HL7V2_SCHEMA)
    dicom_raw = b.read(DICOM_TABLE, DICOM_SCHEMA)
    b.lineage_files([fhir_raw, hl7_raw, dicom_raw])
    res = b.stage(latest_fhir(fhir_raw), "fhir_latest")
    segs = b.stage(segments(latest_messages(hl7_raw)), "hl7v2_segments")
    deid = b.deid

    # indexes that resolve FHIR references, and every patient's known identifiers (for scrubbing free text)
    pat_index = b.stage(patient.fhir_patient_index(res, deid), "patient_index")
    enc_index = b.stage(encounter.fhir_encounter_index(res, deid), "encounter_index")
    prac_index = b.stage(practitioner.fhir_practitioner_index(res, deid), "practitioner_index")
    known = b.stage(patient.known_by_patient([patient.fhir_known_identifiers(res, pat_index),
                                              patient.hl7_known_identifiers(segs, deid)]), "known_identifiers")

    _build_patient(b, res, segs, pat_index)
    practitioners = practitioner.fhir_practitioners(res, prac_index)
    b.finish("practitioner", practitioners, prac_index.select("practitioner_key").distinct().count())
    b.finish("organization", organization.fhir_organizations(res, deid), _count_type(res, "Organization"))
    _build_encounter(b, res, segs, pat_index, enc_index, prac_index)
    _build_observation(b, res, segs, pat_index, enc_index, known)
    _build_condition(b, res, segs, pat_index, enc_index)
    simple: dict[str, Callable[[], DataFrame]] = {
        "medication_request": lambda: medication_request.fhir_medication_requests(
            res, pat_index, enc_index, prac_index, known, deid),
        "procedure": lambda: procedure.fhir_procedures(res, pat_index, enc_index, deid),
        "diagnostic_report": lambda: diagnostic_report.fhir_diagnostic_reports(res, pat_index, enc_index, known,
                                                                                deid),
        "immunization": lambda: immunization.fhir_immunizations(res, pat_index, enc_index, deid),
    }
    for table, build in simple.items():
        b.finish(table, build(), _count_type(res, FHIR_TYPES[table]))
    fhir_allergies = allergy.fhir_allergies(res, pat_index, deid)
    hl7_allergies = b.stage(allergy.hl7_allergies(segs, deid), "allergy_hl7")
    b.finish("allergy", fhir_allergies.unionByName(hl7_allergies),
             _count_type(res, "AllergyIntolerance") + hl7_allergies.count())
    _build_imaging(b, res, dicom_raw, pat_index, enc_index, known)


def _build_patient(b: _Builder, res: DataFrame, segs: DataFrame, index: DataFrame) -> None:
    rows = patient.fhir_patients(res, index).unionByName(patient.hl7_patients(segs, b.deid),
                                                          allowMissingColumns=True)
    rows = b.stage(rows.withColumn("invalid", F.coalesce(F.col("invalid"), F.array().cast("array<string>"))),
                   "patient_rows")
    # a source record with an untypeable value is quarantined on its own, not merged into the patient
    merged = b.stage(patient.harmonize(rows.filter(F.size("invalid") == 0)), "patient_merged")
    untyped = patient.harmonize(rows.filter(F.size("invalid") > 0), per_record=True).drop("content_hash")
    n_untyped = rows.filter(F.size("invalid") > 0).count()
    b.finish("patient", patient.deidentify(merged).unionByName(patient.deidentify(untyped)),
             merged.count() + n_untyped)


def _build_encounter(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame,
                     pracs: DataFrame) -> None:
    rows = encounter.fhir_encounters(res, pats, encs, pracs, b.deid).unionByName(
        encounter.hl7_encounters(segs, b.deid))
    merged = b.stage(encounter.harmonize(rows), "encounter_merged")
    b.finish("encounter", merged, merged.count())


def _build_observation(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame,
                       known: DataFrame) -> None:
    fhir_rows = b.stage(observation.fhir_observations(res, pats, encs, known, b.deid), "observation_fhir")
    rows = fhir_rows.unionByName(b.stage(observation.hl7_observations(segs, known, b.deid), "observation_hl7"),
                                 allowMissingColumns=True)
    standardized = b.stage(observation.standardize(rows), "observation_standardized")
    n_rows = standardized.count()
    pairs = b.stage(observation.harmonized_pairs(standardized), "observation_pairs")
    n_pairs = pairs.count()
    b.run.metric("observation_harmonized_pairs", n_pairs)
    b.finish("observation", observation.merge_pairs(standardized, pairs), n_rows - n_pairs)


def _build_condition(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame) -> None:
    rows = condition.fhir_conditions(res, pats, encs, b.deid).unionByName(condition.hl7_conditions(segs, b.deid))
    standardized = b.stage(condition.standardize(rows), "condition_standardized")
    n_records = standardized.select("condition_key").distinct().count()
    merged, pairs = condition.harmonize(standardized)
    b.run.metric("condition_harmonized_pairs", pairs)
    b.finish("condition", merged, n_records - pairs)


def _build_imaging(b: _Builder, res: DataFrame, dicom_raw: DataFrame, pats: DataFrame, encs: DataFrame,
                   known: DataFrame) -> None:
    instances = b.stage(imaging.dicom_instances(dicom_raw, known, b.deid), "imaging_instances")
    fhir_studies = imaging.fhir_studies(res, pats, encs, known, b.deid)
    fhir_series = imaging.fhir_series(res, pats, known, b.deid)
    studies = b.stage(imaging.studies(fhir_studies, instances), "imaging_studies")
    b.finish("imaging_study", studies, studies.count())
    series = b.stage(imaging.series(fhir_series, instances), "imaging_series")
    b.finish("imaging_series", series, series.count())
    good = instances.filter(F.col("deid_error").isNull())
    bad = instances.filter(F.col("deid_error").isNotNull())
    bad = bad.withColumn("failed_rule", F.lit("imaging_instance.header_deidentifiable")) \
             .withColumn("reason", F.concat(F.lit("DICOM header cannot be de-identified: "), F.col("deid_error")))
    pre_rejected = to_contract(bad, "imaging_instance", b.run.run_id, b.now, extra=("failed_rule", "reason"))
    b.finish("imaging_instance", good, instances.count(), pre_rejected)
