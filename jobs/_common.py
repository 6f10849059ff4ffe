"""Shared entry-point plumbing for the job scripts (spark-submit, Databricks python tasks, Airflow via the CLI).

Each ``jobs/<step>.py`` parses ``--root/--engine/--config``, loads the one Settings object and calls the step in
``lakehouse.pipeline``; the result is printed as JSON and errors become one line on stderr and the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# the pipeline as a multi-task job, in order (databricks.yml and airflow_dag.py follow this list)
STEPS = ("ingest", "silver", "gold", "features", "train")


def parser(step: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"jobs/{step}.py", description=description)
    p.add_argument("--root", help="lakehouse root (local path, /Volumes/..., s3://...); default LAKEHOUSE_ROOT")
    p.add_argument("--engine", choices=("local", "connect", "spark"),
                   help="spark under spark-submit or on Databricks; default LAKEHOUSE_ENGINE or local")
    p.add_argument("--config", help="a lakehouse.yaml")
    return p


def unshadow_packages() -> None:
    """Run as a script, ``jobs/`` is ``sys.path[0]`` and ``jobs/silver.py`` would shadow the ``silver`` package."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    for name in ("ingest", "silver", "gold", "features", "train"):
        module = sys.modules.get(name)
        if module is not None and Path(getattr(module, "__file__", None) or "/").resolve().parent == here:
            del sys.modules[name]


def run_step(step: str, argv: Sequence[str] | None, build: Callable[[argparse.ArgumentParser], None],
             call: Callable[[Any, argparse.Namespace], dict[str, Any]], description: str) -> int:
    unshadow_packages()
    from lakehouse.config import load_settings, set_settings
    from lakehouse.errors import LakehouseError
    from lakehouse.logs import setup_logging

    p = parser(step, description)
    build(p)
    # Databricks passes extra notebook-style arguments to python tasks: ignore what is not ours
    args, _unknown = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    setup_logging(None)
    try:
        settings = load_settings(config_file=Path(args.config) if args.config else None, root=args.root,
                                 engine=args.engine)
        set_settings(settings)
        result = call(settings, args)
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    return 0


def exit_with(code: int) -> None:
    if code:
        raise SystemExit(code)
