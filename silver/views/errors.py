"""Errors raised while compiling a ViewDefinition: each names the view element or FHIRPath expression at fault."""

from __future__ import annotations

from lakehouse.errors import ConfigError


class ViewDefinitionError(ConfigError, ValueError):
    """The ViewDefinition is invalid (missing resource, bad column name, union columns that differ, ...)."""


class FhirPathSyntaxError(ViewDefinitionError):
    """A FHIRPath expression does not parse."""


class UnsupportedFhirPathError(ViewDefinitionError):
    """A FHIRPath construct outside the subset this engine compiles (never evaluated approximately)."""


# Marker put into raise_error() messages so callers can tell view errors found at run time from engine failures.
RUNTIME_ERROR_MARKER = "SQL-on-FHIR view error"
