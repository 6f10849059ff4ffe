"""The table catalog and the one table writer.

Every table is an external Delta table at ``<root>/<layer>/<table>`` registered as ``<layer>.<table>``.
Sail keeps its catalog in memory, so tables are re-registered from the files on every session start.
Writes always go through table names (never path appends, which silently cast bad values on Sail).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from deltalake import DeltaTable
from pyspark.sql import Window
from pyspark.sql import functions as F

from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.logs import get_logger

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = get_logger(__name__)

# `_system` holds run logs, manifests and DQ results (Sail reserves the schema name `system`)
LAYERS = ("bronze", "silver", "gold", "quarantine", "_system")

# name -> location registered in the (process-wide) engine catalog
_registered: dict[str, str] = {}


@dataclass(frozen=True)
class TableRef:
    layer: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.table}"

    @property
    def quoted(self) -> str:
        return f"`{self.layer}`.`{self.table}`"

    @classmethod
    def parse(cls, name: str) -> TableRef:
        parts = name.split(".")
        if len(parts) != 2 or parts[0] not in LAYERS or not parts[1]:
            raise LakehouseError(f"table name {name!r} must be <layer>.<table> with layer one of {', '.join(LAYERS)}")
        return cls(parts[0], parts[1])


def is_delta_table(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


class Catalog:
    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings

    # -- locations ---------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        ref = TableRef.parse(name)
        return self.settings.table_path(ref.layer, ref.table)

    def exists(self, name: str) -> bool:
        return is_delta_table(self.path(name))

    def list_tables(self) -> list[str]:
        names = []
        for layer in LAYERS:
            layer_dir = self.settings.layer_path(layer)
            if not layer_dir.is_dir():
                continue
            names += [f"{layer}.{p.name}" for p in sorted(layer_dir.iterdir()) if is_delta_table(p)]
        return names

    # -- registration ------------------------------------------------------------------------
    def register(self, name: str) -> None:
        location = str(self.path(name))
        if _registered.get(name) == location:
            return
        ref = TableRef.parse(name)
        self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{ref.layer}`")
        if name in _registered:
            self.spark.sql(f"DROP TABLE IF EXISTS {ref.quoted}")  # external: the files stay
        # Spell out the columns read from the Delta log: without them Sail's DESCRIBE lists no columns,
        # which breaks tools that introspect tables (dbt incremental merges and snapshots, BI, docs).
        # Sail rejects a spelled-out schema with ARRAY columns over an existing table (list field naming), so those
        # tables fall back to an inferred schema (queries work; DESCRIBE stays empty).
        columns = schema_ddl(self.spark.read.format("delta").load(location).schema)
        try:
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {ref.quoted} ({columns}) USING delta LOCATION '{location}'")
        except Exception:  # noqa: BLE001 - the engine's error class differs between Sail and Spark
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {ref.quoted} USING delta LOCATION '{location}'")
        _registered[name] = location

    def register_all(self) -> list[str]:
        names = self.list_tables()
        for stale in [n for n in _registered if n not in names]:
            self.spark.sql(f"DROP TABLE IF EXISTS {TableRef.parse(stale).quoted}")
            del _registered[stale]
        for name in names:
            self.register(name)
        return names

    # -- creation ----------------------------------------------------------------------------
    def create(self, name: str, schema: StructType | str, partition_by: Sequence[str] = (),
               properties: dict[str, str] | None = None) -> None:
        """Create an empty table from a declared schema (no-op when it exists)."""
        if self.exists(name):
            self.register(name)
            return
        ref = TableRef.parse(name)
        ddl = schema if isinstance(schema, str) else schema_ddl(schema)
        self.path(name).parent.mkdir(parents=True, exist_ok=True)
        self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{ref.layer}`")
        parts = f" PARTITIONED BY ({', '.join(partition_by)})" if partition_by else ""
        props = ""
        if properties:
            props = " TBLPROPERTIES (" + ", ".join(f"'{k}' = '{v}'" for k, v in properties.items()) + ")"
        self.spark.sql(f"DROP TABLE IF EXISTS {ref.quoted}")
        self.spark.sql(
            f"CREATE TABLE {ref.quoted} ({ddl}) USING delta{parts} LOCATION '{self.path(name)}'{props}"
        )
        _registered[name] = str(self.path(name))

    def adopt_contract(self, name: str, schema_ddl: str) -> bool:
        """Give an existing derived table a changed column contract (a release added or removed columns).

        The table is emptied under the new schema in one new Delta version (earlier versions keep the old shape
        for time travel); the caller then writes the full content again. Only for tables rebuilt from their
        inputs on every run (Silver). Returns whether the contract had changed.
        """
        if not self.exists(name):
            return False
        self.register(name)
        if self.spark.table(name).columns == [n for n, _ in ddl_columns(schema_ddl)]:
            return False
        empty = self.spark.createDataFrame([], schema_ddl)
        empty.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(str(self.path(name)))
        _registered.pop(name, None)
        self.spark.sql(f"DROP TABLE IF EXISTS {TableRef.parse(name).quoted}")
        self.register(name)
        return True

    # -- writes ------------------------------------------------------------------------------
    def append(self, df: DataFrame, name: str, partition_by: Sequence[str] = ()) -> int:
        """Append through the table name (strict casts). Creates the table from df's schema if new."""
        if not self.exists(name):
            self.create(name, df.schema, partition_by)
        else:
            self.register(name)
        df.writeTo(name).append()
        return self.version(name)

    def append_new(self, df: DataFrame, name: str, keys: Sequence[str],
                   partition_by: Sequence[str] = ()) -> int:
        """Append the rows whose key is not yet in the table; returns how many were appended.

        Writes nothing (no new Delta version) when every key is already there.
        """
        if self.exists(name):
            self.register(name)
            existing = self.spark.table(name).select(*keys).distinct()
            df = df.join(existing, on=list(keys), how="left_anti")
        rows = df.count()
        distinct = df.select(*keys).distinct().count() if rows else 0
        if distinct != rows:
            df = _first_per_key(df, keys)
            rows = distinct
        if rows:
            self.append(df, name, partition_by)
        return rows

    def merge(self, df: DataFrame, name: str, keys: Sequence[str], partition_by: Sequence[str] = (),
              delete_missing: bool = False, ignore_changes: Sequence[str] = (),
              delete_scope: DataFrame | None = None) -> dict[str, int]:
        """Upsert by key: insert new keys, update rows whose values changed; unchanged rows are left alone.

        ``delete_missing`` deletes the table's rows whose key ``df`` lacks; with ``delete_scope`` (a frame of keys)
        only those among its keys (``df`` is then a part of the table: the rows of some patients).
        ``ignore_changes`` are columns (run ids, load times) written on insert/update but not compared.
        Returns counts; writes no new version when nothing changed.
        """
        if not self.exists(name):
            df = df.dropDuplicates(list(keys))
            rows = df.count()
            self.append(df, name, partition_by)
            return {"inserted": rows, "updated": 0, "deleted": 0}
        self.register(name)
        target = self.spark.table(name)
        cols = [c for c in target.columns]
        if set(df.columns) != set(cols):
            missing = set(cols) ^ set(df.columns)
            raise LakehouseError(f"merge into {name}: columns differ from the table: {sorted(missing)}")
        df = df.select(*cols)
        others = [c for c in cols if c not in keys and c not in ignore_changes]
        compared = list(keys) + others
        doomed = None
        if delete_missing and delete_scope is not None:
            doomed = delete_scope.select(*keys).distinct().join(df.select(*keys), list(keys), "left_anti") \
                                 .join(target.select(*keys), list(keys), "left_semi")
        compared_target = target.select(*compared)
        if delete_scope is not None:  # df is a part of the table: only the rows of its keys can be identical to it
            compared_target = compared_target.join(df.select(*keys).distinct(), list(keys), "left_semi")
        changes = self._change_counts(df.select(*compared), compared_target, keys, others,
                                      delete_missing and doomed is None)
        if doomed is not None:
            changes["deleted"] = doomed.count()
        if not any(changes.values()):
            return changes
        view = f"_src_{uuid.uuid4().hex[:12]}"
        if doomed is not None:  # the keys to delete travel in the source, marked
            df = df.withColumn("_delete", F.lit(False)).unionByName(
                doomed.withColumn("_delete", F.lit(True)), allowMissingColumns=True)
        df.createOrReplaceTempView(view)
        on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        differs = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in others) or "FALSE"
        sets = ", ".join(f"t.`{c}` = s.`{c}`" for c in cols)
        insert_cols = ", ".join(f"`{c}`" for c in cols)
        insert_vals = ", ".join(f"s.`{c}`" for c in cols)
        marked = doomed is not None
        sql = (
            f"MERGE INTO {name} t USING {view} s ON {on} "
            + ("WHEN MATCHED AND s._delete THEN DELETE " if marked else "")
            + f"WHEN MATCHED AND ({differs}) THEN UPDATE SET {sets} "
            f"WHEN NOT MATCHED{' AND NOT s._delete' if marked else ''} THEN INSERT ({insert_cols}) "
            f"VALUES ({insert_vals})"
            + (" WHEN NOT MATCHED BY SOURCE THEN DELETE" if delete_missing and not marked else "")
        )
        try:
            self.spark.sql(sql)
        finally:
            self.spark.catalog.dropTempView(view)
        return changes

    def _change_counts(self, df: DataFrame, target: DataFrame, keys: Sequence[str], others: Sequence[str],
                       delete_missing: bool) -> dict[str, int]:
        key_cols = list(keys)
        inserted = df.join(target.select(*key_cols), key_cols, "left_anti").count()
        # rows of df that are not identical to some target row (null-safe): new or changed
        not_identical = df.exceptAll(target).select(*key_cols).distinct().count() if others else 0
        updated = max(not_identical - inserted, 0)
        deleted = target.join(df.select(*key_cols), key_cols, "left_anti").count() if delete_missing else 0
        return {"inserted": inserted, "updated": updated, "deleted": deleted}

    def replace_where(self, df: DataFrame, name: str, predicate: str) -> int:
        """Replace the rows matching ``predicate`` with df; every df row must match (Sail does not check)."""
        outside = df.filter(f"NOT ({predicate}) OR ({predicate}) IS NULL").count()
        if outside:
            raise LakehouseError(f"replace_where on {name}: {outside} rows do not match {predicate!r}")
        if not self.exists(name):
            return self.append(df, name)
        self.register(name)
        view = f"_src_{uuid.uuid4().hex[:12]}"
        df.createOrReplaceTempView(view)
        cols = ", ".join(f"`{c}`" for c in self.spark.table(name).columns)
        try:
            self.spark.sql(f"INSERT INTO {name} REPLACE WHERE {predicate} SELECT {cols} FROM {view}")
        finally:
            self.spark.catalog.dropTempView(view)
        return self.version(name)

    def overwrite(self, df: DataFrame, name: str) -> int:
        """Replace the whole content (small derived tables, reports)."""
        return self.replace_where(df, name, "TRUE")

    # -- reads -------------------------------------------------------------------------------
    def read(self, name: str, version: int | None = None, timestamp: str | datetime | None = None) -> DataFrame:
        if not self.exists(name):
            raise LakehouseError(f"table {name} does not exist under {self.settings.root_path}; run the pipeline first")
        if version is None and timestamp is None:
            self.register(name)
            return self.spark.table(name)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        else:
            ts = timestamp.isoformat(sep=" ") if isinstance(timestamp, datetime) else str(timestamp)
            reader = reader.option("timestampAsOf", ts)
        return reader.load(str(self.path(name)))

    def version(self, name: str) -> int:
        return int(DeltaTable(str(self.path(name))).version())

    # -- table properties (which de-identification profile and key built a table) ---------------
    def properties(self, name: str) -> dict[str, str]:
        """The Delta table properties (``metaData.configuration``) of ``name``, read from its log."""
        return dict(self.delta(name).metadata().configuration)

    def set_properties(self, name: str, properties: Mapping[str, str]) -> bool:
        """Set table properties through the engine (``ALTER TABLE ... SET TBLPROPERTIES``; delta-rs refuses keys
        outside the delta.* namespace). Writes a new version only when a value differs; returns whether it did."""
        current = self.properties(name)
        changed = {k: str(v) for k, v in properties.items() if current.get(k) != str(v)}
        if not changed:
            return False
        self.register(name)
        pairs = ", ".join(f"'{_sql_text(k)}' = '{_sql_text(v)}'" for k, v in sorted(changed.items()))
        self.spark.sql(f"ALTER TABLE {TableRef.parse(name).quoted} SET TBLPROPERTIES ({pairs})").collect()
        return True

    # -- maintenance and history (delta-rs; Sail SQL has none of these) -----------------------
    def delta(self, name: str) -> DeltaTable:
        if not self.exists(name):
            raise LakehouseError(f"table {name} does not exist under {self.settings.root_path}")
        return DeltaTable(str(self.path(name)))

    def history(self, name: str, limit: int | None = None) -> list[dict[str, object]]:
        return list(self.delta(name).history(limit))

    def optimize(self, name: str) -> dict[str, object]:
        return dict(self.delta(name).optimize.compact())

    def vacuum(self, name: str, retention_hours: int = 168, dry_run: bool = False) -> list[str]:
        enforce = retention_hours >= 168
        return list(self.delta(name).vacuum(retention_hours=retention_hours, dry_run=dry_run,
                                            enforce_retention_duration=enforce))

    def restore(self, name: str, version: int) -> dict[str, object]:
        return dict(self.delta(name).restore(version))

    def purge_history(self, name: str) -> dict[str, object]:
        """Make the current version the only readable one: nothing older survives in data files or the log.

        For de-identified values that are suppressed after they were published (a patient turned 90, a rule, the
        profile or the key changed): time travel to an earlier version would still show them, and so would the
        min/max statistics of the old ``add`` actions in ``_delta_log``. delta-rs vacuums every file the current
        version does not reference (retention 0, ``full`` also takes files no commit names), writes a checkpoint
        of the current version, then the older commit files, checkpoints and checksums are deleted (delta-rs'
        ``cleanup_metadata`` would keep them for ``delta.logRetentionDuration``, 30 days). Time travel before the
        purge is gone by design. Returns what was removed.
        """
        removed = self.delta(name).vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False,
                                          full=True)
        table = self.delta(name)  # vacuum commits its own versions (start, end)
        version = int(table.version())
        table.create_checkpoint()
        log_dir = self.path(name) / "_delta_log"
        old_logs = []
        for path in sorted(log_dir.iterdir()):
            head = path.name.split(".", 1)[0]
            if path.is_file() and head.isdigit() and int(head) < version:
                path.unlink()
                old_logs.append(path.name)
        # the current commit is vacuum's own (no data actions): it stays, writers need it to continue the log
        log.info("%s: history purged at version %d (%d data files, %d log files removed)", name, version,
                 len(removed), len(old_logs))
        return {"table": name, "version": version, "data_files_removed": len(removed),
                "log_files_removed": len(old_logs)}


