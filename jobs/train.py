"""Job entry point: train and register the readmission model in MLflow (``spark-submit jobs/train.py --root ...``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from jobs._common import exit_with, run_step


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as-of-version", type=int, help="train on this version of gold.features_readmission")


def _call(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    from lakehouse import pipeline

    return pipeline.train(settings, as_of_version=args.as_of_version)


def main(argv: Sequence[str] | None = None) -> int:
    return run_step("train", argv, _args, _call, __doc__ or "")


if __name__ == "__main__":
    exit_with(main())
