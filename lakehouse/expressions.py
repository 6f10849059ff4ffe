"""Column helpers that keep engine plans small.

A Spark Connect plan is a tree: a column expression used twice is sent, analysed and optimized twice, and helpers
that nest such uses (an HL7 field decoded, then parsed as a time, then keyed) grow exponentially. On Sail the
optimizer's time grows with the size of the expression tree, and planning, not execution, was most of a Silver
build (measured: 1.3 MB plans took 15 s to plan and milliseconds to run on 30 patients).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pyspark.sql import Column
from pyspark.sql import functions as F


def let(value: Column, body: Callable[[Column], Column]) -> Column:
    """``body(value)`` with ``value`` computed once and bound to a lambda variable, so that ``body`` may use it any
    number of times without copying its expression (``let x = value in body(x)``)."""
    return F.get(F.transform(F.array(value), body), 0)


def code_lookup(code: Column, mapping: Mapping[str, str]) -> Column:
    """``mapping[upper(trim(code))]``: NULL for a code not in it (or NULL). The mapping is one map literal in the
    plan and the code appears once (a CASE chain repeats the code once per entry)."""
    if not mapping:
        return F.lit(None).cast("string")
    return map_literal(mapping)[F.upper(F.trim(code))]


def map_literal(mapping: Mapping[str, object]) -> Column:
    """``mapping`` as one map literal of the plan (look a key up with ``map_literal(m)[key]``; NULL if absent)."""
    return F.create_map(*[F.lit(x) for pair in sorted(mapping.items()) for x in pair])