def _sql_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


PROPERTY_PREFIX = "clinical_lakehouse."


def deid_properties(settings: Settings, key: Mapping[str, str]) -> dict[str, str]:
    """The table properties that say how a Silver or Gold table was de-identified: the one place they are built.
    ``key`` is the active key's ``{"key_id": ..., ...}`` (silver.deid.keys.key_version)."""
    return {f"{PROPERTY_PREFIX}deid_profile": settings.deid_profile,
            f"{PROPERTY_PREFIX}deid_key_id": str(key.get("key_id", "")),
            # the key version every pseudonym of the table was computed under (a rotation rebuilds all of them)
            f"{PROPERTY_PREFIX}deid_key_version": str(key.get("version", ""))}


def gold_purge_note(settings: Settings) -> Path:
    """Left by a Silver build that purged history: the next Gold build purges the Gold tables' history too."""
    return settings.system_dir / "gold_purge_pending.json"


def _first_per_key(df: DataFrame, keys: Sequence[str]) -> DataFrame:
    """One row per key. Not dropDuplicates: on Sail that is a first() aggregate over every column, ~10x slower
    to write than a window over the keys (100k HL7 messages: 10.6 s vs 2.5 s; 0.8 s with no dedup at all)."""

    window = Window.partitionBy(*keys).orderBy(*keys)
    return df.withColumn("_key_rank", F.row_number().over(window)).filter("_key_rank = 1").drop("_key_rank")


