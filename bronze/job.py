"""Landing -> Bronze: copy inputs in, find new or changed files, split them engine-side, append what is new.

Each source's split is computed once: it is written to a scratch Delta table under ``_system/staging/`` and the
counts, the dedup append and the post-write check all read the written rows (``DataFrame.cache()`` does nothing
over Spark Connect on Sail, so without this every action would re-split the files).

Order for crash safety: Bronze and quarantine first, the manifest last. A crash in between re-processes the
files next time and the content-hash dedup absorbs the repeat; a file is never marked done before its rows exist.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bronze import dicom, fhir, hl7v2
from bronze.landing import (
    CopyResult,
    LandingFile,
    copy_in,
    import_batch_name,
    landing_file,
    pending_files,
    read_manifest,
)
from bronze.quarantine import QUARANTINE_KEYS, quarantine_text
from bronze.schemas import (
    DICOM_SCHEMA,
    DICOM_TABLE,
    FHIR_SCHEMA,
    FHIR_TABLE,
    HL7V2_SCHEMA,
    HL7V2_TABLE,
    MANIFEST_SCHEMA,
    MANIFEST_TABLE,
    QUARANTINE_RAW_LIMIT,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLES,
)
from lakehouse import progress
from lakehouse.catalog import Catalog, conform
from lakehouse.config import Settings
from lakehouse.engine import get_spark
from lakehouse.errors import ReconciliationError
from lakehouse.logs import get_logger
from lakehouse.runlog import Run
from lakehouse.staging import Staging, staging

log = get_logger(__name__)

SOURCES = ("hl7v2", "fhir", "dicom", "unknown")
BATCH_BYTES = 128 * 2**20  # landing bytes read by the engine at once, per format
BRONZE = {"hl7v2": (HL7V2_TABLE, HL7V2_SCHEMA), "fhir": (FHIR_TABLE, FHIR_SCHEMA), "dicom": (DICOM_TABLE, DICOM_SCHEMA)}


def _read_files(spark: SparkSession, files: list[LandingFile]) -> DataFrame:
    """binaryFile rows of the given landing files with their source_file and charset."""
    lookup = spark.createDataFrame([(f.path.resolve().as_posix().lstrip("/"), f.rel, f.charset) for f in files],
                                   "key string, source_file string, charset string")
    raw = spark.read.format("binaryFile").load([str(f.path.resolve()) for f in files])
    # Sail 0.7 returns one row per read split for a large file (each with the whole content): keep one per path
    raw = raw.dropDuplicates(["path"])
    raw = raw.withColumn("key", F.regexp_replace("path", "^(file:)?/*", ""))
    return raw.join(lookup, "key").select("source_file", "charset", "content")


def _counts(df: DataFrame, flag: str) -> dict[bool, int]:
    return {bool(r[flag]): int(r["n"]) for r in df.groupBy(flag).agg(F.count(F.lit(1)).alias("n")).collect()}


class _Writer:
    def __init__(self, catalog: Catalog, run: Run) -> None:
        self.catalog = catalog
        self.run = run

    def append(self, df: DataFrame, name: str, schema: Any, keys: tuple[str, ...]) -> int:
        self.catalog.create(name, schema)
        rows = self.catalog.append_new(conform(df, schema), name, keys)
        if rows:
            self.run.wrote(name, self.catalog.version(name), rows)
        return rows

    def missing(self, df: DataFrame, name: str, keys: tuple[str, ...]) -> int:
        """Rows of df whose key is not in the table (after the write this must be 0)."""
        if not self.catalog.exists(name):
            return int(df.count())
        return int(df.select(*keys).distinct().join(self.catalog.read(name).select(*keys), list(keys), "left_anti")
                   .count())


def _load_source(writer: _Writer, scratch: Staging | None, source: str, good: DataFrame | None,
                 bad: DataFrame, label: str | None = None) -> dict[str, int]:
    """Write one source's good rows (dedup by content hash) and quarantine rows; reconcile.

    ``good`` must already read staged rows; ``bad`` is staged here unless ``scratch`` is None (local rows)."""
    qname = QUARANTINE_TABLES[source]
    bad = conform(bad, QUARANTINE_SCHEMA)
    if scratch is not None:
        bad = scratch.stage(bad, f"{label or source}_quarantine")
    quarantined = int(bad.count())
    received_good = bronze_new = 0
    if good is not None:
        name, schema = BRONZE[source]
        received_good = int(good.count())
        bronze_new = writer.append(good, name, schema, ("content_hash",)) if received_good else 0
    if quarantined:
        writer.append(bad, qname, QUARANTINE_SCHEMA, QUARANTINE_KEYS)
    received = received_good + quarantined
    report = {"received": received, "bronze": bronze_new, "quarantined": quarantined,
              "duplicates": received_good - bronze_new}
    lost_good = writer.missing(good, BRONZE[source][0], ("content_hash",)) if good is not None and received_good else 0
    lost_bad = writer.missing(bad, qname, QUARANTINE_KEYS) if quarantined else 0
    if lost_good or lost_bad or received != report["bronze"] + report["duplicates"] + quarantined:
        raise ReconciliationError(
            f"{source}: received {received} != bronze {bronze_new} + duplicates {report['duplicates']} + "
            f"quarantined {quarantined} ({lost_good} good and {lost_bad} bad items are in neither table)")
    return report


def _unknown_rows(spark: SparkSession, files: list[LandingFile], run_id: str) -> DataFrame:
    now = datetime.now(UTC)
    rows = []
    for f in files:
        head = b""
        if f.opened:
            try:
                with os.fdopen(os.open(f.path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
                    head = fh.read(QUARANTINE_RAW_LIMIT)
            except OSError:  # gone or unreadable since the scan: the row keeps the reason, without bytes
                head = b""
        rows.append((f.reason or "unknown format", f.rel, 0, base64.b64encode(head).decode(), "base64", f.size,
                     f.size > QUARANTINE_RAW_LIMIT, f.sha256, run_id, now))
    return spark.createDataFrame(rows, QUARANTINE_SCHEMA)


def _manifest_rows(spark: SparkSession, files: list[LandingFile], run_id: str) -> DataFrame:
    now = datetime.now(UTC)
    rows = [(f.rel, f.size, datetime.fromtimestamp(f.mtime_ns / 1e9, UTC), f.mtime_ns, f.sha256, f.format, f.charset,
             run_id, now) for f in files]
    return spark.createDataFrame(rows, MANIFEST_SCHEMA)


def batches(files: list[LandingFile], max_bytes: int | None = None) -> list[list[LandingFile]]:
    """Files in landing order, grouped so that a group holds at most ``max_bytes`` (default ``BATCH_BYTES``;
    a larger file goes alone)."""
    max_bytes = BATCH_BYTES if max_bytes is None else max_bytes
    groups: list[list[LandingFile]] = []
    size = 0
    for f in files:
        if not groups or (size + f.size > max_bytes and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(f)
        size += f.size
    return groups


Group = tuple[DataFrame | None, DataFrame]  # (good rows, already staged; quarantine rows)


def _group_name(source: str, i: int, groups: int) -> str:
    """How progress names the i-th of a format's groups of files, e.g. ``hl7v2 2/3``."""
    return f"{source} {i + 1}/{groups}"


