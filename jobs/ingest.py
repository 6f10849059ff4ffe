"""Job entry point: land files and ingest what is new into Bronze (``spark-submit jobs/ingest.py --root ...``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs._common import exit_with, run_step


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", help="files or folders to copy into landing first (default: landing only)")


def _call(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    from lakehouse import pipeline

    return pipeline.ingest(settings, [Path(p) for p in args.paths])


def main(argv: Sequence[str] | None = None) -> int:
    return run_step("ingest", argv, _args, _call, __doc__ or "")


if __name__ == "__main__":
    exit_with(main())
