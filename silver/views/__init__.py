"""SQL-on-FHIR v2 ViewDefinitions compiled to Spark SQL (runs on Sail and on any Spark 4 engine).

Public API: ``run_view``, ``load_view``, ``VIEW_NAMES``, ``compile_view``, ``run_conformance`` and the errors.
"""

from silver.views.compiler import CompiledView, compile_view
from silver.views.conformance import run_conformance
from silver.views.engine import VIEW_NAMES, load_view, run_view
from silver.views.errors import FhirPathSyntaxError, UnsupportedFhirPathError, ViewDefinitionError

__all__ = [
    "VIEW_NAMES", "CompiledView", "FhirPathSyntaxError", "UnsupportedFhirPathError", "ViewDefinitionError",
    "compile_view", "load_view", "run_conformance", "run_view",
]