def _hl7v2_group(spark: SparkSession, scratch: Staging, group: list[LandingFile], label: str, run_id: str,
                 settings: Settings) -> Group:
    messages, other = hl7v2.split_messages(_read_files(spark, group), run_id, settings.facility_timezone,
                                          settings.facility_timezones)
    messages = scratch.stage(messages, label)
    bad_msgs = messages.filter(F.col("reason").isNotNull()).select(
        *quarantine_text(F.col("reason"), F.col("source_file"), F.col("position"), F.col("raw"), run_id))
    return messages.filter(F.col("reason").isNull()), conform(bad_msgs, QUARANTINE_SCHEMA).unionByName(other)


def _fhir_group(spark: SparkSession, scratch: Staging, group: list[LandingFile], label: str, run_id: str,
                settings: Settings) -> Group:
    items = scratch.stage(fhir.annotate(fhir.split_files(_read_files(spark, group)), run_id), label)
    return fhir.good_and_bad(items, run_id)


def _dicom_group(spark: SparkSession, scratch: Staging, group: list[LandingFile], label: str, run_id: str,
                 settings: Settings) -> Group:
    paths = spark.createDataFrame(
        [(str(f.path.resolve()), f.rel, f.size, f.sha256) for f in group],
        "abs_path string, source_file string, file_size bigint, content_hash string")
    return dicom.good_and_bad(scratch.stage(dicom.read_headers(paths, run_id), label), run_id)


GROUPS = {"hl7v2": _hl7v2_group, "fhir": _fhir_group, "dicom": _dicom_group}


def _engine_alive(spark: SparkSession) -> bool:
    try:
        return spark.sql("SELECT 1 AS one").collect()[0][0] == 1
    except Exception:  # noqa: BLE001 - any failure means the engine cannot go on
        return False


def _poisoned(f: LandingFile, source: str, exc: BaseException) -> LandingFile:
    """A file that failed ingestion in its group and again alone: a quarantine.landing row instead of a run that
    fails forever. The reason names the error class only (its text may quote the file's content)."""
    return dataclasses.replace(f, format="unknown", reason=f"{source} file failed ingestion twice (in its group "
                               f"and alone): {exc.__class__.__name__}; fix or remove it and land it again")


