"""The CLI's view of ``lakehouse.progress`` events: one line per finished step on stderr, with elapsed time.

    [  12.3s] silver  observation                 10,290 rows  12 quarantined  (3.1s)

The time in brackets is since the command started; the one in parentheses is how long the step took (the layer's
own measure when it sent ``seconds``, else the time since the previous step of that layer ended). dbt tests that
pass are counted into one line ("12 tests pass") written before the next other line; a failing or warning test
gets its own. On a terminal a transient spinner names the step running now; in a pipe or a log file only the lines
appear. Everything goes to stderr so that ``--json`` on stdout stays machine-readable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from lakehouse import progress

LAYER_STYLE = {"bronze": "dark_orange3", "silver": "grey70", "gold": "gold1"}
STATUS_STYLE = {"success": "green", "pass": "green", "warn": "yellow", "skipped": "dim", "up to date": "dim",
                "fail": "bold red", "error": "bold red", "runtime error": "bold red"}
# counts shown in this order, then any other; a zero is left out unless the key is in KEEP_ZERO
ORDER = ("received", "bronze", "duplicates", "quarantined", "rows")
KEEP_ZERO = {"rows", "received"}
NOT_SHOWN = {"seconds", "status", "kind", "node"}
TESTS = ("test", "unit_test")


def _counts(details: dict[str, Any]) -> str:
    keys = [k for k in ORDER if k in details] + [k for k in details if k not in ORDER and k not in NOT_SHOWN]
    parts = []
    for key in keys:
        value = details[key]
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            if value or key in KEEP_ZERO:
                parts.append(f"{value:,} {key[:-1] if value == 1 and key.endswith('s') else key}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.3f}")
        else:
            parts.append(f"{escape(key)} {escape(str(value))}")
    return "  ".join(parts)


def line(event: progress.Event, elapsed: float, seconds: float | None) -> str:
    """The rich markup of one finished step."""
    layer = f"[{LAYER_STYLE.get(event.layer, 'bold')}]{escape(event.layer):<8}[/]"
    status = event.details.get("status")
    shown = f"[{STATUS_STYLE.get(str(status), 'bold')}]{escape(str(status))}[/]  " if status else ""
    node = f"  [dim]{escape(str(event.details['node']))}[/]" if "node" in event.details else ""
    took = f"  [dim]({seconds:.1f}s)[/]" if seconds is not None else ""
    return (f"  [dim]\\[{elapsed:7.1f}s][/] {layer} {escape(event.item):<30} {shown}{_counts(event.details)}"
            f"{node}{took}")


class ProgressLines:
    """A ``lakehouse.progress`` listener that prints finished steps and shows the running one."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.boundary: dict[str, float] = {}  # layer -> when its previous step ended (or its first began)
        self.lock = threading.Lock()  # dbt reports from its worker threads
        self.spinner: Progress | None = None
        self.task: TaskID | None = None
        self.passed: list[progress.Event] = []  # passing dbt tests not yet shown

    def __call__(self, event: progress.Event) -> None:
        with self.lock:
            if event.phase == "start":
                self.boundary.setdefault(event.layer, event.at)
                self._running(f"{event.layer} {event.item}")
                return
            if event.details.get("kind") in TESTS and event.details.get("status") == "pass":
                self.passed.append(event)
                self.boundary[event.layer] = event.at
                self._running(f"{event.layer} ...")
                return
            self._flush_tests()
            seconds = event.details.get("seconds")
            if not isinstance(seconds, int | float):
                since = self.boundary.get(event.layer)
                seconds = None if since is None else event.at - since
            self.boundary[event.layer] = event.at
            self._print(event, seconds)
            self._running(f"{event.layer} ...")

    def _print(self, event: progress.Event, seconds: float | None) -> None:
        self.console.print(line(event, event.at - self.started, seconds), highlight=False, soft_wrap=True)

    def _flush_tests(self) -> None:
        if not self.passed:
            return
        last, n = self.passed[-1], len(self.passed)
        seconds = sum(float(e.details.get("seconds") or 0.0) for e in self.passed)
        details = {"status": "pass", **({"node": last.details["node"]} if "node" in last.details else {})}
        self.passed = []
        self._print(progress.Event(last.layer, f"{n} test{'s' if n > 1 else ''}", "done", details, last.at), seconds)

    def _running(self, description: str) -> None:
        if self.spinner is not None and self.task is not None:
            self.spinner.reset(self.task, description=escape(description))

    @contextmanager
    def shown(self) -> Iterator[None]:
        """Install the listener (and, on a terminal, the spinner) for the block."""
        if self.console.is_terminal:
            self.spinner = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                    console=self.console, transient=True)
            self.task = self.spinner.add_task("starting", total=None)
            self.spinner.start()
        try:
            with progress.listening(self):
                yield
        finally:
            with self.lock:
                self._flush_tests()
            if self.spinner is not None:
                self.spinner.stop()
                self.spinner = None
