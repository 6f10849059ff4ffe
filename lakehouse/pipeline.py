"""The pipeline steps the CLI and the job entry points call: landing -> bronze -> silver -> gold.

Each step is recorded in the run log with the tables it read and wrote.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakehouse.config import Settings
from lakehouse.errors import NotBuiltError
from lakehouse.runlog import Run, run_context


def _step(module: str, func: str, issue: str) -> Callable[..., Any]:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(module.split(".")[0]):
            raise NotBuiltError(f"{module} is not built yet ({issue})") from None
        raise
    return getattr(mod, func)


def generate(settings: Settings, patients: int, seed: int, out: Path | None, bad_rate: float,
             ndjson: bool = False) -> dict[str, Any]:
    fn = _step("lakehouse.synthetic", "generate", "synthetic data issue")
    with run_context("generate", settings) as run:
        result = fn(patients=patients, seed=seed, out=out or settings.landing_dir, bad_rate=bad_rate,
                    ndjson=ndjson)
        run.metric("patients", patients)
        return result


def ingest(settings: Settings, paths: list[Path], run: Run | None = None) -> dict[str, Any]:
    fn = _step("bronze.job", "ingest", "Bronze issue")
    if run is not None:
        return fn(settings, paths, run)
    with run_context("ingest", settings) as run:
        return fn(settings, paths, run)


def silver(settings: Settings, run: Run | None = None, force: bool = False) -> dict[str, Any]:
    fn = _step("silver.job", "build_silver", "Silver issue")
    if run is not None:
        return fn(settings, run, force=force)
    with run_context("silver", settings) as run:
        return fn(settings, run, force=force)


def gold(settings: Settings, run: Run | None = None, force: bool = False) -> dict[str, Any]:
    fn = _step("gold.dbt_runner", "build_gold", "Gold issue")
    if run is not None:
        return fn(settings, run, force=force)
    with run_context("gold", settings) as run:
        return fn(settings, run, force=force)


def features(settings: Settings, run: Run | None = None) -> dict[str, Any]:
    fn = _step("gold.features", "build_features", "features issue")
    if run is not None:
        return fn(settings, run)
    with run_context("features", settings) as run:
        return fn(settings, run)


def train(settings: Settings, run: Run | None = None, **kwargs: Any) -> dict[str, Any]:
    fn = _step("gold.training", "train_job", "MLflow issue")
    if run is not None:
        return fn(settings, run, **kwargs)
    with run_context("train", settings) as run:
        return fn(settings, run, **kwargs)


def run_all(settings: Settings, paths: list[Path]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with run_context("run", settings) as run:
        results["ingest"] = ingest(settings, paths, run)
        results["silver"] = silver(settings, run)
        results["gold"] = gold(settings, run)
    return results
