"""Test fixtures: one real Sail server for the whole session, a fresh lakehouse root per test that asks.

Lanes: tests marked ``fast`` are pure Python and start no engine (``make test-fast``); every other test gets the
``engine`` marker here. A fast test that asks for the engine fails before anything starts
(``pytest_runtest_setup``), and one that starts it in this process fails at once (``_fast_guard``).
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import new_lakehouse

from lakehouse import engine
from lakehouse.catalog import Catalog
from lakehouse.config import Settings, set_settings

warnings.filterwarnings("ignore", message=".*pandas.*", category=FutureWarning)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
CONFORMANCE = SHARED / "conformance" / "sql-on-fhir-v2"
ENGINE_FIXTURES = frozenset({"spark"})  # `settings`, `catalog` and the module lakehouses depend on it
# Measured seconds of the longest modules (2-core CI machine). The make targets run xdist with
# --no-loadscope-reorder, so modules go to the workers in collection order: longest first, so that at the end
# neither worker waits alone on a long module.
MODULE_SECONDS = {
    "test_incremental_silver": 900, "test_deid_profiles": 690, "test_pipeline": 460, "test_silver_fixtures": 430,
    "test_key_custody": 425,
    "test_erase": 420, "test_patient_history": 400, "test_silver_job": 370, "test_wheel": 320,
    "test_object_store_root": 200, "test_readmission_signal": 300, "test_cluster_engine": 260,
    "test_silver_identity": 250, "test_notebooks": 250, "test_silver_labs": 200,
    "test_deid_text_silver": 200, "test_bad_input": 200, "test_faults": 180, "test_silver_adt": 180,
    "test_silver_care": 180, "test_silver_medications": 180, "test_silver_orders_documents": 180,
    "test_silver_harmonization": 150, "test_features": 150, "test_training": 150, "test_gold_dbt": 100,
    "test_serving": 100, "test_phi_scan": 100, "test_view_conformance": 70, "test_bench": 50,
}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("fast") is None:
            item.add_marker(pytest.mark.engine)
    items.sort(key=lambda item: -MODULE_SECONDS.get(item.path.stem, 0))  # stable: a module's order is kept
    # The classic-Spark lane needs its own process (a Connect session switches pyspark into remote mode).
    if os.environ.get("LAKEHOUSE_TEST_LANE") == "classic":
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python UDF workers: this venv, not PATH's python
        return
    skip = pytest.mark.skip(reason="classic Spark lane runs in its own process (make test runs it when java exists)")
    for item in items:
        if "classic_spark" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked fast that depends on the engine fails here, before any fixture (and so the engine) starts."""
    if item.get_closest_marker("fast") is None:
        return
    used = sorted(ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())))
    if used:
        pytest.fail(f"{item.nodeid} is marked fast but depends on the engine (fixture {', '.join(used)}): "
                    "drop the fast marker or the engine", pytrace=False)


@pytest.fixture(autouse=True)
def _fast_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a test marked fast, starting or reusing the embedded engine in this process is an error."""
    if request.node.get_closest_marker("fast") is None:
        return

    def refuse(*_: object, **__: object) -> None:
        pytest.fail(f"{request.node.nodeid} is marked fast but started the engine: drop the fast marker",
                    pytrace=False)

    real_start = engine.SailServer.start

    def start(self: engine.SailServer, *args: object, **kwargs: object) -> engine.SailServer:
        if self.executable is None:  # the real `sail`; a test's fake executable is no engine
            refuse()
        return real_start(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.SailServer, "start", start)
    monkeypatch.setattr(engine, "_connect_session", refuse)
    monkeypatch.setattr(engine, "_classic_session", refuse)
    # hide a session another test started, so a fast test cannot silently reuse it either (get_spark connects anew)
    monkeypatch.setattr(engine, "_spark", None)


@pytest.fixture(scope="session")
def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lakehouse-session")


@pytest.fixture(scope="session")
def spark(session_root: Path) -> Iterator[object]:
    """The one Sail server of the test session."""
    os.environ.pop("SPARK_REMOTE", None)
    settings = new_lakehouse(session_root)
    yield engine.get_spark(settings)
    engine.stop_spark()


@pytest.fixture()
def make_lakehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Factory: ``make_lakehouse(name="lh", attach_engine=True, **overrides) -> Settings`` for a fresh root
    ``tmp_path / name`` (see ``helpers.new_lakehouse``). Attaching uses the session's engine (the ``spark``
    fixture); the current settings are cleared after the test if the factory set them."""
    attached = False

    def make(name: str = "lh", *, attach_engine: bool = True, **overrides: object) -> Settings:
        nonlocal attached
        if attach_engine:
            request.getfixturevalue("spark")
            attached = True
        return new_lakehouse(tmp_path / name, attach_engine=attach_engine, **overrides)

    yield make
    if attached:
        set_settings(None)


@pytest.fixture()
def settings(spark: object, make_lakehouse: Callable[..., Settings]) -> Settings:
    """A fresh, empty lakehouse root attached to the session's engine."""
    return make_lakehouse()


@pytest.fixture()
def catalog(spark: object, settings: Settings) -> Catalog:
    return Catalog(spark, settings)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures: missing or incomplete is a failure, never a skip (or a test that passes on nothing)."""
    assert FIXTURES.is_dir(), f"shared fixtures not found at {FIXTURES}: check out ../shared beside the repository"
    for folder, pattern in (("synthea-bundles", "*.json"), ("hl7v2", "**/*.hl7")):
        assert any((FIXTURES / folder).glob(pattern)), f"no {pattern} in {FIXTURES / folder}: ../shared is incomplete"
    return FIXTURES


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst

