"""Test fixtures: one real Sail server for the whole session, a fresh lakehouse root per test that asks."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*pandas.*", category=FutureWarning)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
CONFORMANCE = SHARED / "conformance" / "sql-on-fhir-v2"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The classic-Spark lane needs its own process (a Connect session switches pyspark into remote mode).
    if os.environ.get("LAKEHOUSE_TEST_LANE") == "classic":
        return
    skip = pytest.mark.skip(reason="classic Spark lane runs in its own process (make test runs it when java exists)")
    for item in items:
        if "classic_spark" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lakehouse-session")


@pytest.fixture(scope="session")
def spark(session_root: Path) -> Iterator[object]:
    """The one Sail server of the test session."""
    os.environ.pop("SPARK_REMOTE", None)
    from lakehouse import engine
    from lakehouse.config import load_settings, set_settings

    settings = load_settings(config_file=None, environ={}, root=session_root)
    set_settings(settings)
    session = engine.get_spark(settings)
    yield session
    engine.stop_spark()


@pytest.fixture()
def settings(tmp_path: Path, spark: object) -> Iterator[object]:
    """A fresh, empty lakehouse root attached to the session's engine."""
    from lakehouse import engine
    from lakehouse.config import load_settings, set_settings

    s = load_settings(config_file=None, environ={}, root=tmp_path / "lh",
                      pseudonym_key="test-key-not-secret-0123456789abcdef")
    set_settings(s)
    engine.get_spark(s)  # re-attaches the catalog to this root
    yield s
    set_settings(None)


@pytest.fixture()
def catalog(spark: object, settings: object) -> object:
    from lakehouse.catalog import Catalog

    return Catalog(spark, settings)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"shared fixtures not found at {FIXTURES}: check out ../shared beside the repository"
    return FIXTURES


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst
