"""The one error model: exception classes, the exit code each maps to, and the handler every entry point uses.

Bad *input data* is never an exception (it becomes a quarantine row); these are for runs that cannot go on.
The CLI (``lakehouse_app.cli``), ``jobs/run.py`` and ``python -m benchmarks`` all call :func:`error_line` /
:func:`run_entry_point`, so the same failure gives the same one-line message and exit code everywhere.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import NoReturn


class ExitCode(IntEnum):
    """Process exit codes: one meaning per code (listed in the README)."""

    OK = 0
    ERROR = 1  # the run cannot go on: a missing table, a bad argument, a failed dbt build (the message says which)
    CONFIG = 2  # wrong configuration, a bad ViewDefinition or a missing dependency: the message names the fix
    ENGINE = 3  # the engine could not be started or reached
    RECONCILIATION = 4  # received != loaded + quarantined: something would be lost, nothing was published
    DATA_QUALITY = 5  # a critical data-quality expectation failed
    AUDIT_BROKEN = 6  # `audit verify`: the run log's hash chain is broken
    PHI_FOUND = 7  # `phi-scan`: a de-identified layer holds PHI
    STORAGE = 8  # the root or a file under it cannot be used (unwritable, missing, disk full)


class LakehouseError(Exception):
    """Base class: the message is shown to the user as is, on one line."""

    exit_code: ExitCode = ExitCode.ERROR


class ConfigError(LakehouseError):
    """Wrong configuration or a missing dependency; the message says how to fix it."""

    exit_code = ExitCode.CONFIG


class EngineError(LakehouseError):
    """The engine could not be started or reached."""

    exit_code = ExitCode.ENGINE


class ReconciliationError(LakehouseError):
    """received != loaded + quarantined: something would be lost."""

    exit_code = ExitCode.RECONCILIATION


class DataQualityError(LakehouseError):
    """A critical data-quality expectation failed."""

    exit_code = ExitCode.DATA_QUALITY


class AuditChainError(LakehouseError):
    """The run log's hash chain does not verify."""

    exit_code = ExitCode.AUDIT_BROKEN


class PhiFoundError(LakehouseError):
    """A PHI scan found identifiers in a de-identified layer."""

    exit_code = ExitCode.PHI_FOUND


def error_line(exc: BaseException) -> tuple[ExitCode, str] | None:
    """The exit code and one-line message for an error an entry point reports; None for a bug (let it raise)."""
    if isinstance(exc, LakehouseError):
        return exc.exit_code, str(exc)
    if isinstance(exc, OSError):  # unwritable root, full disk, missing directory
        where = f" {exc.filename}" if exc.filename else ""
        return ExitCode.STORAGE, (f"cannot use{where}: {exc.strerror or exc}; check --root / LAKEHOUSE_ROOT "
                                  "(it must be a writable directory) and free disk space")
    return None


def run_entry_point(main: Callable[[], int | None], echo: Callable[[str], None] | None = None) -> int:
    """Run ``main``; a reported error becomes ``error: <line>`` on stderr and its exit code."""
    try:
        return int(main() or ExitCode.OK)
    except (LakehouseError, OSError) as exc:
        code, message = error_line(exc)  # type: ignore[misc]
        (echo or (lambda line: print(line, file=sys.stderr)))(f"error: {message}")
        return int(code)


def exit_process(code: int) -> NoReturn:
    """End a command-line process with ``code``: run the atexit handlers (engine stop, removal of the private key
    file), flush, and leave without interpreter finalization. Native threads of delta-rs/Arrow can abort the
    interpreter at finalization ("terminate called without an active exception", seen after a command had
    finished and printed its result), turning a success into exit code -6."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
