"""Job entry point: build gold.features_readmission from Silver (``spark-submit jobs/features.py --root ...``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from jobs._common import exit_with, run_step


def _args(p: argparse.ArgumentParser) -> None:
    return None


def _call(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    from lakehouse import pipeline

    return pipeline.features(settings)


def main(argv: Sequence[str] | None = None) -> int:
    return run_step("features", argv, _args, _call, __doc__ or "")


if __name__ == "__main__":
    exit_with(main())
