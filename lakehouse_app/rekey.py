"""Key rotation (``lakehouse rekey``): a new key version, Silver and Gold rebuilt under it, and a crosswalk.

1. A fresh random key is appended to the key file as the next version (``v2``, ``v3``...) and marked active
   (silver/deid/keys.py; the file is replaced atomically and stays 0600). Older versions stay in the file.
2. Silver is rebuilt in full (``force``; its fingerprint names the key id, so a plain ``lakehouse run`` would
   rebuild it too). Every pseudonym and every per-patient date shift changes; the MERGE replaces every row.
   While it runs, the pseudonym functions also write (namespace, old pseudonym, new pseudonym) pairs into a
   folder under ``_system`` (computed where the key is, like the pseudonyms themselves).
3. The pairs become the restricted table ``_system.rekey_<old>_<new>`` (folder mode 0700): holders of
   downstream pseudonymized extracts (ML feature stores) re-key their copies with it, then it can be deleted.
   Under ``safe_harbor`` the published keys are random surrogates: ``_system.surrogate_keys`` is re-keyed to the
   new pseudonyms with the crosswalk and Silver rebuilt once more, so the published keys do not change.
4. Gold is rebuilt in full (``dbt build --full-refresh``) so no Gold table mixes pseudonyms of two versions;
   patient history is derived from Silver, so it is coherent under the new version.

``lakehouse rekey --resume`` adds no key: it rebuilds from the key version of the last completed Silver build to the
active one, which finishes an interrupted rotation, or rolls back after the ``active`` mark was moved to an older line.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake

from gold import dbt_runner
from lakehouse import uptodate
from lakehouse.catalog import is_delta_table
from lakehouse.config import Settings
from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.logs import get_logger
from lakehouse.runlog import Run, read_runs, run_context
from silver.deid.keys import KeyVersion, add_key_version, capturing_crosswalk, key_file, key_version, load_keyring
from silver.deid.surrogate import SURROGATE_TABLE
from silver.job import build_silver

log = get_logger(__name__)

CROSSWALK_SCHEMA = pa.schema([("namespace", pa.string()), ("old_pseudonym", pa.string()),
                              ("new_pseudonym", pa.string())])


def crosswalk_table(old: str, new: str) -> str:
    """Catalog name of the restricted crosswalk of one rotation (``_system.rekey_v1_v2``)."""
    return f"_system.rekey_{old}_{new}"


def _capture_folder(settings: Settings, old: str, new: str) -> Path:
    return settings.layer_path("_system") / "rekey_capture" / f"{old}_{new}"


def _private_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _versions(settings: Settings, resume: bool) -> tuple[Path, KeyVersion, KeyVersion]:
    path = key_file(settings)
    if path is None:
        raise ConfigError("the key is given as a value (LAKEHOUSE_PSEUDONYM_KEY): key versions live in a key file; "
                          "put the key into a 0600 file, set LAKEHOUSE_PSEUDONYM_KEY_FILE, then run `lakehouse rekey`")
    if not resume:
        built = last_built_key_id(settings)
        active, new = add_key_version(path)
        # the crosswalk starts from what Silver holds: the version of its last build, when that is in the file
        old = load_keyring(settings).by_id(built) if built else None
        old = old or active
        log.warning("rekey: key version %s (id %s) is active in %s; %s stays in the file", new.label, new.key_id,
                    path, old.label)
        return path, old, new
    ring = load_keyring(settings)
    built = last_built_key_id(settings)
    old = ring.by_id(built) if built else None
    if old is None or old.label == ring.active_label:
        raise LakehouseError("rekey --resume: the last completed Silver build used "
                             + ("the active key version: nothing to resume" if old else
                                "no key version of this key file: rebuild with `lakehouse silver --force`"))
    return path, old, ring.active


def last_built_key_id(settings: Settings) -> str | None:
    """The key id of the last Silver build that completed (its run record has status ok)."""
    for record in reversed(read_runs(settings)):
        fingerprint = json.loads(record.get("metrics") or "{}").get(uptodate.metric_name("silver"))
        if record.get("status") == "ok" and isinstance(fingerprint, dict) and fingerprint.get("key_id"):
            return str(fingerprint["key_id"])
    return None


def write_crosswalk(settings: Settings, folder: Path, old: str, new: str) -> dict[str, int]:
    """The captured pairs as the Delta table ``_system.rekey_<old>_<new>`` (distinct, folder 0700); returns the
    number of pairs per namespace."""
    files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.is_dir() else []
    table = ds.dataset(files, schema=CROSSWALK_SCHEMA).to_table() if files else CROSSWALK_SCHEMA.empty_table()
    table = table.group_by(["namespace", "old_pseudonym", "new_pseudonym"]).aggregate([]) \
        .select(CROSSWALK_SCHEMA.names).sort_by([("namespace", "ascending"), ("old_pseudonym", "ascending")])
    conflicting = table.group_by(["namespace", "old_pseudonym"]).aggregate([("new_pseudonym", "count")]) \
        .filter(ds.field("new_pseudonym_count") > 1).num_rows
    if conflicting:  # HMAC is a function: one old pseudonym has one new one, or the capture mixed two rotations
        raise LakehouseError(f"rekey: {conflicting} old pseudonyms map to more than one new one in {folder}")
    path = settings.table_path("_system", crosswalk_table(old, new).split(".", 1)[1])
    _private_folder(path.parent)
    write_deltalake(str(path), table.cast(CROSSWALK_SCHEMA), mode="overwrite", schema_mode="overwrite")
    os.chmod(path, 0o700)
    counts = table.group_by("namespace").aggregate([("old_pseudonym", "count")]).to_pylist()
    return {r["namespace"]: r["old_pseudonym_count"] for r in counts}


def migrate_surrogates(settings: Settings, old: str, new: str) -> bool:
    """Safe Harbor: give each new pseudonym the surrogate its old pseudonym had in ``_system.surrogate_keys``
    (replacing the one the rebuild issued) and drop the rows of old pseudonyms; False when there is no mapping."""
    path = settings.table_path("_system", SURROGATE_TABLE.split(".", 1)[1])
    if not is_delta_table(path):
        return False
    mapping = DeltaTable(str(path)).to_pyarrow_table()
    pairs = DeltaTable(str(settings.table_path("_system", crosswalk_table(old, new).split(".", 1)[1]))) \
        .to_pyarrow_table(columns=["old_pseudonym", "new_pseudonym"]).to_pylist()
    renamed = {p["old_pseudonym"]: p["new_pseudonym"] for p in pairs}
    rows = mapping.to_pylist()
    kept = {(r["namespace"], renamed[r["pseudonym"]]): r for r in rows if r["pseudonym"] in renamed}
    out = [r for r in rows if (r["namespace"], r["pseudonym"]) not in kept and r["pseudonym"] not in renamed]
    out += [{**r, "pseudonym": p} for (_, p), r in kept.items()]
    write_deltalake(str(path), pa.Table.from_pylist(out, schema=mapping.schema), mode="overwrite")
    return True


def _has_tables(settings: Settings, layer: str) -> bool:
    return bool(uptodate.layer_tables(settings, layer))


def rotate(settings: Settings, run: Run, resume: bool = False) -> dict[str, Any]:
    """Activate a new key version (or finish the last rotation) and rebuild Silver and Gold under it."""
    path, old, new = _versions(settings, resume)
    run.metric("deid_key", key_version(settings))
    report: dict[str, Any] = {"key_file": str(path), "old_version": old.label, "new_version": new.label,
                              "new_key_id": new.key_id, "crosswalk": crosswalk_table(old.label, new.label)}
    try:
        _rebuild(settings, run, old, new, report)
    except Exception as exc:
        raise LakehouseError(f"rekey did not finish ({exc}); key version {new.label} is active: run "
                             "`lakehouse rekey --resume` to rebuild Silver and Gold and write the crosswalk") from exc
    run.metric("rekey", {k: v for k, v in report.items() if k not in ("silver", "gold")})
    return report


def _rebuild(settings: Settings, run: Run, old: KeyVersion, new: KeyVersion, report: dict[str, Any]) -> None:
    folder = _capture_folder(settings, old.label, new.label)
    if _has_tables(settings, "silver"):
        shutil.rmtree(folder, ignore_errors=True)  # a resumed rotation captures again from a full rebuild
        _private_folder(folder)
        with capturing_crosswalk(old.key_id, folder):
            report["silver"] = build_silver(settings, run, force=True)
        report["crosswalk_pairs"] = write_crosswalk(settings, folder, old.label, new.label)
        shutil.rmtree(folder)
        run.wrote(report["crosswalk"], None, sum(report["crosswalk_pairs"].values()))
        if settings.deid_profile == "safe_harbor" and migrate_surrogates(settings, old.label, new.label):
            # the published keys are the random surrogates: with the mapping re-keyed, Silver publishes the same
            # surrogates as before the rotation (only DICOM UIDs, outside the crosswalk, get new ones)
            report["silver"] = build_silver(settings, run, force=True)
            report["surrogates"] = "kept: _system.surrogate_keys re-keyed to the new pseudonyms"
    else:
        report["silver"] = report["crosswalk_pairs"] = "no Silver tables yet: nothing to rebuild"
    if _has_tables(settings, "gold"):
        report["gold"] = dbt_runner.build_gold(settings, run, full_refresh=True)
        # a full refresh is a whole build: record its fingerprint so the next `lakehouse run` skips Gold
        run.metric(uptodate.metric_name("gold"), dbt_runner.fingerprint(settings, dbt_runner.require_silver(settings)))
    else:
        report["gold"] = "no Gold tables yet: nothing to rebuild"


def rekey(settings: Settings, resume: bool = False) -> dict[str, Any]:
    """``lakehouse rekey``: :func:`rotate` in its own run record."""
    with run_context("rekey", settings) as run:
        return rotate(settings, run, resume)
