"""Error types the CLI turns into one clear line and a non-zero exit."""


class LakehouseError(Exception):
    """Base class: the message is shown to the user as is."""

    exit_code = 1


class ConfigError(LakehouseError):
    """Wrong configuration or a missing dependency; the message says how to fix it."""

    exit_code = 2


class EngineError(LakehouseError):
    """The engine could not be started or reached."""

    exit_code = 3


class ReconciliationError(LakehouseError):
    """received != loaded + quarantined: something would be lost."""

    exit_code = 4


class NotBuiltError(LakehouseError):
    """A command whose issue has not landed yet."""

    exit_code = 5
