"""What is in the lakehouse, read from the Delta logs with delta-rs (no engine needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deltalake import DeltaTable

from lakehouse.catalog import LAYERS, PROPERTY_PREFIX, is_delta_table
from lakehouse.config import Settings

# what a de-identification profile cannot give, and what the lakehouse does instead (silver/deid/POLICY.md)
UNAVAILABLE: dict[str, dict[str, str]] = {
    "safe_harbor": {
        "gold.mart_daily_vitals": "no day is published (dates keep the year only): the mart is empty",
        "gold.mart_readmission_30d": "per discharge year, not month (period_grain = 'year')",
        "gold.mart_length_of_stay": "per discharge year, not month (period_grain = 'year')",
        "day, month, weekday, hour of any date": "every Silver/Gold date is 1 January of its year; durations "
                                                 "(length of stay, age at admission, days to readmission) "
                                                 "come from Silver's integers computed from the true dates",
        "linking to other releases by key": "record keys are random surrogates of this lakehouse's mapping "
                                            "table (_system.surrogate_keys), not pseudonyms of identifiers",
    },
    "expert_determination": {
        "true calendar dates": "every date of a patient is shifted by one secret offset in "
                               "[-max_shift_days, +max_shift_days] (never 0): days, months, weekdays and "
                               "seasons are those of the shifted timeline, so calendar analyses across patients "
                               "(epidemics, holidays) are not supported",
    },
}


def table_rows(dt: DeltaTable) -> int:
    actions = dt.get_add_actions(flatten=True)
    if actions.num_rows == 0:
        return 0
    counts = actions.column("num_records").to_pylist()
    if any(c is None for c in counts):  # no stats: count by reading
        return int(dt.to_pyarrow_dataset().count_rows())
    return int(sum(counts))


def table_status(settings: Settings) -> list[dict[str, Any]]:
    out = []
    for layer in LAYERS:
        layer_dir = settings.layer_path(layer)
        if not layer_dir.is_dir():
            continue
        for path in sorted(layer_dir.iterdir()):
            if not is_delta_table(path):
                continue
            dt = DeltaTable(str(path))
            last = dt.history(1)
            ts = last[0].get("timestamp") if last else None
            last_write = datetime.fromtimestamp(ts / 1000, UTC).isoformat() if ts else None
            built_with = dt.metadata().configuration.get(f"{PROPERTY_PREFIX}deid_profile")
            out.append({"layer": layer, "table": path.name, "rows": table_rows(dt), "version": dt.version(),
                        "last_write": last_write, "deid_profile": built_with})
    return out


def deid_status(settings: Settings, tables: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The active de-identification profile, what it cannot compute, and Silver/Gold tables another profile
    built (rebuild them: ``lakehouse silver --force`` then ``lakehouse gold --full-refresh``)."""
    tables = table_status(settings) if tables is None else tables
    stale = sorted(f"{t['layer']}.{t['table']}" for t in tables
                   if t["layer"] in ("silver", "gold") and t.get("deid_profile") not in (None, settings.deid_profile))
    return {"deid_profile": settings.deid_profile, "unavailable": UNAVAILABLE[settings.deid_profile],
            "built_with_other_profile": stale}
