"""The pipeline steps the CLI and ``jobs/run.py`` call: landing -> bronze -> silver -> gold -> consumers.

Each step runs inside a run-log record (``run_context``) with the tables it read and wrote; a step called inside
a larger run (``run_all``) records into that run instead of opening its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import synthetic
from bronze.job import ingest as ingest_bronze
from gold.dbt_runner import build_gold
from gold.features import build_features
from gold.training import train_job
from lakehouse import progress
from lakehouse.config import Settings
from lakehouse.runlog import Run, run_context
from silver.job import build_silver


def _in_run(command: str, settings: Settings, run: Run | None, step: Callable[[Run], dict[str, Any]]) -> dict[str, Any]:
    if run is not None:
        return step(run)
    with run_context(command, settings) as own:
        return step(own)


def with_generator_timezone(settings: Settings) -> Settings:
    """``settings`` with the facility time zone the generator recorded, unless one is configured (the demo runs
    correctly with no configuration). Landing zones generated before ``facility.json`` have it in the manifest."""
    if "facility_timezone" in settings.model_fields_set:
        return settings
    recorded = [settings.landing_dir / name for name in (synthetic.FACILITY_PATH, synthetic.MANIFEST_PATH)]
    found = next((path for path in recorded if path.is_file()), None)
    if found is None:
        return settings
    zone = json.loads(found.read_text(encoding="utf-8")).get("facility_timezone")
    return settings.model_copy(update={"facility_timezone": zone}) if zone else settings


def generate(settings: Settings, patients: int, seed: int, out: Path | None, bad_rate: float,
             ndjson: bool = False) -> dict[str, Any]:
    with run_context("generate", settings) as run:
        progress.start("generate", f"{patients} patients")
        result = synthetic.generate(patients=patients, seed=seed, out=out or settings.landing_dir,
                                    bad_rate=bad_rate, ndjson=ndjson)
        run.metric("patients", patients)
        progress.done("generate", f"{patients} patients", **{"FHIR resources": result["fhir_resources"],
                                                              "HL7 messages": result["hl7_messages"],
                                                              "DICOM instances": result["dicom_instances"]})
        return result


def ingest(settings: Settings, paths: list[Path], run: Run | None = None) -> dict[str, Any]:
    return _in_run("ingest", settings, run, lambda r: ingest_bronze(settings, paths, r))


def silver(settings: Settings, run: Run | None = None, force: bool = False) -> dict[str, Any]:
    return _in_run("silver", settings, run, lambda r: build_silver(settings, r, force=force))


def gold(settings: Settings, run: Run | None = None, force: bool = False, full_refresh: bool = False
         ) -> dict[str, Any]:
    return _in_run("gold", settings, run, lambda r: build_gold(settings, r, force=force, full_refresh=full_refresh))


def features(settings: Settings, run: Run | None = None) -> dict[str, Any]:
    progress.start("features", "gold.features_readmission")
    result = _in_run("features", settings, run, lambda r: build_features(settings, r))
    progress.done("features", "gold.features_readmission", rows=result["rows"], quarantined=result["quarantined"])
    return result


def train(settings: Settings, run: Run | None = None, **kwargs: Any) -> dict[str, Any]:
    progress.start("train", "readmission_30d")
    result = _in_run("train", settings, run, lambda r: train_job(settings, r, **kwargs))
    progress.done("train", "readmission_30d", rows=result["rows"], version=str(result["model_version"]),
                  auroc=result["metrics"]["auroc"])
    return result


def run_all(settings: Settings, paths: list[Path]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with run_context("run", settings) as run:
        results["ingest"] = ingest(settings, paths, run)
        results["silver"] = silver(settings, run)
        results["gold"] = gold(settings, run)
    return results
