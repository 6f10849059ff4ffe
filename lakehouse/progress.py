"""Progress of long steps as events: the layers say what they are doing, the application decides how to show it.

A layer calls ``start(layer, item)`` when a step begins and ``done(layer, item, **details)`` when it ends
(Bronze: each group of files of a format, Silver: each domain, Gold: each dbt node). The installed listener
receives an ``Event``; without one (jobs, tests, notebooks) the event goes to the ``lakehouse.progress`` logger at
DEBUG. The CLI installs a listener that prints one line per event on stderr (``lakehouse_app.progress_lines``).

Details are small values (row counts, a status, ``seconds`` when the layer measured the step itself). A listener
that fails is logged and removed for the rest of the run: showing progress never breaks a pipeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("lakehouse.progress")


@dataclass(frozen=True)
class Event:
    layer: str  # "bronze", "silver", "gold"
    item: str  # what: "hl7v2 1/2", "observation", "model dim_patient"
    phase: str  # "start" or "done"
    details: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


Listener = Callable[[Event], None]
_listener: Listener | None = None


def start(layer: str, item: str, **details: Any) -> None:
    """A step begins (e.g. the split of a group of files, a Silver domain, a dbt node)."""
    _emit(Event(layer, item, "start", details))


def done(layer: str, item: str, **details: Any) -> None:
    """A step ended, with what it produced (``rows=``, ``quarantined=``, ``status=``, ``seconds=`` ...)."""
    _emit(Event(layer, item, "done", details))


def _emit(event: Event) -> None:
    global _listener
    listener = _listener
    if listener is None:
        log.debug("%s %s %s %s", event.layer, event.item, event.phase, event.details)
        return
    try:
        listener(event)
    except Exception:  # noqa: BLE001 - a display problem must not fail the run
        log.warning("progress listener failed; progress is no longer shown", exc_info=True)
        _listener = None


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send every event to ``listener`` inside the block (the previous listener is restored after it)."""
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
        _listener = previous
