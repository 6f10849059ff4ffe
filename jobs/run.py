"""The one job entry point for schedulers: ``lakehouse-job <step> --root ... --engine spark`` (the wheel's console
script), or ``spark-submit jobs/run.py <step> ...`` from a checkout.

Databricks python tasks, ``spark-submit`` and Airflow (through the ``lakehouse`` CLI) run the same pipeline steps
(``lakehouse_app.pipeline``) in the order of ``STEPS``. The result is printed as JSON; an error is one line on
stderr and the exit code of ``lakehouse.errors.ExitCode``. Extra arguments a scheduler appends are ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lakehouse.config import Settings, as_location, load_settings, restrict_new_files, set_settings
from lakehouse.errors import exit_process, run_entry_point
from lakehouse.logs import setup_logging
from lakehouse_app import pipeline

# the pipeline as a multi-task job, in order (databricks.yml and airflow_dag.py follow this list)
STEPS = ("ingest", "silver", "gold", "features", "train")

CALLS: dict[str, Callable[[Settings, argparse.Namespace], dict[str, Any]]] = {
    "ingest": lambda s, a: pipeline.ingest(s, [as_location(p) for p in a.paths]),
    "silver": lambda s, a: pipeline.silver(s, force=a.force),
    "gold": lambda s, a: pipeline.gold(s, force=a.force),
    "features": lambda s, a: pipeline.features(s),
    "train": lambda s, a: pipeline.train(s, as_of_version=a.as_of_version),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jobs/run.py", description=__doc__)
    p.add_argument("step", choices=STEPS)
    p.add_argument("paths", nargs="*", help="ingest: files or folders to copy into landing first")
    p.add_argument("--root", help="lakehouse root (local path, /Volumes/..., s3://...); default LAKEHOUSE_ROOT")
    p.add_argument("--engine", choices=("local", "connect", "spark"),
                   help="spark under spark-submit or on Databricks; default LAKEHOUSE_ENGINE or local")
    p.add_argument("--config", help="a lakehouse.yaml")
    p.add_argument("--force", action="store_true", help="silver, gold: rebuild even when nothing changed")
    p.add_argument("--as-of-version", type=int, help="train: use this version of gold.features_readmission")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Databricks passes extra notebook-style arguments to python tasks: ignore what is not ours
    args, _unknown = parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    setup_logging(None)
    restrict_new_files()

    def step() -> int:
        settings = load_settings(config_file=Path(args.config) if args.config else None, root=args.root,
                                 engine=args.engine)
        set_settings(settings)
        result = CALLS[args.step](settings, args)
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
        return 0

    return run_entry_point(step)


def run() -> None:
    """The ``lakehouse-job`` console script of the wheel (the Databricks python_wheel_task entry point)."""
    exit_process(main())


if __name__ == "__main__":
    run()
