"""The run log: one hash-chained record per command run in ``<root>/_system/runs`` (Delta, via delta-rs).

Written with delta-rs rather than the engine so a run that failed to start the engine is still recorded.
Each record carries ``hash = "hmac-sha256:" + HMAC(audit key, prev_hash + canonical JSON of the record)``, and the
head of the chain is anchored outside the root after every record (``lakehouse.audit``). Records written before
the chain was keyed (plain ``sha256``) still verify as the chain's first records.

The user is the operating-system account of the process (not ``$USER``, which anyone can set). Error text is
kept out of the immutable chain (it may quote data): the record holds the error class and a reference to
``_system/errors/<run_id>.txt`` (owner-only, erasable).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import pwd
import subprocess
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from lakehouse import lineage
from lakehouse.audit import MAC_PREFIX, append_anchor, audit_key, read_anchors
from lakehouse.config import Settings
from lakehouse.locks import writer_lock
from lakehouse.logs import get_logger
from lakehouse.metrics import record_run

log = get_logger(__name__)

RUNS_TABLE = "runs"
GENESIS = "0" * 64

RUN_SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("run_id", pa.string()),
    ("command", pa.string()),
    ("user", pa.string()),
    ("code_version", pa.string()),
    ("config_digest", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("ended_at", pa.timestamp("us", tz="UTC")),
    ("status", pa.string()),
    ("inputs", pa.string()),          # JSON list of {kind, name, version|sha256, rows}
    ("outputs", pa.string()),         # JSON list of {table, version, rows}
    ("metrics", pa.string()),         # JSON object
    ("error", pa.string()),
    ("prev_hash", pa.string()),
    ("hash", pa.string()),
])

HASHED_FIELDS = [f.name for f in RUN_SCHEMA if f.name != "hash"]


@lru_cache(maxsize=1)
def code_version() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return "v" + version("clinical-lakehouse")
        except PackageNotFoundError:
            return "unknown"


def config_digest(settings: Settings) -> str:
    return hashlib.sha256(json.dumps(settings.redacted(), sort_keys=True).encode()).hexdigest()


def canonical(record: dict[str, Any]) -> str:
    def norm(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return value

    return json.dumps({k: norm(record[k]) for k in HASHED_FIELDS}, sort_keys=True, separators=(",", ":"))


def chain_hash(prev_hash: str, record: dict[str, Any], key: bytes | None = None) -> str:
    """The record's link: keyed (HMAC under the audit key) when ``key`` is given, else the legacy sha256."""
    text = prev_hash + canonical(record)
    if key is None:
        return hashlib.sha256(text.encode()).hexdigest()
    return MAC_PREFIX + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


@dataclass
class Run:
    command: str
    settings: Settings
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def read(self, table: str, version: int | None = None, rows: int | None = None) -> None:
        self.inputs.append({"kind": "table", "name": table, "version": version, "rows": rows})

    def read_file(self, path: str, sha256: str, size: int | None = None) -> None:
        """A landing file read: its path as a digest (landing names can hold identifiers, e.g. DICOM UIDs or a
        patient's name, and the chain cannot be rewritten to erase them), its content hash and size."""
        self.inputs.append({"kind": "file", "name": path_digest(path), "sha256": sha256, "size": size})

    def wrote(self, table: str, version: int | None, rows: int) -> None:
        self.outputs.append({"table": table, "version": version, "rows": rows})

    def metric(self, name: str, value: Any) -> None:
        self.metrics[name] = value


def path_digest(path: str) -> str:
    return "path-sha256:" + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


def runs_path(settings: Settings) -> Path:
    return settings.table_path("_system", RUNS_TABLE)


@contextmanager
def _chain_lock(settings: Settings) -> Iterator[None]:
    settings.system_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.system_dir / "runs.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _last(path: Path) -> tuple[int, str]:
    if not (path / "_delta_log").is_dir():
        return 0, GENESIS
    table = DeltaTable(str(path)).to_pyarrow_table(columns=["seq", "hash"])
    if table.num_rows == 0:
        return 0, GENESIS
    rows = table.sort_by([("seq", "descending")]).slice(0, 1).to_pylist()[0]
    return int(rows["seq"]), str(rows["hash"])


def write_record(run: Run, status: str, error: str | None = None) -> dict[str, Any]:
    path = runs_path(run.settings)
    key = audit_key(run.settings)
    with _chain_lock(run.settings):
        seq, prev = _last(path)
        record: dict[str, Any] = {
            "seq": seq + 1,
            "run_id": run.run_id,
            "command": run.command,
            "user": _user(),
            "code_version": code_version(),
            "config_digest": config_digest(run.settings),
            "started_at": run.started_at,
            "ended_at": datetime.now(UTC),
            "status": status,
            "inputs": json.dumps(run.inputs, sort_keys=True, default=str),
            "outputs": json.dumps(run.outputs, sort_keys=True, default=str),
            "metrics": json.dumps(run.metrics, sort_keys=True, default=str),
            "error": error,
            "prev_hash": prev,
        }
        record["hash"] = chain_hash(prev, record, key)
        write_deltalake(str(path), pa.Table.from_pylist([record], schema=RUN_SCHEMA), mode="append")
        append_anchor(run.settings, key, record["seq"], record["hash"])
    return record


