"""Bronze -> Silver: flatten, harmonize, de-identify, code, validate, quarantine, MERGE; reconcile per domain.

A full build recomputes every domain from the whole of Bronze (latest FHIR version per resource, one HL7 message per
control id, one DICOM instance per SOP Instance UID) and MERGEs by natural key, deleting rows no longer produced
(a row that moved to quarantine, a key superseded by harmonization). Re-running with no new input writes nothing.

An incremental build (the default once a full build has completed with the same code, rules, configuration, key and
day) finds the Bronze records added or removed since (``_system.silver_subjects`` holds the subjects of every record
it has seen, :mod:`silver.increment`), widens them to every record about the same patients, runs the same domain
code over those records only, and MERGEs the rows it made, deleting only rows whose lineage is among those records.
A full build and any sequence of incremental builds over the same Bronze give the same Silver tables
(``tests/test_incremental_silver.py``).

Reconciliation, per domain: ``bronze_input`` is the number of distinct source records after deduplication and
harmonization (see ``DEFINITIONS``); it must equal ``silver + quarantined`` or the run fails.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bronze.schemas import DICOM_SCHEMA, DICOM_TABLE, FHIR_SCHEMA, FHIR_TABLE, HL7V2_SCHEMA, HL7V2_TABLE
from expectations import latest_plausible_time, quarantine_invalid, validate, write_results
from lakehouse import progress, uptodate
from lakehouse.catalog import Catalog, ddl_columns, deid_properties, gold_purge_note
from lakehouse.config import Settings
from lakehouse.engine import get_spark
from lakehouse.errors import LakehouseError, ReconciliationError
from lakehouse.logs import get_logger
from lakehouse.runlog import Run, read_runs
from lakehouse.staging import Staging, staging
from lakehouse.tasks import Step, run_steps
from silver import (
    allergy,
    care_plan,
    care_team,
    condition,
    coverage,
    device,
    diagnostic_report,
    document,
    encounter,
    goal,
    imaging,
    immunization,
    medication_dispense,
    medication_request,
    observation,
    organization,
    patient,
    practitioner,
    procedure,
    service_request,
)
from silver.common import Deid, latest_fhir, latest_messages, segment_fields, segments, to_contract, union_all
from silver.deid import apply_date_policy, engine_key, keyed_lineage, load_key, shifted_date_columns
from silver.deid.keys import key_version
from silver.deid.pseudonym import NAMESPACES_USED
from silver.deid.related import related_identifiers
from silver.deid.surrogate import (
    SURROGATE_DDL,
    SURROGATE_KEYS,
    SURROGATE_TABLE,
    UID_NAMESPACE,
    apply_surrogates,
    header_uids,
    key_columns,
    pseudonyms_used,
    rewrite_header,
    to_issue,
)
from silver.deid.text import exclude_free_text
from silver.increment import SUBJECTS_DDL, closure, dicom_subjects, fhir_subjects, hl7_subjects
from silver.schemas import VOLATILE, columns, ddl, natural_key

log = get_logger(__name__)

QUARANTINE_DDL = ("natural_key STRING, failed_rule STRING, reason STRING, sources ARRAY<STRING>, "
                  "bronze_hashes ARRAY<STRING>, content_hash STRING, source_file STRING, record STRING, "
                  "silver_run_id STRING, quarantined_at TIMESTAMP")
QUARANTINE_KEYS = ("natural_key", "failed_rule", "content_hash")
# Bronze records of which no Silver or quarantine row came (see silver.coverage)
SOURCE_RECORD_QUARANTINE = "quarantine.silver_source_record"
COVERAGE_TABLE = "_system.source_coverage"
COVERAGE_DDL = ("source STRING, record_type STRING, received BIGINT, superseded BIGINT, silver BIGINT, "
                "quarantined BIGINT, not_in_scope BIGINT, no_fact BIGINT, silver_tables STRING, scope_reason STRING, "
                "silver_run_id STRING, evaluated_at TIMESTAMP")
CODE_FOLDERS = ("bronze", "silver", "expectations", "lakehouse")
# the subjects of every Bronze record Silver has seen (silver.increment): what an incremental build widens from
SUBJECTS_TABLE = "_system.silver_subjects"
# the outcome of every Bronze record (silver.coverage.classify): an incremental build replaces those it recomputes
OUTCOMES_TABLE = "_system.source_record_outcomes"
OUTCOMES_DDL = ("source STRING, record_type STRING, content_hash STRING, outcome STRING, declared BOOLEAN, "
                "silver_tables STRING, scope_reason STRING, reason STRING")
# the latest events of the data: (patient_key, true time, threshold), see _Builder._data_end_floor
DATA_END_TABLE = "_system.silver_data_end"
DATA_END_DDL = "patient_key STRING, data_end BIGINT, threshold BIGINT"
LATEST_EVENTS_KEPT = 64
SYSTEM_TABLES = (SUBJECTS_TABLE, OUTCOMES_TABLE, DATA_END_TABLE, COVERAGE_TABLE)
# the order of the domains in reports (they are built in parallel, see _build_domains)
DOMAIN_ORDER = ("patient", "patient_history", "practitioner", "organization", "encounter", "encounter_location",
                "observation", "condition", "service_request", "document", "immunization", "medication_request",
                "medication_dispense", "procedure", "diagnostic_report", "care_plan", "care_team", "device", "goal",
                "care_plan_activity", "allergy", "imaging_study", "imaging_series", "imaging_instance")

# the dates the date policy applies to, per table: the shift_date rules of silver/deid/rules.csv
DATE_COLUMNS: dict[str, tuple[str, ...]] = shifted_date_columns()

DEFINITIONS = {
    "patient": "distinct patient_key (MRN pseudonym, else FHIR id, merged-away keys replaced by the survivor) over "
               "latest FHIR Patients and PID segments whose values all type, + each source record with a value "
               "that does not",
    "patient_history": "demographic source records (PID segments with an MRN of distinct ADT A01/A04/A08/A28/A31 "
                       "messages + every distinct FHIR Patient version in Bronze that resolves to a patient key (one "
                       "whose id cannot be read is in no Silver table: source coverage quarantines it), whose "
                       "values all type) - records that opened no version (same de-identified state as before, or "
                       "superseded at the same instant)",
    "encounter": "distinct encounter_key (visit number, else FHIR id) over latest FHIR Encounters and the PV1s "
                 "of ADT messages (all events of a visit fold into one row)",
    "encounter_location": "ADT events of HL7 visits that put the visit in another place (location, department) "
                          "than the event before (cancelled transfers and pending events excluded)",
    "observation": "latest FHIR Observation values (resource or each component) + distinct result identities "
                   "(sender, order number, OBX-3, OBX-4, else message position) of the OBX segments of distinct "
                   "ORU/OUL messages (earlier statuses of a result are superseded by its latest) - FHIR/HL7 pairs "
                   "merged into one row",
    "condition": "latest FHIR Conditions + distinct (patient, code, onset) of DG1s - FHIR/HL7 pairs merged",
    "allergy": "latest FHIR AllergyIntolerances + distinct (patient, allergen) of AL1s",
    "imaging_study": "distinct Study Instance UIDs over FHIR ImagingStudy and DICOM instances",
    "imaging_series": "distinct Series Instance UIDs over FHIR ImagingStudy.series and DICOM instances",
    "imaging_instance": "distinct SOP Instance UIDs of DICOM instances",
    "practitioner": "distinct practitioner_key (NPI, else FHIR id) over latest FHIR Practitioners",
    "immunization": "latest FHIR Immunizations + RXA segments of distinct messages - RXAs of a vaccination record "
                    "already counted (same patient and ORC-3) - HL7 records merged into their FHIR twin",
    "medication_request": "latest FHIR MedicationRequests + RXE segments of distinct RDE messages - RXEs of an "
                          "order already counted (same patient and ORC-2/ORC-3)",
    "medication_dispense": "latest FHIR MedicationDispenses + RXD segments of distinct messages - RXDs of a "
                           "dispense already counted (same patient, RXD-7, RXD-1, RXD-2)",
    "care_plan_activity": "activity elements with a detail of the latest FHIR CarePlans (in the JSON)",
    "service_request": "latest FHIR ServiceRequests + distinct order identities (placer number^namespace, else "
                       "filler, else message position) of the ORC groups of ORM/OML/OMG/OMI messages",
    "document": "latest FHIR DocumentReferences + distinct document identities (TXA-12^namespace, else message "
                "position) of the TXA segments of MDM messages",
}
# tables made from one FHIR resource type alone
FHIR_TYPES = {"procedure": "Procedure", "diagnostic_report": "DiagnosticReport", "organization": "Organization",
              "care_plan": "CarePlan", "care_team": "CareTeam", "device": "Device", "goal": "Goal"}
for _table, _type in FHIR_TYPES.items():
    DEFINITIONS[_table] = f"latest FHIR {_type} resources (one per resource id)"


class FullBuildNeeded(LakehouseError):
    """Raised inside an incremental build that finds it cannot be incremental; the job builds in full."""


@dataclass
class Increment:
    """The Bronze records an incremental build recomputes (``records``: source, content_hash, lineage_hash) and the
    keyed lineage hashes whose Silver rows it replaces (``lineage``: also those of records gone from Bronze)."""

    records: DataFrame
    lineage: DataFrame
    subjects: set[str]
    counts: dict[str, int]


class _Builder:
    def __init__(self, spark: SparkSession, catalog: Catalog, settings: Settings, run: Run, scratch: Staging) -> None:
        self.spark, self.catalog, self.settings, self.run, self.scratch = spark, catalog, settings, run, scratch
        self.deid = Deid(key=engine_key(settings), deid_profile=settings.deid_profile,
                         max_shift_days=settings.max_shift_days, facility_timezone=settings.facility_timezone,
                         facility_timezones=tuple(sorted(settings.facility_timezones.items())),
                         documents_text="exclude" if settings.free_text == "exclude" else settings.documents_text)
        self.latest_time: datetime = latest_plausible_time(settings)
        # which profile and key built each table: Delta table properties of every Silver table
        self.properties = deid_properties(settings, key_version(settings))
        self.valid: dict[str, DataFrame] = {}
        self.report: dict[str, dict[str, int]] = {}
        self.dq: list[dict[str, Any]] = []
        self.rejected: dict[str, DataFrame] = {}
        self.coverage: dict[str, int] = {}
        # (prior_patient_key, patient_key) of merged patients (ADT A40/A47): every domain is re-keyed in finish
        self.merges: DataFrame | None = None
        # (patient_key, true birth_date): ages at admission are computed before dates are de-identified
        self.birth_dates: DataFrame | None = None
        self.now = F.lit(datetime.now().astimezone()).cast("timestamp")
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()
        self.incremental = False  # asked for; self.increment is set when the plan holds
        self.increment: Increment | None = None
        self.plan: dict[str, Any] = {}  # what the incremental plan found, also when it chose a full build
        # domains are built on several threads (lakehouse.tasks): GX's context and the issuing of surrogates are
        # shared, one thread at a time; each thread's clock times the domain it builds
        self.gx_lock = threading.Lock()
        self.surrogate_lock = threading.Lock()
        self.clock = threading.local()

    def timed(self, step: Callable[[], None]) -> Callable[[], None]:
        """``step`` with this thread's clock started: ``finish`` reports each domain's own time."""
        def run() -> None:
            self.clock.since = time.monotonic()
            step()
        return run

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
        if self._untouched(table, bronze_input):
            self.valid[table] = self.spark.createDataFrame([], ddl(table))
            self.report[table] = {"bronze_input": 0, "silver": 0, "quarantined": 0, "untouched": True}
            progress.done("silver", table, rows=0, status="untouched by this increment", seconds=self._lap(table))
            return
        if self.settings.free_text == "exclude":  # no text of any kind in Silver, scrubbed or not
            df = exclude_free_text(df, table)
        if self.merges is not None and "patient_key" in df.columns:  # before the date policy: survivor's shift
            df = patient.apply_merges(df, self.merges)
        if table == "encounter":  # durations from the true times, before the profile's date rule
            births = self.birth_dates if self.birth_dates is not None else \
                self.spark.createDataFrame([], "patient_key STRING, birth_date DATE")
            df = encounter.with_intervals(df, births, self._data_end_floor(df))
        dates = DATE_COLUMNS.get(table, ())
        if dates:
            df = apply_date_policy(df, dates, "patient_key", self.deid.key, self.deid.deid_profile,
                                   self.deid.max_shift_days)
            if "birth_date" in dates and "birth_year" in df.columns:
                # the year of the published birth date: a real year beside shifted dates would narrow the shift
                df = df.withColumn("birth_year", F.year("birth_date"))
        if self.deid.deid_profile == "safe_harbor":  # record keys not derived from identifiers (164.514(c))
            df = self._surrogates(table, df)
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
        self.rejected[table] = rejected
        with self.gx_lock:
            t_gx = time.monotonic()
            self.dq.append(validate(self.spark, valid, table, self.run.run_id, reference=self.valid,
                                    latest_time=self.latest_time))
            self.timings[f"{table}_gx"] = round(time.monotonic() - t_gx, 1)
        name = f"silver.{table}"
        self.catalog.create(name, ddl(table))
        if self.catalog.adopt_contract(name, ddl(table)):
            log.warning("%s: the column contract changed in this release; the table is rebuilt in full", name)
        # Silver keeps lineage through keyed hashes: a plain hash of a raw message would link a copy of it to its row
        published = valid.withColumn("bronze_hashes", keyed_lineage(F.col("bronze_hashes"), self.deid.key))
        changes = self.catalog.merge(published, name, keys, delete_missing=True, ignore_changes=VOLATILE,
                                     delete_scope=self._replaced_keys(name, keys))
        self.catalog.set_properties(name, self.properties)
        if any(changes.values()):
            self.run.wrote(name, self.catalog.version(name), n_valid)
        n_quarantined = self._quarantine(table, rejected) if n_rejected else 0
        self.report[table] = {"bronze_input": bronze_input, "silver": n_valid, "quarantined": n_rejected,
                              **{k: v for k, v in changes.items() if v}}
        if n_valid + n_rejected != bronze_input or distinct != n_valid or n_quarantined != n_rejected:
            raise ReconciliationError(
                f"silver.{table}: bronze input {bronze_input} ({DEFINITIONS[table]}) != silver {n_valid} "
                f"({distinct} distinct keys) + quarantined {n_rejected} ({n_quarantined} in quarantine)")
        log.info("silver.%s: bronze input %d = silver %d + quarantined %d", table, bronze_input, n_valid,
                 n_rejected)
        progress.done("silver", table, rows=n_valid, quarantined=n_rejected, seconds=self._lap(table),
                      **{k: v for k, v in changes.items() if v})

    def _lap(self, table: str) -> float:
        """Seconds since this thread's previous domain ended (or the step began); records the table's timing."""
        now = time.monotonic()
        self.timings[table] = round(now - self.started, 1)
        seconds = round(now - getattr(self.clock, "since", self.started), 1)
        self.clock.since = now
        return seconds

    def _untouched(self, table: str, bronze_input: int) -> bool:
        """Incremental: no recomputed record is of this domain and no row of the table was made from one. The
        domain would make no row and MERGE would change none (reconciliation holds every build to
        ``silver + quarantined = bronze input``), so nothing is staged, validated or merged."""
        name = f"silver.{table}"
        if self.increment is None or bronze_input or not self.catalog.exists(name):
            return False
        replaced = self._replaced_keys(name, natural_key(table))
        return replaced is None or replaced.limit(1).count() == 0

    def _replaced_keys(self, name: str, keys: tuple[str, ...] | list[str]) -> DataFrame | None:
        """Incremental: the keys of the table's rows made from a recomputed record (the others stay); else None."""
        if self.increment is None or not self.catalog.exists(name):
            return None
        rows = self.catalog.read(name).select(*keys, F.explode("bronze_hashes").alias("lineage_hash"))
        return rows.join(self.increment.lineage, "lineage_hash", "left_semi").select(*keys)

    def _data_end_floor(self, encounters: DataFrame) -> int | None:
        """The end of the data for ``encounter.with_intervals``: None in a full build (the encounters are all of
        them); in an incremental build the latest event over every patient, from ``_system.silver_data_end``.

        That table holds the latest event of the patients whose latest events are the latest of the data, exactly
        every patient whose latest event is at or after ``threshold`` (NULL: every patient), at most
        ``LATEST_EVENTS_KEPT`` of them. An incremental build replaces the rows of the patients it recomputes; the
        end is the first row's. When every listed patient was recomputed and their events moved before the
        threshold, the end over the others is not known: the build stops and builds in full.
        """
        ends = encounter.latest_events(encounters).collect()
        fresh = {r["patient_key"]: int(r["data_end"]) for r in ends}
        threshold: int | None = None
        floor = None
        if self.increment is not None:
            if not self.catalog.exists(DATA_END_TABLE):
                raise FullBuildNeeded("no end of the data recorded")
            kept = self.catalog.read(DATA_END_TABLE).collect()
            threshold = kept[0]["threshold"] if kept else None  # one threshold, on every row
            listed = {r["patient_key"]: int(r["data_end"]) for r in kept
                      if r["patient_key"] is not None and r["patient_key"] not in self.increment.subjects}
            fresh = {**listed, **{k: v for k, v in fresh.items() if threshold is None or v >= threshold}}
            if not fresh and threshold is not None:
                raise FullBuildNeeded("the patients with the latest events all moved earlier")
            floor = max(fresh.values()) if fresh else None
        latest = sorted(fresh.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(latest) > LATEST_EVENTS_KEPT:
            last_kept = latest[LATEST_EVENTS_KEPT - 1][1]
            threshold = last_kept if threshold is None else max(threshold, last_kept)
            latest = [kv for kv in latest if kv[1] >= threshold]
        rows = [(key, end, threshold) for key, end in latest] or [(None, None, threshold)]
        self.catalog.create(DATA_END_TABLE, DATA_END_DDL)
        if sorted(map(tuple, self.catalog.read(DATA_END_TABLE).collect()), key=str) != sorted(rows, key=str):
            self.catalog.overwrite(self.spark.createDataFrame(rows, DATA_END_DDL), DATA_END_TABLE)
        return floor

    def _surrogates(self, table: str, df: DataFrame) -> DataFrame:
        """Safe Harbor: every record key (and the derived UIDs and PatientID of a DICOM header) replaced by its
        random surrogate from ``_system.surrogate_keys``, issuing surrogates for pseudonyms seen the first time."""
        header = "header_json" in df.columns
        if header:
            df = df.withColumn("_uids", header_uids(F.col("header_json"))) \
                   .withColumn("_header_uids", F.col("_uids")).withColumn("_patient_pseudonym", F.col("patient_key"))
        cols = key_columns(df)
        if header:
            cols["_uids"] = UID_NAMESPACE
        if not cols:
            return df
        # computed once: the pseudonyms to issue for and the rows to re-key come from it
        df = self.stage(df, f"{table}_pseudonymous")
        used = self.stage(pseudonyms_used(df, cols), f"{table}_pseudonyms")
        with self.surrogate_lock:  # a pseudonym two domains use gets one surrogate
            self.catalog.create(SURROGATE_TABLE, SURROGATE_DDL)
            issued = self.catalog.read(SURROGATE_TABLE)
            new = self.catalog.append_new(to_issue(used, issued, self.run.run_id, self.now), SURROGATE_TABLE,
                                          SURROGATE_KEYS)
            version = self.catalog.version(SURROGATE_TABLE)
            if new:
                self.run.wrote(SURROGATE_TABLE, version, new)
        # every row reads its surrogate from one version of the table: the same value wherever it is used
        out = apply_surrogates(df, cols, self.catalog.read(SURROGATE_TABLE, version))
        if header:
            out = out.withColumn("header_json", rewrite_header(F.col("header_json"), F.col("_header_uids"),
                                                               F.col("_uids"), F.col("_patient_pseudonym"),
                                                               F.col("patient_key"))) \
                     .drop("_uids", "_header_uids", "_patient_pseudonym")
        return out

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


def fingerprint(settings: Settings) -> dict[str, Any]:
    owned = uptodate.layer_tables(settings, "silver") + uptodate.layer_tables(settings, "quarantine", "silver_") \
        + list(SYSTEM_TABLES)
    return {**uptodate.fingerprint(settings, load_key(settings),
                                   uptodate.data_versions(settings, [FHIR_TABLE, HL7V2_TABLE, DICOM_TABLE]),
                                   uptodate.data_versions(settings, owned), CODE_FOLDERS),
            # plausibility of event times and ages over 89 are judged against today
            "as_of_day": settings.as_of_day.isoformat()}


def build_silver(settings: Settings, run: Run, force: bool = False) -> dict[str, Any]:
    """Build every Silver domain from Bronze; returns per domain {"bronze_input", "silver", "quarantined"}.

    Nothing is recomputed when Bronze, the Silver tables, the code and rules, the configuration and the key are
    as the last completed build left them (see lakehouse.uptodate), unless ``force``.
    """
    t0 = time.monotonic()
    current = fingerprint(settings)
    run.metric("deid_key", key_version(settings))  # the active key version and its keyed id: no key material
    previous = None if force else uptodate.unchanged_since(settings, "silver", current)
    if previous is not None:
        run.metric(uptodate.metric_name("silver"), current)
        log.info("silver: up to date (Bronze, code, configuration and key unchanged since run %s)",
                 previous["run_id"])
        counts = {k.removeprefix("silver_"): v for k, v in previous.items()
                  if k.startswith("silver_") and isinstance(v, dict) and "bronze_input" in v}
        progress.done("silver", "all domains", status="up to date", since=f"run {previous['run_id'][:8]}")
        return {**counts, "up_to_date": True, "since_run": previous["run_id"]}
    spark = get_spark(settings)  # after the up-to-date check: a run with nothing new starts no engine
    catalog = Catalog(spark, settings)
    progress.start("silver", "latest Bronze records, indexes")
    ninety_before = _ninety_plus(catalog)
    reason = _full_build_reason(settings, catalog, current, force)
    try:
        b = _build(spark, catalog, settings, run, incremental=reason is None)
    except FullBuildNeeded as exc:
        log.info("silver: incremental build stopped (%s); building in full", exc)
        reason = str(exc)
        b = _build(spark, catalog, settings, run, incremental=False)
    if b.increment is None and reason is None:
        reason = f"the records to recompute are over {settings.silver_incremental_limit:.0%} of Bronze"
    mode = {"mode": "full" if b.increment is None else "incremental", "reason": reason, **b.plan}
    log.info("silver: %s build %s", mode["mode"], {k: v for k, v in mode.items() if k != "mode"})
    run.metric("silver_build", mode)
    _purge_suppressed_history(settings, catalog, run, ninety_before)
    summary = write_results(catalog, b.dq)
    progress.done("silver", "data quality results", rows=summary["rows"])
    run.metric(uptodate.metric_name("silver"), fingerprint(settings))
    run.metric("silver_seconds", round(time.monotonic() - t0, 2))
    run.metric("silver_timings", b.timings)
    run.metric("pseudonym_namespaces", sorted(NAMESPACES_USED))  # the PHI scan looks for each namespace key
    for table, counts in b.report.items():
        run.metric(f"silver_{table}", counts)
    run.metric("source_coverage", b.coverage)
    return {**b.report, "_dq": {"rows": summary["rows"], "data_docs": summary["data_docs"]},
            "_coverage": b.coverage, "_build": mode}


def _build(spark: SparkSession, catalog: Catalog, settings: Settings, run: Run, incremental: bool) -> _Builder:
    with staging(spark, settings, run.run_id) as scratch:
        b = _Builder(spark, catalog, settings, run, scratch)
        b.incremental = incremental
        _build_domains(b)
    return b


def _full_build_reason(settings: Settings, catalog: Catalog, current: dict[str, Any], force: bool) -> str | None:
    """Why this build must be full; None when it may be incremental."""
    if force:
        return "forced"
    previous = uptodate.last_fingerprint(settings, "silver")
    if previous is None:
        return "no completed build"
    now = json.loads(json.dumps(current))
    for part, why in (("key_id", "the pseudonym key changed"), ("code", "code or rules changed"),
                      ("config", "the configuration changed"),
                      ("as_of_day", "a new day: ages over 89 and plausible event times are judged against the day"),
                      ("owned", "Silver tables changed since the last build")):
        if previous.get(part) != now.get(part):
            return why
    if not catalog.exists(SUBJECTS_TABLE):
        return "no subject index"
    return None


def _deid_fingerprint(settings: Settings) -> dict[str, Any]:
    """What decides the published de-identified values besides Bronze: the rules, profile, shift range, key."""
    return {"rules": uptodate.code_digest(("silver/deid",)), "profile": settings.deid_profile,
            "max_shift_days": settings.max_shift_days, "key_id": uptodate.key_id(load_key(settings))}


def _ninety_plus(catalog: Catalog) -> dict[str, bool] | None:
    """``patient_key`` -> 90+ of every patient in silver.patient; None before the first build."""
    if not catalog.exists("silver.patient"):
        return None
    return {r[0]: bool(r[1]) for r in catalog.read("silver.patient").select("patient_key", "is_age_90_plus").collect()}


def _published_turned_90(before: dict[str, bool], after: dict[str, bool]) -> bool:
    """A patient whose earlier versions may hold values that 90+ now suppresses: one published under 90 is 90+ now,
    or a new 90+ key comes with a key gone (a merge may have moved a published patient under a new key). A new
    patient who is 90+ from the start is not: no earlier version holds them, so time travel is kept."""
    if any(after.get(k) and not was for k, was in before.items()):
        return True
    return bool(before.keys() - after.keys()) and any(v for k, v in after.items() if k not in before)


def _purge_suppressed_history(settings: Settings, catalog: Catalog, run: Run, ninety_before: dict[str, bool] | None
                              ) -> None:
    """When this build changed de-identified values already published (a patient turned 90+, the de-identification
    fingerprint changed), no earlier Delta version of a Silver table may keep the old values: purge their history
    (``Catalog.purge_history``) and leave Gold a note to do the same after its next build."""
    current = _deid_fingerprint(settings)
    run.metric("deid_fingerprint", current)
    previous = next((json.loads(r.get("metrics") or "{}").get("deid_fingerprint") for r in reversed(read_runs(settings))
                     if "deid_fingerprint" in json.loads(r.get("metrics") or "{}")), None)
    reasons = []
    if ninety_before is not None and previous is not None and previous != json.loads(json.dumps(current)):
        reasons.append("de-identification fingerprint changed")
    if ninety_before is not None and previous is None:
        reasons.append("no de-identification fingerprint recorded by the previous build")
    if ninety_before is not None and _published_turned_90(ninety_before, _ninety_plus(catalog) or {}):
        reasons.append("90+ status of a patient changed")
    if not reasons:
        return
    tables = uptodate.layer_tables(settings, "silver")
    purged = [catalog.purge_history(name) for name in tables]
    note = gold_purge_note(settings)
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(json.dumps({"reasons": reasons, "silver_run_id": run.run_id}))
    run.metric("silver_purged_history", {"reasons": reasons, "tables": purged})
    log.warning("silver: %s; history of %d Silver tables purged (time travel before this run is gone by design)",
                ", ".join(reasons), len(purged))


def _build_domains(b: _Builder) -> None:
    fhir_raw = b.read(FHIR_TABLE, FHIR_SCHEMA)
    hl7_raw = b.read(HL7V2_TABLE, HL7V2_SCHEMA)
    dicom_raw = b.read(DICOM_TABLE, DICOM_SCHEMA)
    fresh, gone = _record_subjects(b, fhir_raw, hl7_raw, dicom_raw)
    if b.incremental:
        b.increment = _plan_increment(b, fresh, gone)
    if b.increment is not None:
        records = b.increment.records
        fhir_raw, hl7_raw, dicom_raw = (
            raw.join(records.filter(F.col("source") == source).select("content_hash"), "content_hash", "left_semi")
            for raw, source in ((fhir_raw, "fhir"), (hl7_raw, "hl7v2"), (dicom_raw, "dicom")))
    b.lineage_files([fhir_raw, hl7_raw, dicom_raw])
    res = b.stage(latest_fhir(fhir_raw), "fhir_latest")
    segs = b.stage(segments(latest_messages(hl7_raw), b.deid), "hl7v2_segments")
    b.merges = b.stage(patient.patient_merges(segs, b.deid), "patient_merges")
    deid = b.deid

    # indexes that resolve FHIR references, and every patient's known identifiers (for scrubbing free text)
    pat_index = b.stage(patient.fhir_patient_index(res, deid), "patient_index")
    enc_index = b.stage(encounter.fhir_encounter_index(res, deid), "encounter_index")
    prac_index = b.stage(practitioner.fhir_practitioner_index(res, deid), "practitioner_index")
    # the patient's own identifiers and those of their relatives, contacts, guarantors and insured persons
    known = b.stage(patient.known_by_patient([patient.fhir_known_identifiers(res, pat_index),
                                              patient.hl7_known_identifiers(segs, deid),
                                              *related_identifiers(res, segs, pat_index, deid)]),
                    "known_identifiers")

    def simple(table: str, build: Callable[[], DataFrame]) -> Callable[[], None]:
        return lambda: b.finish(table, build(), _count_type(res, FHIR_TYPES[table]))

    def practitioners() -> None:
        b.finish("practitioner", practitioner.fhir_practitioners(res, prac_index),
                 prac_index.select("practitioner_key").distinct().count())

    # in the order they start; every domain with a patient_key needs patient's merges and rows (its reference)
    after_patient = ("patient",)
    steps = {
        "patient": Step(lambda: _build_patient(b, res, segs, pat_index)),
        "practitioner": Step(practitioners),
        "organization": Step(lambda: b.finish("organization", organization.fhir_organizations(res, deid),
                                              _count_type(res, "Organization"))),
        "observation": Step(lambda: _build_observation(b, res, segs, pat_index, enc_index, known), after_patient),
        "document": Step(lambda: _build_documents(b, res, segs, pat_index, enc_index, prac_index, known),
                         after_patient),
        "encounter": Step(lambda: _build_encounter(b, res, segs, pat_index, enc_index, prac_index), after_patient),
        "patient_history": Step(lambda: _build_patient_history(b, fhir_raw, segs, pat_index), after_patient),
        "condition": Step(lambda: _build_condition(b, res, segs, pat_index, enc_index), after_patient),
        "service_request": Step(lambda: _build_orders(b, res, segs, pat_index, enc_index, prac_index),
                                after_patient),
        "medication": Step(lambda: _build_medications(b, res, segs, pat_index, enc_index, prac_index, known),
                           after_patient),
        "immunization": Step(lambda: _build_immunization(b, res, segs, pat_index, enc_index), after_patient),
        "imaging": Step(lambda: _build_imaging(b, res, dicom_raw, pat_index, enc_index, known), after_patient),
        "procedure": Step(simple("procedure", lambda: procedure.fhir_procedures(res, pat_index, enc_index, deid)),
                          after_patient),
        "diagnostic_report": Step(simple("diagnostic_report", lambda: diagnostic_report.fhir_diagnostic_reports(
            res, pat_index, enc_index, known, deid)), after_patient),
        "care_plan": Step(simple("care_plan", lambda: care_plan.fhir_care_plans(res, pat_index, enc_index, deid)),
                          after_patient),
        # after care_plan: its rows are the reference of care_plan_key
        "care_plan_activity": Step(lambda: _build_care_plan_activity(b, res, pat_index), ("care_plan",)),
        "care_team": Step(simple("care_team", lambda: care_team.fhir_care_teams(res, pat_index, enc_index, deid)),
                          after_patient),
        "device": Step(simple("device", lambda: device.fhir_devices(res, pat_index, deid)), after_patient),
        "goal": Step(simple("goal", lambda: goal.fhir_goals(res, pat_index, known, deid)), after_patient),
        "allergy": Step(lambda: _build_allergy(b, res, segs, pat_index), after_patient),
    }
    run_steps({name: Step(b.timed(step.run), step.needs) for name, step in steps.items()}, b.settings.silver_workers)
    b.report = {t: b.report[t] for t in DOMAIN_ORDER if t in b.report}
    b.dq.sort(key=lambda result: DOMAIN_ORDER.index(result["table"].removeprefix("silver.")))
    _account_for_records(b, fhir_raw, res, hl7_raw, segs, dicom_raw, gone)
    _record_seen(b, fresh, gone)


def _record_subjects(b: _Builder, fhir_raw: DataFrame, hl7_raw: DataFrame,
                     dicom_raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The subjects of the Bronze records not yet in ``_system.silver_subjects`` (every record in a full build),
    and the rows of that table whose record is no longer in Bronze (erased)."""
    empty = b.spark.createDataFrame([], SUBJECTS_DDL)
    seen = b.catalog.read(SUBJECTS_TABLE) if b.incremental and b.catalog.exists(SUBJECTS_TABLE) else empty
    new = [raw.join(seen.filter(F.col("source") == source).select("content_hash"), "content_hash", "left_anti")
           for raw, source in ((fhir_raw, "fhir"), (hl7_raw, "hl7v2"), (dicom_raw, "dicom"))]
    rows = union_all([fhir_subjects(new[0], b.deid), hl7_subjects(new[1], b.deid), dicom_subjects(new[2], b.deid)])
    rows = rows.withColumn("lineage_hash", F.get(keyed_lineage(F.array("content_hash"), b.deid.key), 0))
    fresh = b.stage(rows.select(*[c for c, _ in ddl_columns(SUBJECTS_DDL)]), "subjects_new")
    present = union_all([raw.select(F.lit(source).alias("source"), "content_hash") for raw, source in
                         ((fhir_raw, "fhir"), (hl7_raw, "hl7v2"), (dicom_raw, "dicom"))])
    gone = b.stage(seen.join(present, ["source", "content_hash"], "left_anti"), "subjects_gone")
    return fresh, gone


def _plan_increment(b: _Builder, fresh: DataFrame, gone: DataFrame) -> Increment | None:
    """The records to recompute: every record about a subject connected to a new or removed record (or to another
    version of a new record's resource), and every record about no subject; None when that is most of Bronze."""
    t = time.monotonic()
    seen = b.catalog.read(SUBJECTS_TABLE)
    kept = seen.join(gone.select("source", "content_hash"), ["source", "content_hash"], "left_anti")
    every = kept.unionByName(fresh)
    versions = seen.join(fresh.filter(F.col("record_id").isNotNull()).select("source", "record_id"),
                         ["source", "record_id"], "left_semi")
    def subjects_of(frames: list[DataFrame]) -> set[str]:
        return {r[0] for r in union_all([f.select(F.explode("subjects").alias("s")) for f in frames])
                .distinct().collect()}

    seed_subjects = subjects_of([fresh, gone, versions])
    open_stay_subjects: set[str] = set()
    if b.catalog.exists("silver.encounter"):
        # an encounter whose 30 days after discharge the data do not reach yet: a later end of the data changes it
        open_stays = b.catalog.read("silver.encounter").filter(~F.col("has_30_day_follow_up")) \
            .select(F.explode("bronze_hashes").alias("lineage_hash"))
        open_stay_subjects = subjects_of([kept.join(open_stays, "lineage_hash", "left_semi")])
    n_open = len(open_stay_subjects - seed_subjects)
    seed_subjects |= open_stay_subjects
    links = [list(r[0]) for r in every.filter(F.size("subjects") >= 2).select("subjects").distinct().collect()]
    subjects = closure(links, seed_subjects)
    affected = b.spark.createDataFrame([(s,) for s in sorted(subjects)], "subject STRING")
    about = every.select("source", "content_hash", "lineage_hash", F.explode("subjects").alias("subject")) \
                 .join(affected, "subject", "left_semi").drop("subject")
    nobody = every.filter(F.size("subjects") == 0).select("source", "content_hash", "lineage_hash")
    records = b.stage(about.unionByName(nobody).distinct(), "increment_records")
    n_records, n_every = records.count(), every.count()
    counts = {"bronze_records": n_every, "new_records": fresh.count(), "gone_records": gone.count(),
              "recomputed_records": n_records, "subjects": len(subjects), "open_stay_subjects": n_open,
              "plan_seconds": round(time.monotonic() - t, 1)}
    b.plan = counts
    if n_records > b.settings.silver_incremental_limit * n_every:
        return None
    lineage = records.select("lineage_hash").unionByName(gone.select("lineage_hash"))
    return Increment(records=records, lineage=lineage, subjects=subjects, counts=counts)


def _record_seen(b: _Builder, fresh: DataFrame, gone: DataFrame) -> None:
    """``_system.silver_subjects`` after the build: the new records' subjects in, the removed records' out."""
    b.catalog.create(SUBJECTS_TABLE, SUBJECTS_DDL)
    n_new = fresh.count()
    if not b.incremental:
        b.catalog.overwrite(fresh, SUBJECTS_TABLE)
    elif gone.count():
        b.catalog.merge(fresh, SUBJECTS_TABLE, ("source", "content_hash"), delete_missing=True,
                        delete_scope=gone.select("source", "content_hash"))
    elif n_new:
        b.catalog.append(fresh, SUBJECTS_TABLE)
    b.run.wrote(SUBJECTS_TABLE, b.catalog.version(SUBJECTS_TABLE), n_new)


def _build_patient(b: _Builder, res: DataFrame, segs: DataFrame, index: DataFrame) -> None:
    rows = patient.fhir_patients(res, index).unionByName(patient.hl7_patients(segs, b.deid),
                                                          allowMissingColumns=True)
    # a merged-away patient's records fold into the survivor's row (their lineage joins)
    rows = rows.withColumn("invalid", F.coalesce(F.col("invalid"), F.array().cast("array<string>")))
    rows = b.stage(patient.apply_merges(rows, b.merges) if b.merges is not None else rows, "patient_rows")
    # a source record with an untypeable value, or with no usable identifier (no key: the suite's patient_key rule
    # quarantines it), stands on its own, not merged into a patient
    alone = (F.size("invalid") > 0) | F.col("patient_key").isNull()
    merged = b.stage(patient.harmonize(rows.filter(~alone)), "patient_merged")
    b.birth_dates = merged.select("patient_key", "birth_date")  # true dates: encounter.with_intervals
    untyped = patient.harmonize(rows.filter(alone), per_record=True).drop("content_hash")
    n_untyped = rows.filter(alone).count()
    n_patients = rows.filter(~alone).select("patient_key").distinct().count()
    as_of = F.lit(b.settings.as_of_day)
    b.finish("patient", patient.deidentify(merged, as_of).unionByName(patient.deidentify(untyped, as_of)),
             n_patients + n_untyped)


def _build_patient_history(b: _Builder, fhir_raw: DataFrame, segs: DataFrame, index: DataFrame) -> None:
    demographic = patient.demographic_segments(segs)
    fhir_versions = b.stage(patient.fhir_patients(patient.fhir_patient_versions(fhir_raw), index),
                            "patient_history_fhir")
    rows = fhir_versions.unionByName(patient.hl7_patients(demographic, b.deid), allowMissingColumns=True)
    rows = rows.withColumn("invalid", F.coalesce(F.col("invalid"), F.array().cast("array<string>")))
    rows = patient.apply_merges(rows, b.merges) if b.merges is not None else rows
    # a record with an untypeable value or no usable identifier is quarantined by silver.patient; it changes no
    # version here
    rows = rows.filter(F.col("patient_key").isNotNull())
    states = b.stage(patient.demographic_states(rows.filter(F.size("invalid") == 0), F.lit(b.settings.as_of_day)),
                     "patient_history_states")
    n_collapsed = states.filter(~F.col("opens_version")).count()
    # the source records, counted apart from the transform: a record it loses fails the reconciliation
    n_pid = segment_fields(demographic, "PID", {"mrn": patient.hl7_patient_identity()}) \
        .filter(F.col("mrn").isNotNull()).count()
    n_fhir = fhir_versions.filter(F.col("patient_key").isNotNull()).select("content_hash").distinct().count()
    n_untyped = rows.filter(F.size("invalid") > 0).count()
    b.run.metric("patient_history_unchanged_records", n_collapsed)
    b.finish("patient_history", patient.patient_history(states), n_pid + n_fhir - n_untyped - n_collapsed)


def _build_encounter(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame,
                     pracs: DataFrame) -> None:
    events = b.stage(encounter.resolve_adt(encounter.hl7_adt_events(segs, b.deid)), "encounter_adt_events")
    rows = encounter.fhir_encounters(res, pats, encs, pracs, b.deid).unionByName(encounter.hl7_encounters(events))
    merged = b.stage(encounter.harmonize(rows), "encounter_merged")
    n_visits = events.select("encounter_key").union(encs.select("encounter_key")).distinct().count()
    b.finish("encounter", merged, n_visits)
    # after encounter: its rows are the reference of encounter_key
    stays = b.stage(encounter.location_history(events), "encounter_location")
    b.finish("encounter_location", stays, stays.count())


def _build_observation(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame,
                       known: DataFrame) -> None:
    fhir_rows = b.stage(observation.fhir_observations(res, pats, encs, known, b.deid), "observation_fhir")
    rows = fhir_rows.unionByName(b.stage(observation.hl7_observations(segs, known, b.deid), "observation_hl7"),
                                 allowMissingColumns=True)
    standardized = b.stage(observation.standardize(rows), "observation_standardized")
    # the results of the OBX segments, counted apart from the transform: a result it loses or merges fails the run;
    # OBX of an earlier version (P before F before C) of a result are superseded, accounted for in the report
    identities = observation.hl7_result_identities(segs)
    n_obx = identities.count()
    n_results = identities.distinct().count()
    pairs = b.stage(observation.harmonized_pairs(standardized), "observation_pairs")
    n_pairs = pairs.count()
    b.run.metric("observation_harmonized_pairs", n_pairs)
    b.finish("observation", observation.merge_pairs(standardized, pairs), fhir_rows.count() + n_results - n_pairs)
    b.report["observation"]["superseded_results"] = n_obx - n_results
    b.run.metric("observation_superseded_results", n_obx - n_results)


def _build_condition(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame) -> None:
    rows = condition.fhir_conditions(res, pats, encs, b.deid).unionByName(condition.hl7_conditions(segs, b.deid))
    standardized = b.stage(condition.standardize(rows), "condition_standardized")
    n_records = standardized.select("condition_key").distinct().count()
    merged, pairs = condition.harmonize(standardized)
    b.run.metric("condition_harmonized_pairs", pairs)
    b.finish("condition", merged, n_records - pairs)


def _build_orders(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame,
                  pracs: DataFrame) -> None:
    rows = service_request.fhir_service_requests(res, pats, encs, pracs, b.deid).unionByName(
        service_request.hl7_orders(segs, b.deid))
    merged = b.stage(service_request.harmonize(rows), "service_request_merged")
    n_orders = service_request.hl7_order_identities(segs).distinct().count()
    b.finish("service_request", merged, _count_type(res, "ServiceRequest") + n_orders)


def _build_documents(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame,
                     pracs: DataFrame, known: DataFrame) -> None:
    rows = document.fhir_documents(res, pats, encs, pracs, known, b.deid).unionByName(
        document.hl7_documents(segs, known, b.deid))
    merged = b.stage(document.harmonize(rows), "document_merged")
    n_documents = document.hl7_document_identities(segs).distinct().count()
    b.finish("document", merged, _count_type(res, "DocumentReference") + n_documents)


def _build_care_plan_activity(b: _Builder, res: DataFrame, pats: DataFrame) -> None:
    # after care_plan: its rows are the reference of care_plan_key
    n_activities = int(care_plan.activity_detail_count(res).first()["n"])
    b.finish("care_plan_activity", care_plan.fhir_care_plan_activities(res, pats, b.deid), n_activities)


def _build_immunization(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame) -> None:
    fhir_rows = b.stage(immunization.fhir_immunizations(res, pats, encs, b.deid), "immunization_fhir")
    hl7_rows = b.stage(immunization.hl7_immunizations(segs, b.deid), "immunization_hl7")
    merged, folded = immunization.harmonize(fhir_rows, hl7_rows, b.deid)
    merged = b.stage(merged, "immunization_merged")
    n_folded = int(folded.agg(F.coalesce(F.sum("_n"), F.lit(0))).first()[0])
    b.run.metric("immunization_harmonized", n_folded)
    b.finish("immunization", merged,
             _count_type(res, "Immunization") + immunization.hl7_rxa(segs).count() - n_folded)


def _build_medications(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame, encs: DataFrame,
                       pracs: DataFrame, known: DataFrame) -> None:
    rxe = b.stage(medication_request.hl7_medication_requests(segs, known, b.deid), "medication_request_hl7")
    orders = medication_request.latest_orders(rxe, known, b.deid)
    n_rxe_folded = rxe.count() - rxe.select("_ident").distinct().count()
    b.finish("medication_request",
             medication_request.fhir_medication_requests(res, pats, encs, pracs, known, b.deid).unionByName(orders),
             _count_type(res, "MedicationRequest") + medication_request.hl7_rxe_count(segs).count() - n_rxe_folded)
    rxd = b.stage(medication_dispense.hl7_medication_dispenses(segs, b.deid), "medication_dispense_hl7")
    n_rxd_folded = rxd.count() - rxd.select("_ident").distinct().count()
    b.finish("medication_dispense",
             medication_dispense.fhir_medication_dispenses(res, pats, encs, b.deid).unionByName(
                 medication_dispense.latest_dispenses(rxd, b.deid)),
             _count_type(res, "MedicationDispense") + medication_dispense.hl7_rxd(segs).count() - n_rxd_folded)


def _build_allergy(b: _Builder, res: DataFrame, segs: DataFrame, pats: DataFrame) -> None:
    fhir_allergies = allergy.fhir_allergies(res, pats, b.deid)
    hl7_allergies = b.stage(allergy.hl7_allergies(segs, b.deid), "allergy_hl7")
    b.finish("allergy", fhir_allergies.unionByName(hl7_allergies),
             _count_type(res, "AllergyIntolerance") + hl7_allergies.count())


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


def _account_for_records(b: _Builder, fhir_raw: DataFrame, fhir_latest: DataFrame, hl7_raw: DataFrame,
                         hl7_segments: DataFrame, dicom_raw: DataFrame, gone: DataFrame) -> None:
    """Every Bronze record in Silver, quarantine, superseded or declared out of scope (see silver.coverage); a
    record of which nothing came is quarantined with the reason. Writes ``_system.source_coverage``."""
    progress.start("silver", "source coverage")
    # the messages Silver used are those of the staged segments (every message has its MSH): no second window
    hl7_latest = hl7_segments.select("content_hash").distinct()
    records = coverage.bronze_records(fhir_raw, fhir_latest, hl7_raw, hl7_latest, dicom_raw)
    landed = union_all([v.select(F.explode("bronze_hashes").alias("content_hash")) for v in b.valid.values()])
    rejected = union_all([r.select(F.explode("bronze_hashes").alias("content_hash")) for r in b.rejected.values()])
    classified = b.stage(coverage.classify(records, landed, rejected,
                                           coverage.scope_frame(b.spark, coverage.load_scope())), "coverage")
    no_fact = classified.filter(F.col("outcome") == "no_fact")
    n_no_fact = no_fact.count()
    if n_no_fact:
        rows = no_fact.select(
            F.concat_ws("|", "source", "record_type", "content_hash").alias("natural_key"),
            F.when(F.col("declared"), F.lit("coverage.fact_extracted")).otherwise(F.lit("coverage.type_declared"))
             .alias("failed_rule"), "reason", F.array("source").alias("sources"),
            F.array("content_hash").alias("bronze_hashes"), "content_hash",
            F.to_json(F.struct("source", "record_type")).alias("record"),
            F.lit(b.run.run_id).alias("silver_run_id"), b.now.alias("quarantined_at"))
        rows = rows.join(b.files, "content_hash", "left").select(*[c for c, _ in ddl_columns(QUARANTINE_DDL)])
        b.catalog.create(SOURCE_RECORD_QUARANTINE, QUARANTINE_DDL)
        appended = b.catalog.append_new(rows, SOURCE_RECORD_QUARANTINE, QUARANTINE_KEYS)
        if appended:
            b.run.wrote(SOURCE_RECORD_QUARANTINE, b.catalog.version(SOURCE_RECORD_QUARANTINE), appended)
    # every record's outcome: an incremental build replaces those of the records it recomputed
    outcomes = classified.select(*[c for c, _ in ddl_columns(OUTCOMES_DDL)])
    b.catalog.create(OUTCOMES_TABLE, OUTCOMES_DDL)
    if b.increment is None:
        b.catalog.overwrite(outcomes, OUTCOMES_TABLE)
    else:
        replaced = b.increment.records.select("source", "content_hash").unionByName(gone.select("source",
                                                                                                 "content_hash"))
        b.catalog.merge(outcomes, OUTCOMES_TABLE, ("source", "content_hash"), delete_missing=True,
                        delete_scope=replaced)
    b.run.wrote(OUTCOMES_TABLE, b.catalog.version(OUTCOMES_TABLE), 0)
    classified = b.catalog.read(OUTCOMES_TABLE)
    summary = coverage.summarize(classified).withColumn("silver_run_id", F.lit(b.run.run_id)) \
                                            .withColumn("evaluated_at", b.now)
    b.catalog.create(COVERAGE_TABLE, COVERAGE_DDL)
    b.catalog.overwrite(summary.select(*[c for c, _ in ddl_columns(COVERAGE_DDL)]), COVERAGE_TABLE)
    b.run.wrote(COVERAGE_TABLE, b.catalog.version(COVERAGE_TABLE), summary.count())
    totals = {r["outcome"]: r["n"] for r in classified.groupBy("outcome").agg(F.count(F.lit(1)).alias("n"))
              .collect()}
    # records of an unexpected shape are in quarantine: counted there, and on their own as no_fact
    b.coverage = {"received": sum(totals.values()), **{o: totals.get(o, 0) for o in coverage.OUTCOMES}}
    b.coverage["quarantined"] += b.coverage["no_fact"]
    log.info("silver: source coverage %s", totals)
    progress.done("silver", "source coverage", **{k: v for k, v in totals.items() if v})
