"""What is in the lakehouse, read from the Delta logs with delta-rs (no engine needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deltalake import DeltaTable

from lakehouse.catalog import LAYERS, is_delta_table
from lakehouse.config import Settings


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
            out.append({"layer": layer, "table": path.name, "rows": table_rows(dt), "version": dt.version(),
                        "last_write": last_write})
    return out
