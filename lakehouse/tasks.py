"""Run steps that depend on each other on a few threads, each step as soon as the steps it needs have finished.

A Spark Connect server plans and runs the queries of concurrent requests on its own threads: two steps whose time is
spent planning (Silver's small domains, an incremental build) take about as long together as one alone on a
2-core machine (docs/performance.md). Steps share one ``SparkSession``; what they share besides it must be safe to
use from two threads (the caller's locks).

With one worker the steps run one after the other in the order given, as before this module existed. The first
step that fails stops the start of any other; the steps already running finish, then its exception is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    run: Callable[[], None]
    needs: Sequence[str] = field(default_factory=tuple)


def run_steps(steps: Mapping[str, Step], workers: int) -> None:
    """Run every step once its ``needs`` have run; at most ``workers`` at a time, started in the order given."""
    unknown = {need for step in steps.values() for need in step.needs if need not in steps}
    if unknown:
        raise ValueError(f"steps need steps that do not exist: {sorted(unknown)}")
    if workers <= 1:
        for name in _in_order(steps):
            steps[name].run()
        return
    done: set[str] = set()
    waiting = list(steps)
    running: dict[Future[None], str] = {}
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="step") as pool:
        while waiting or running:
            if failure is None:
                for name in [n for n in waiting if all(need in done for need in steps[n].needs)]:
                    if len(running) >= workers:
                        break
                    waiting.remove(name)
                    running[pool.submit(steps[name].run)] = name
            if not running:
                if failure is None and waiting:
                    raise ValueError(f"steps that need each other: {sorted(waiting)}")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                error = future.exception()
                if error is not None and failure is None:
                    failure = error
                done.add(name)
    if failure is not None:
        raise failure


def _in_order(steps: Mapping[str, Step]) -> list[str]:
    """The steps in the order given, each moved after the steps it needs."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"steps that need each other: {name}")
        visiting.add(name)
        for need in steps[name].needs:
            visit(need)
        order.append(name)

    for name in steps:
        visit(name)
    return order
