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


# what became of the Bronze records, per source and message/resource type (written by every Silver build)
COVERAGE_TABLE = "_system.source_coverage"
COVERAGE_COUNTS = ("received", "silver", "quarantined", "not_in_scope", "superseded")


def source_coverage(settings: Settings) -> list[dict[str, Any]]:
    """Per source and type: received -> silver / quarantined / not in scope / superseded, and ``unaccounted``
    (received minus all of them: always 0 unless a record was lost). Records of an unexpected shape (``no_fact``)
    are in quarantine and counted there too."""

    catalog = Catalog(get_spark(settings), settings)
    if not catalog.exists(COVERAGE_TABLE):
        raise LakehouseError(f"no {COVERAGE_TABLE} under {settings.root_path}; run `lakehouse silver` first")
    out = []
    for row in catalog.read(COVERAGE_TABLE).orderBy("source", "record_type").collect():
        r = row.asDict()
        r["quarantined"] += r["no_fact"]
        r["unaccounted"] = r["received"] - sum(r[k] for k in COVERAGE_COUNTS[1:])
        out.append(r)
    return out
