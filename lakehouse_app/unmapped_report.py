"""Reports over the Silver tables (read-only)."""

from __future__ import annotations

from typing import Any

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.engine import get_spark
from lakehouse.errors import LakehouseError
from silver.terminology import unmapped_report

# Silver tables whose codes are mapped to a standard vocabulary, and the domain name shown in the report
CODED_TABLES = {"observation": "silver.observation", "condition": "silver.condition",
                "medication_request": "silver.medication_request"}


def unmapped_codes(settings: Settings) -> list[dict[str, Any]]:
    """Unmapped codes with counts across the coded Silver tables: ``[{domain, code, system, count}]``."""

    catalog = Catalog(get_spark(settings), settings)
    frames = {domain: catalog.read(name) for domain, name in CODED_TABLES.items() if catalog.exists(name)}
    if not frames:
        raise LakehouseError(f"no coded Silver table ({', '.join(CODED_TABLES.values())}) under "
                             f"{settings.root_path}; run `lakehouse silver` first")
    return [row.asDict() for row in unmapped_report(frames).collect()]
