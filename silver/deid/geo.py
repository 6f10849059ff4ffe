"""Geography: ZIP codes to their first 3 digits, ``000`` for ZIP3 areas of 20,000 people or fewer."""

from __future__ import annotations

import csv
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import Column

RESTRICTED_ZIP3_CSV = Path(__file__).with_name("zip3_restricted.csv")
# 5 digits, optionally followed by 4 more (ZIP+4) with or without a hyphen/space
US_ZIP = r"^([0-9]{5})(?:[ -]?[0-9]{4})?$"


@cache
def restricted_zip3() -> tuple[str, ...]:
    lines = [ln for ln in RESTRICTED_ZIP3_CSV.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return tuple(sorted(row["zip3"] for row in csv.DictReader(lines)))


def generalize_zip3(zip_col: Column) -> Column:
    """First 3 digits of a US ZIP (or ZIP+4); ``000`` for restricted ZIP3s; NULL for anything else."""
    cleaned = F.regexp_replace(zip_col.cast("string"), r"\s+", " ")
    cleaned = F.trim(cleaned)
    zip5 = F.regexp_extract(cleaned, US_ZIP, 1)
    zip3 = F.substring(zip5, 1, 3)
    restricted = F.array(*[F.lit(z) for z in restricted_zip3()])
    return (F.when(zip5 == "", F.lit(None).cast("string"))
            .when(F.array_contains(restricted, zip3), F.lit("000"))
            .otherwise(zip3)).alias("zip3")


def generalize_zip3_py(zip_value: str | None) -> str | None:

    if zip_value is None:
        return None
    m = re.match(US_ZIP, " ".join(str(zip_value).split()))
    if not m:
        return None
    return "000" if m.group(1)[:3] in restricted_zip3() else m.group(1)[:3]