def _user() -> str:
    """The OS account running this process (its effective uid), not the ``$USER`` variable."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _error_reference(run: Run, exc: BaseException) -> str:
    """Keep the error text (it may quote data) in an owner-only file; the chain gets its class and the file."""
    folder = run.settings.system_dir / "errors"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{run.run_id}.txt"
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{exc.__class__.__name__}: {exc}\n")
    return f"{exc.__class__.__name__} (message in _system/errors/{name})"


def error_text(settings: Settings, record: dict[str, Any]) -> str | None:
    """The full error of a failed run (from its owner-only file), or what the record holds when the file is gone."""
    path = settings.system_dir / "errors" / f"{record['run_id']}.txt"
    try:
        return path.read_text().strip()
    except OSError:
        return record.get("error")


def record_read(settings: Settings, command: str, tables: list[str], **details: Any) -> None:
    """Record a read of a restricted layer (``show``/``view run`` on Bronze, quarantine, Silver or _system,
    ``serve`` sessions) as its own run record; it takes no writer lock, so a read never waits for a pipeline."""
    run = Run(command=command, settings=settings)
    for table in tables:
        run.read(table)
    for name, value in details.items():
        run.metric(name, value)
    write_record(run, "ok")


@contextmanager
def run_context(command: str, settings: Settings) -> Iterator[Run]:
    """Record one run: status ok, or failed with the error, always written."""

    run = Run(command=command, settings=settings)
    t0 = time.monotonic()
    with writer_lock(settings):
        lineage.emit(run, "START")
        try:
            yield run
        except BaseException as exc:
            run.metric("seconds", round(time.monotonic() - t0, 3))
            if not isinstance(exc, KeyboardInterrupt | SystemExit):
                log.debug("run %s failed:\n%s", run.run_id, traceback.format_exc())
            try:
                write_record(run, "failed", _error_reference(run, exc))
            except Exception:  # noqa: BLE001 - never mask the original error
                log.exception("could not write the run record")
            lineage.emit(run, "FAIL")
            _record_metrics(run, "failed")
            raise
        run.metric("seconds", round(time.monotonic() - t0, 3))
        write_record(run, "ok")
        lineage.emit(run, "COMPLETE")
        _record_metrics(run, "ok")


def _record_metrics(run: Run, status: str) -> None:
    """Prometheus textfile for batch runs; metrics must never break the pipeline."""
    try:
        record_run(run, status)
    except Exception as exc:  # noqa: BLE001
        log.warning("metrics not written: %s", exc)


def read_runs(settings: Settings) -> list[dict[str, Any]]:
    path = runs_path(settings)
    if not (path / "_delta_log").is_dir():
        return []
    return DeltaTable(str(path)).to_pyarrow_table().sort_by("seq").to_pylist()


def verify_chain(records: list[dict[str, Any]], key: bytes) -> tuple[bool, str]:
    """Recompute the chain under the audit key; returns (ok, message naming the first broken link). Unkeyed
    (legacy sha256) records are accepted only before the first keyed one."""
    prev = GENESIS
    keyed = False
    for i, rec in enumerate(sorted(records, key=lambda r: r["seq"])):
        if rec["seq"] != i + 1:
            return False, f"record seq {rec['seq']} out of order (expected {i + 1}): a record was removed"
        if rec["prev_hash"] != prev:
            return False, f"record seq {rec['seq']} (run {rec['run_id']}) does not link to the previous record"
        is_keyed = str(rec["hash"]).startswith(MAC_PREFIX)
        if keyed and not is_keyed:
            return False, f"record seq {rec['seq']} (run {rec['run_id']}) is not keyed after keyed records: rewritten"
        keyed = keyed or is_keyed
        if not hmac.compare_digest(chain_hash(prev, rec, key if is_keyed else None), rec["hash"]):
            return False, f"record seq {rec['seq']} (run {rec['run_id']}) was altered: its hash does not match"
        prev = rec["hash"]
    return True, f"{len(records)} run records verified"


def verify_audit(settings: Settings) -> tuple[bool, str]:
    """The chain under the audit key, and that it still holds every anchored head and ends at the last one:
    deleting the last records, restoring an older run log or rewriting it all fail here."""
    key = audit_key(settings)
    records = read_runs(settings)
    ok, message = verify_chain(records, key)
    if not ok:
        return ok, message
    anchors, problem = read_anchors(settings, key)
    if problem:
        return False, problem
    if not anchors:
        return True, f"{message}; no anchor yet for this root (written from the next run on)"
    by_seq = {int(r["seq"]): r["hash"] for r in records}
    for anchor in anchors:
        if by_seq.get(int(anchor["seq"])) != anchor["hash"]:
            return False, (f"anchored record seq {anchor['seq']} (anchored at {anchor['at']}) is missing or "
                           "different: the run log was truncated, rolled back or rewritten")
    last = max(int(a["seq"]) for a in anchors)
    if records and int(records[-1]["seq"]) != last:
        return False, (f"the run log ends at seq {records[-1]['seq']} but the anchor's last head is seq {last}: "
                       "records were added without the anchor (a crash between the two writes, or a forgery)")
    return True, f"{message}; head seq {last} matches its anchor ({len(anchors)} anchors)"


def lineage_of(records: list[dict[str, Any]], table: str, version: int | None = None) -> dict[str, Any] | None:
    """The run that produced ``table`` at ``version`` (default: its latest), with that run's inputs.

    A run records the last version it wrote of each table, so the producer of version N is the first
    successful run (in chain order) that recorded a version >= N.
    """
    writers = []
    for rec in sorted(records, key=lambda r: r["seq"]):
        for out in json.loads(rec["outputs"] or "[]"):
            if out.get("table") == table and out.get("version") is not None and rec["status"] == "ok":
                writers.append((int(out["version"]), rec, out))
    if not writers:
        return None
    if version is None:
        version = max(v for v, _, _ in writers)
    for v, rec, out in writers:
        if v >= version:
            return {"table": table, "version": version, "run_id": rec["run_id"], "seq": rec["seq"],
                    "command": rec["command"], "started_at": rec["started_at"], "code_version": rec["code_version"],
                    "rows": out.get("rows"), "inputs": json.loads(rec["inputs"] or "[]"), "hash": rec["hash"]}
    return None