def schema_ddl(schema: StructType) -> str:
    """A StructType as a column DDL list that Spark and Sail both parse."""
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" + ("" if f.nullable else " NOT NULL")
                     for f in schema.fields)


def ddl_columns(ddl: str) -> list[tuple[str, str]]:
    """(name, type) of every column of a DDL column list (``"a STRING NOT NULL, b ARRAY<STRING>"``), in order.

    Split at top-level commas only (types may contain commas: ``MAP<STRING, INT>``, ``DECIMAL(10, 2)``); names
    lose their backquotes, types their ``NOT NULL``.
    """
    out, depth, start = [], 0, 0
    for i, ch in enumerate(ddl + ","):
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif ch == "," and depth == 0:
            name, *typ = ddl[start:i].split(None, 1)
            out.append((name.strip("`"), "".join(typ).replace("NOT NULL", "").strip()))
            start = i + 1
    return out


def conform(df: DataFrame, schema: StructType | str, extra: Sequence[str] = ()) -> DataFrame:
    """``df`` in the shape of a table: the declared columns in declared order, each cast to its declared type.

    ``schema`` is a StructType or a DDL column list; ``extra`` columns of ``df`` are carried after them.
    """
    typed = ddl_columns(schema) if isinstance(schema, str) else [(f.name, f.dataType) for f in schema.fields]
    return df.select(*[F.col(name).cast(typ).alias(name) for name, typ in typed], *extra)


def table_rows(catalog: Catalog, names: Iterable[str]) -> dict[str, int]:
    return {name: catalog.read(name).count() for name in names if catalog.exists(name)}
