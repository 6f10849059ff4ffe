"""The one logger setup."""

from __future__ import annotations

import logging
import os

_configured = False


def setup_logging(level: str | None = None) -> None:
    global _configured
    if _configured:
        return
    level = level or os.environ.get("LAKEHOUSE_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "urllib3", "alembic", "mlflow", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
