"""Skip a step whose inputs have not changed since it last completed.

A step (Silver, Gold) records a fingerprint in its run record: the Delta versions it read, the versions of the
tables it owns after writing, a digest of the code and rules it runs (the files of its packages, so an edited
terminology map or ViewDefinition counts), the configuration digest and an id of the pseudonym key. A later run
whose fingerprint is identical would write the same rows, so it records the fingerprint again and returns.
A table changed by hand (restore, delete, a write from elsewhere) changes the owned versions: the step runs.
Versions are compared as data versions: compaction and vacuum (``lakehouse maintain``) change files, not rows,
so they leave a step up to date.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from lakehouse.catalog import is_delta_table
from lakehouse.config import Settings
from lakehouse.runlog import config_digest, read_runs

PROJECT = Path(__file__).resolve().parent.parent
CODE_SUFFIXES = (".py", ".json", ".csv", ".sql", ".yml", ".yaml", ".md")
GENERATED = ("target", "logs", "dbt_packages")  # dbt writes these inside its project


@lru_cache(maxsize=8)
def code_digest(folders: tuple[str, ...]) -> str:
    """sha256 over the path and content of every code or rule file under the project folders named."""
    h = hashlib.sha256()
    for folder in folders:
        base = PROJECT / folder
        files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix in CODE_SUFFIXES
                       and "__pycache__" not in p.parts and p.relative_to(base).parts[0] not in GENERATED)
        for p in files:
            h.update(str(p.relative_to(PROJECT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def table_versions(settings: Settings, names: Iterable[str]) -> dict[str, int | None]:
    """``{"layer.table": version}``; None for a table that does not exist."""
    out: dict[str, int | None] = {}
    for name in sorted(names):
        layer, table = name.split(".", 1)
        path = settings.table_path(layer, table)
        out[name] = int(DeltaTable(str(path)).version()) if is_delta_table(path) else None
    return out


# commits that rewrite or delete files but not rows (``lakehouse maintain``): the table's data is unchanged
MAINTENANCE = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END"})


def data_version(table: DeltaTable) -> int:
    """The latest version whose commit changed rows: compaction and vacuum after it do not count."""
    latest = int(table.version())
    for limit in (1, None):  # the last commit is almost always a write; else read the history back
        for commit in table.history(limit):
            if commit.get("operation") not in MAINTENANCE:
                return int(commit.get("version", latest))
    return latest


def data_versions(settings: Settings, names: Iterable[str]) -> dict[str, int | None]:
    """``{"layer.table": data version}`` (:func:`data_version`); None for a table that does not exist. What a
    fingerprint compares: ``lakehouse maintain`` leaves every step up to date (and Silver incremental)."""
    out: dict[str, int | None] = {}
    for name in sorted(names):
        layer, table = name.split(".", 1)
        path = settings.table_path(layer, table)
        out[name] = data_version(DeltaTable(str(path))) if is_delta_table(path) else None
    return out


def layer_tables(settings: Settings, layer: str, prefix: str = "") -> list[str]:
    folder = settings.layer_path(layer)
    if not folder.is_dir():
        return []
    return [f"{layer}.{p.name}" for p in sorted(folder.iterdir()) if p.name.startswith(prefix) and is_delta_table(p)]


# settings that change how a step runs or where the lakehouse is, not what it makes: changing them rebuilds nothing
# (the same root given as a relative path, through LAKEHOUSE_ROOT, or moved to another folder is the same lakehouse)
HOW_NOT_WHAT = ("silver_workers", "root", "work_dir")


def fingerprint(settings: Settings, key: bytes | None, inputs: dict[str, int | None], owned: dict[str, int | None],
                code_folders: tuple[str, ...]) -> dict[str, Any]:
    return {"inputs": inputs, "owned": owned, "code": code_digest(code_folders), "config": config_digest(
                settings.model_copy(update={f: Settings.model_fields[f].default for f in HOW_NOT_WHAT})),
            "key_id": None if key is None else key_id(key)}


def key_id(key: bytes) -> str:
    """A keyed digest that names the key in run records (an unkeyed hash of a weak key could be brute-forced)."""
    return hmac.new(key, b"clinical-lakehouse/key-id", hashlib.sha256).hexdigest()[:16]


def metric_name(step: str) -> str:
    return f"{step}_fingerprint"


def _last_recording(settings: Settings, step: str) -> dict[str, Any] | None:
    """The metrics (with its ``run_id``) of the newest run that recorded ``step``'s fingerprint."""
    for record in reversed(read_runs(settings)):
        metrics = json.loads(record.get("metrics") or "{}")
        if metrics.get(metric_name(step)) is not None:
            return {**metrics, "run_id": str(record["run_id"])}
    return None


def unchanged_since(settings: Settings, step: str, current: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of the newest run that recorded ``step``'s fingerprint (with its ``run_id``), when that
    fingerprint is ``current``; None when anything changed or the step never completed."""
    last = _last_recording(settings, step)
    return last if last is not None and last[metric_name(step)] == json.loads(json.dumps(current)) else None


def last_fingerprint(settings: Settings, step: str) -> dict[str, Any] | None:
    """The fingerprint the newest run recording ``step``'s fingerprint recorded (as stored: JSON types)."""
    last = _last_recording(settings, step)
    return None if last is None else dict(last[metric_name(step)])