def _load_format(spark: SparkSession, writer: _Writer, scratch: Staging, source: str, files: list[LandingFile],
                 run_id: str, poisoned: list[LandingFile]) -> dict[str, int]:
    """Load and reconcile one group of files after the other; the source's report is the sum.

    A group that fails is retried one file at a time; a file that fails again alone is added to ``poisoned``
    (quarantined by the caller) while the rest of the group loads. A broken engine or a reconciliation failure
    stops the run as before."""
    settings = writer.catalog.settings
    total = {"received": 0, "bronze": 0, "quarantined": 0, "duplicates": 0}

    def load(group: list[LandingFile], label: str) -> dict[str, int]:
        return _load_source(writer, scratch, source, *GROUPS[source](spark, scratch, group, label, run_id, settings),
                            label)

    groups = batches(files)
    for i, group in enumerate(groups):
        name = _group_name(source, i, len(groups))
        progress.start("bronze", name, files=len(group))
        try:
            parts = [load(group, f"{source}_{i}")]
        except ReconciliationError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the file that fails; the engine must still be up
            if not _engine_alive(spark):
                raise
            log.warning("bronze %s failed (%s): retrying its %d files one at a time", name, exc.__class__.__name__,
                        len(group))
            parts = []
            for j, f in enumerate(group):
                try:
                    parts.append(load([f], f"{source}_{i}_{j}"))
                except ReconciliationError:
                    raise
                except Exception as again:  # noqa: BLE001
                    if not _engine_alive(spark):
                        raise
                    poisoned.append(_poisoned(f, source, again))
        counts = {key: sum(p[key] for p in parts) for key in total}
        progress.done("bronze", name, **counts)
        for key, value in counts.items():
            total[key] += value
    return total


def _load_sources(spark: SparkSession, writer: _Writer, scratch: Staging, by_format: dict[str, list[LandingFile]],
                  run_id: str, report: dict[str, Any]) -> None:
    # each format is read, split, deduplicated and appended in groups of files bounded by bytes, one group after
    # the other: the engine's memory follows the group size, not the size of the landing zone (a later group's
    # copy of an item already appended by an earlier group counts as a duplicate)
    poisoned: list[LandingFile] = []
    for source in GROUPS:
        if by_format[source]:
            report[source] = _load_format(spark, writer, scratch, source, by_format[source], run_id, poisoned)
    unknown = by_format["unknown"] + poisoned
    if unknown:
        progress.start("bronze", "unknown", files=len(unknown))
        report["unknown"] = _load_source(writer, None, "unknown", None, _unknown_rows(spark, unknown, run_id))
        progress.done("bronze", "unknown", **report["unknown"])
    report["files_poisoned"] = len(poisoned)


def ingest(settings: Settings, paths: list[Path], run: Run) -> dict[str, Any]:
    """Copy ``paths`` into the landing zone, ingest every new or changed landing file, and reconcile."""
    manifest = read_manifest(settings, settings.table_path(*MANIFEST_TABLE.split(".", 1)))
    pending, skipped = pending_files(settings, manifest)
    copied = CopyResult([], 0, [])
    if paths:
        known = manifest.hashes | {f.sha256 for f in pending}
        copied = copy_in(settings, paths, import_batch_name(run.run_id), known)
        pending += [landing_file(settings, p) for p in copied.copied]
    for f in pending:
        run.read_file(f.rel, f.sha256, f.size)
    by_format = {src: [f for f in pending if f.format == src] for src in SOURCES}
    by_format["unknown"] += copied.refused  # refused inputs never reach landing: quarantined, not in the manifest
    report: dict[str, Any] = {src: {"received": 0, "bronze": 0, "quarantined": 0, "duplicates": 0} for src in SOURCES}

    if pending or copied.refused:  # nothing new: no engine is started
        spark = get_spark(settings)
        catalog = Catalog(spark, settings)
        with staging(spark, settings, run.run_id) as scratch:
            _load_sources(spark, _Writer(catalog, run), scratch, by_format, run.run_id, report)
    if pending:
        catalog.create(MANIFEST_TABLE, MANIFEST_SCHEMA)
        rows = catalog.append_new(_manifest_rows(spark, pending, run.run_id), MANIFEST_TABLE, ("path", "sha256"))
        if rows:
            run.wrote(MANIFEST_TABLE, catalog.version(MANIFEST_TABLE), rows)
    poisoned = report.pop("files_poisoned", 0)
    report["files"] = {"new": len(pending), "skipped": skipped, "copied": len(copied.copied),
                       "already_landed": copied.skipped, "refused": len(copied.refused) + sum(
                           1 for f in pending if not f.opened), "poisoned": poisoned,
                       "by_format": {src: len(files) for src, files in by_format.items()}}
    report["run_id"] = run.run_id
    for src in SOURCES:
        run.metric(f"{src}_received", report[src]["received"])
    return report
