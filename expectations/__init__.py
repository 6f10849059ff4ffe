"""Great Expectations suites (one JSON per Silver table), row-level quarantine rules and the checkpoint runner."""

from expectations.rules import quarantine_invalid, row_rules
from expectations.runner import DQ_TABLE, build_data_docs, critical_failures, validate, write_results
from expectations.suites import latest_plausible_time, load_suite, tables

__all__ = ["DQ_TABLE", "build_data_docs", "critical_failures", "latest_plausible_time",
           "load_suite", "quarantine_invalid", "row_rules", "tables", "validate", "write_results"]
