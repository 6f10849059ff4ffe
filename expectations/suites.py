"""The Great Expectations suites of this folder (one JSON per Silver table): the one source of the quality rules."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.errors import LakehouseError

if TYPE_CHECKING:
    from lakehouse.config import Settings

SUITE_DIR = Path(__file__).resolve().parent
CATEGORIES = ("conformance", "completeness", "plausibility")
SEVERITIES = ("critical", "error", "warning")
LATEST_TIME_PARAMETER = "latest_plausible_time"


def tables() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.json"))


@cache
def _read(table: str) -> str:
    path = SUITE_DIR / f"{table}.json"
    if not path.is_file():
        raise LakehouseError(f"no expectation suite for silver.{table} (expected {path})")
    return path.read_text(encoding="utf-8")


def load_suite(table: str) -> dict[str, Any]:
    """The suite JSON of ``silver.<table>`` as a dict (a fresh copy: callers may change it)."""
    suite = json.loads(_read(table))
    for exp in suite["expectations"]:
        meta = exp.get("meta", {})
        missing = {"rule", "category", "severity", "row_level"} - set(meta)
        if missing or meta["category"] not in CATEGORIES or meta["severity"] not in SEVERITIES:
            raise LakehouseError(f"expectations/{table}.json: expectation {exp.get('type')} {meta.get('rule')} "
                                 f"needs meta rule, category in {CATEGORIES}, severity in {SEVERITIES}, row_level")
    return copy.deepcopy(suite)


def latest_plausible_time(settings: Settings | None = None, now: datetime | None = None) -> datetime:
    """The latest timestamp a Silver row may carry: now, plus one day of clock and time-zone slack.

    Under the ``expert_determination`` profile (dates shifted), de-identified dates may lie up to
    ``max_shift_days`` after the real ones, so that margin is added too (the unshifted dates are checked before the
    shift, in the Silver transforms).
    """
    latest = (now or datetime.now(UTC)) + timedelta(days=1)
    if settings is not None and settings.deid_profile == "expert_determination":
        latest += timedelta(days=settings.max_shift_days)
    return latest if latest.tzinfo else latest.replace(tzinfo=UTC)


def is_referential(expectation: dict[str, Any]) -> bool:
    return "reference" in expectation.get("meta", {})
