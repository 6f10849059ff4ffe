"""Helpers shared by the tests and by fixtures of every scope (``from helpers import ...``; tests/ is on sys.path).

``new_lakehouse`` is the one way a test builds "a lakehouse root with settings and an attached engine";
``clean_env`` is the one way a test builds the environment of a child process.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from bronze.job import ingest
from lakehouse import engine
from lakehouse.config import Settings, load_settings, set_settings
from lakehouse.runlog import run_context
from silver.deid import pseudonym_py
from silver.deid.keys import EngineKey, write_key_file
from silver.job import build_silver

TEST_KEY = "test-key-not-secret-0123456789abcdef"
# the assigning authority of every patient and visit of the synthetic generator (its HL7 CX.4, FHIR systems and
# DICOM issuer all map to it in silver/terminology/assigning_authorities.csv)
GENERATED_AUTHORITY = "GENHOSP"


def generated_patient_key(mrn: str, key: bytes) -> str:
    """The patient_key of a generated patient: the pseudonym of its identity (silver.identity)."""
    return pseudonym_py(f"{GENERATED_AUTHORITY}|{mrn}", key, "patient") or ""


@cache
def engine_key(key: bytes) -> EngineKey:
    """An :class:`EngineKey` for ``key``: the key in a private 0600 file the engine reads (one per key and run)."""
    folder = Path(tempfile.mkdtemp(prefix="lakehouse-test-key-"))  # mkdtemp: mode 0700
    return write_key_file(folder / "pseudonym.key", key)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``LAKEHOUSE_*`` and ``SPARK_REMOTE``, plus ``extra``.

    For a child process (CLI, job script, notebook kernel) that must see only what the test gives it and start its
    own engine instead of talking to the test session's one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_") and k != "SPARK_REMOTE"}
    env.update(extra)
    return env


def attach(settings: Settings) -> Settings:
    """Make ``settings`` current and attach the engine to its root (registers the tables under it).

    Starts the embedded engine if none runs yet: in a test, depend on the ``spark`` fixture first."""
    set_settings(settings)
    engine.get_spark(settings)
    return settings


def new_lakehouse(root: Path, *, attach_engine: bool = True, **overrides: object) -> Settings:
    """Settings for a lakehouse at ``root`` from no environment (``environ={}``) and the fixed test pseudonym key
    (``pseudonym_key=None`` for none, or another key), with ``overrides``; made current and attached to the engine
    unless ``attach_engine=False`` (then nothing global changes and no engine is needed)."""
    overrides.setdefault("pseudonym_key", TEST_KEY)
    settings = load_settings(config_file=None, environ={}, root=root, **overrides)
    return attach(settings) if attach_engine else settings


def ingest_and_build_silver(settings: Settings, files: list[Path]) -> dict[str, Any]:
    """Ingest ``files`` into Bronze, then build Silver, each in its own run; returns Silver's report."""
    with run_context("ingest", settings) as run:
        ingest(settings, files, run)
    with run_context("silver", settings) as run:
        return build_silver(settings, run)


def transaction_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A FHIR transaction Bundle that POSTs ``resources`` (each with its ``id``) under ``urn:uuid:`` full URLs."""
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
                       "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]}

