"""MLflow: a pinned, logged training set and a reproducible, registered readmission model (real sqlite store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from consumer_data import synthetic_silver, write_outcomes, write_silver
from helpers import new_lakehouse

from gold.features import FEATURE_TABLE, build_features
from gold.training import model_inputs, train, training_set
from lakehouse.catalog import Catalog
from lakehouse.errors import LakehouseError
from lakehouse.runlog import run_context
from silver import schemas


@pytest.fixture(scope="module")
def lakehouse(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Silver -> features twice: version v0 (first half of the patients), then all patients at a later version."""
    settings = new_lakehouse(tmp_path_factory.mktemp("training") / "lh")
    catalog = Catalog(spark, settings)
    tables = synthetic_silver(patients=120)
    first = {name: [r for r in rows if r[_patient_col(name)] < "P0060"] for name, rows in tables.items()}
    write_silver(catalog, first)
    write_outcomes(catalog, first["encounter"])
    with run_context("features", settings) as run:
        build_features(settings, run)
    v0 = catalog.version(FEATURE_TABLE)
    rows_v0 = catalog.read(FEATURE_TABLE).count()
    rest = {name: [r for r in rows if r[_patient_col(name)] >= "P0060"] for name, rows in tables.items()}
    write_silver(catalog, rest)
    write_outcomes(catalog, rest["encounter"])
    with run_context("features", settings) as run:
        build_features(settings, run)
    return {"settings": settings, "catalog": catalog, "v0": v0, "rows_v0": rows_v0}


def _patient_col(table: str) -> int:
    return schemas.columns(table).index("patient_key")


@pytest.fixture(scope="module")
def trained(lakehouse: dict[str, Any]) -> list[dict[str, Any]]:
    return [train(lakehouse["settings"]), train(lakehouse["settings"])]


def test_training_set_is_pinned_and_logged(lakehouse: dict[str, Any]) -> None:
    import mlflow

    settings, catalog = lakehouse["settings"], lakehouse["catalog"]
    latest = catalog.version(FEATURE_TABLE)
    assert latest > lakehouse["v0"]
    old = training_set(settings, as_of_version=lakehouse["v0"])
    assert len(old) == lakehouse["rows_v0"] and old.attrs["delta_version"] == lakehouse["v0"]
    assert len(training_set(settings)) == catalog.read(FEATURE_TABLE).count() > len(old)

    run = mlflow.search_runs(filter_string="attributes.run_name = 'training_set'", output_format="list",
                             order_by=["attributes.start_time ASC"])[0]
    dataset = mlflow.get_run(run.info.run_id).inputs.dataset_inputs[0].dataset
    assert dataset.source_type == "delta_table" and dataset.name == FEATURE_TABLE
    assert f'"delta_table_version": {lakehouse["v0"]}' in dataset.source
    assert str(catalog.path(FEATURE_TABLE)) in dataset.source
    assert dataset.digest.endswith(f"@v{lakehouse['v0']}")
    assert run.data.tags["lineage.delta_version"] == str(lakehouse["v0"])


def test_training_set_rejects_a_missing_version(lakehouse: dict[str, Any]) -> None:
    with pytest.raises(LakehouseError, match="does not exist"):
        training_set(lakehouse["settings"], as_of_version=999)


def test_training_is_reproducible_and_registered(lakehouse: dict[str, Any], trained: list[dict[str, Any]]) -> None:
    import mlflow

    first, second = trained
    assert first["run_id"] != second["run_id"] and first["delta_version"] == second["delta_version"]
    assert first["metrics"] == second["metrics"]
    assert 0.5 < first["metrics"]["auroc"] <= 1.0, first["metrics"]  # the planted signal is learnt
    assert 0.0 < first["metrics"]["brier_score"] < 0.25
    db = lakehouse["settings"].system_dir / "mlflow" / "mlflow.db"
    assert first["tracking_uri"] == f"sqlite:///{db}" and db.is_file()
    versions = mlflow.MlflowClient().search_model_versions("name='readmission_30d'")
    assert sorted(int(v.version) for v in versions) == [1, 2]

    run = mlflow.get_run(first["run_id"])
    assert run.data.params["delta_version"] == str(first["delta_version"])
    assert {"auroc", "brier_score"} <= set(run.data.metrics)
    artifacts_dir = Path(run.info.artifact_uri.removeprefix("file://"))
    assert (artifacts_dir / "calibration.csv").is_file()
    assert str(artifacts_dir).startswith(str(lakehouse["settings"].system_dir / "mlflow" / "artifacts"))


def test_registered_model_predicts_with_its_signature(lakehouse: dict[str, Any], trained: list[dict[str, Any]]) -> None:
    import mlflow

    model = mlflow.pyfunc.load_model("models:/readmission_30d/2")
    assert model.metadata.signature is not None
    assert "charlson_index" in model.metadata.signature.inputs.input_names()
    x = model_inputs(training_set(lakehouse["settings"]).head(20))
    prob = model.predict(x)
    assert prob.shape == (20, 2) and ((prob >= 0) & (prob <= 1)).all()
