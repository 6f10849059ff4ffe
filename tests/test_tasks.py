"""lakehouse.tasks: steps run after the steps they need, several at a time, and the first failure stops the rest."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from lakehouse.tasks import Step, run_steps

pytestmark = pytest.mark.fast


def _recorder() -> tuple[list[str], Callable[[str], Callable[[], None]]]:
    done: list[str] = []
    lock = threading.Lock()

    def step(name: str) -> Callable[[], None]:
        def run() -> None:
            with lock:
                done.append(name)
        return run

    return done, step


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_every_step_runs_once_after_what_it_needs(workers: int) -> None:
    done, make = _recorder()
    needs = {"patient": (), "encounter": ("patient",), "location": ("encounter",), "practitioner": (),
             "care_plan": ("patient",), "activity": ("care_plan", "encounter")}
    run_steps({name: Step(make(name), deps) for name, deps in needs.items()}, workers)
    assert sorted(done) == sorted(needs)
    for name, deps in needs.items():
        assert all(done.index(d) < done.index(name) for d in deps), (name, done)


def test_one_worker_keeps_the_order_given() -> None:
    done, make = _recorder()
    run_steps({"b": Step(make("b")), "a": Step(make("a"), ("c",)), "c": Step(make("c"))}, 1)
    assert done == ["b", "c", "a"]


def test_two_workers_run_two_steps_at_the_same_time() -> None:
    both = threading.Barrier(2, timeout=10)  # broken (an error) unless both steps wait at it together
    run_steps({"a": Step(both.wait), "b": Step(both.wait)}, 2)
    assert not both.broken


def test_a_failure_stops_steps_not_started_and_is_raised_after_running_ones_end() -> None:
    done, make = _recorder()
    started_b = threading.Event()

    def fail() -> None:
        started_b.wait(10)
        raise RuntimeError("reconciliation failed")

    def slow() -> None:
        started_b.set()
        done.append("b")

    with pytest.raises(RuntimeError, match="reconciliation failed"):
        run_steps({"a": Step(fail), "b": Step(slow), "c": Step(make("c"), ("a",)), "d": Step(make("d"), ("a",))}, 2)
    assert done == ["b"]


def test_unknown_or_circular_needs_are_refused() -> None:
    with pytest.raises(ValueError, match="do not exist"):
        run_steps({"a": Step(lambda: None, ("nope",))}, 2)
    for workers in (1, 2):
        with pytest.raises(ValueError, match="need each other"):
            run_steps({"a": Step(lambda: None, ("b",)), "b": Step(lambda: None, ("a",))}, workers)
