"""Faults lose and duplicate nothing: kill -9 mid-run, concurrent runs, an unusable root, secrets kept out of files.

Every run here is a real `lakehouse` process with its own Sail server, as an operator would run it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from helpers import clean_env

from synthetic import generate

KEY = "fault-test-key-7f3a9c1e5b"
TABLES = ("bronze/hl7v2_messages", "bronze/fhir_resources", "bronze/dicom_instances", "quarantine/hl7v2",
          "quarantine/fhir", "quarantine/dicom", "quarantine/landing")


def _env() -> dict[str, str]:
    return clean_env(LAKEHOUSE_PSEUDONYM_KEY=KEY)


def _cli(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lakehouse_app.cli", "--root", str(root), *args]


def _run(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(root, *args), capture_output=True, text=True, env=_env(), timeout=timeout)


def _snapshot(root: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every Bronze and quarantine row by identity, sorted, so a lost or duplicated row shows.

    Bronze rows are identified by content (a resource shared by several files is stored once, with the lineage
    of whichever file was ingested first, which legitimately depends on batch order); quarantine rows by
    file and position."""
    out = {}
    for rel in TABLES:
        path = root / rel
        if not (path / "_delta_log").is_dir():
            out[rel] = []
            continue
        dt = DeltaTable(str(path))
        names = [f.name for f in dt.schema().fields]
        identity = ("content_hash",) if rel.startswith("bronze") else ("source_file", "position", "reason")
        table = dt.to_pyarrow_table(columns=[c for c in identity if c in names])
        out[rel] = sorted(tuple(r.values()) for r in table.to_pylist())
    return out


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fault-landing") / "landing"
    generate(patients=8, seed=7, out=out, bad_rate=0.1, ndjson=False)
    return out


@pytest.fixture(scope="module")
def clean(landing: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[object, ...]]]:
    root = tmp_path_factory.mktemp("fault-clean")
    shutil.copytree(landing, root / "landing")
    done = _run(root, "ingest")
    assert done.returncode == 0, done.stderr
    snap = _snapshot(root)
    assert sum(len(v) for v in snap.values()) > 50
    return snap


def _kill_group(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_kill_9_during_ingestion_then_rerun_equals_a_clean_run(landing: Path, clean, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "lh"
    shutil.copytree(landing, root / "landing")
    rng = random.Random()
    delays = sorted(round(rng.uniform(1.0, 7.0), 2) for _ in range(3))
    for delay in delays:
        proc = subprocess.Popen(_cli(root, "ingest"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=_env(), start_new_session=True, text=True)
        time.sleep(delay)
        if proc.poll() is None:
            _kill_group(proc)
    done = _run(root, "ingest")
    assert done.returncode == 0, f"re-run after kill -9 at {delays}s failed: {done.stderr}"
    assert _snapshot(root) == clean, f"kill -9 at {delays}s changed the result"
    again = _run(root, "ingest", "--json")
    assert again.returncode == 0
    assert _snapshot(root) == clean


def test_two_ingestions_at_once_equal_a_clean_run(landing: Path, clean, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "lh"
    shutil.copytree(landing, root / "landing")
    procs = [subprocess.Popen(_cli(root, "ingest"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0, 0], results
    assert _snapshot(root) == clean


def test_unusable_root_is_one_clear_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = _run(not_a_dir / "lakehouse", "ingest")
    assert result.returncode == 8
    assert result.stderr.strip().count("\n") == 0 and "cannot use" in result.stderr


def test_the_key_is_in_no_file_of_the_lakehouse(tmp_path_factory: pytest.TempPathFactory, clean) -> None:  # type: ignore[no-untyped-def]
    root = next(tmp_path_factory.getbasetemp().glob("fault-clean*/"))
    _run(root, "silver")  # may not be built yet; whatever it writes is scanned too
    needle = KEY.encode()
    leaks = [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert leaks == []
