"""Training data and the readmission model, tracked in MLflow (sqlite store under ``<root>/_system/mlflow``).

``training_set`` pins the Delta version of ``gold.features_readmission`` before reading it and logs an MLflow
dataset input whose source is that path and version, so every run says exactly which rows it learned from.
Sail has no ``semanticHash``: the dataset digest is ``<table id[:8]>@v<version>``.
"""

from __future__ import annotations

import json
import math
import warnings
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from deltalake import DeltaTable

from gold.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.engine import get_spark
from lakehouse.errors import LakehouseError
from lakehouse.logs import get_logger

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

FEATURE_TABLE = "gold.features_readmission"
EXPERIMENT = "readmission_30d"
MODEL_NAME = "readmission_30d"
DEFAULT_LABEL = "readmitted_within_30d"
CALIBRATION_BINS = 10


def tracking_uri(settings: Settings) -> str:
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    db = settings.system_dir / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def artifact_location(settings: Settings) -> str:
    return (settings.system_dir / "mlflow" / "artifacts").as_uri()


def use_tracking(settings: Settings, experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the lakehouse's store and experiment; returns the experiment id."""
    # deferred: mlflow takes 4-8 s to import here (measured); only training and feature logging use it
    import mlflow

    uri = tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    on_databricks = uri.startswith("databricks")
    if on_databricks:  # workspace experiments are named by absolute path; artifacts go to the workspace store
        experiment = f"/Shared/clinical-lakehouse/{experiment}"
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment_id=found.experiment_id)
        return str(found.experiment_id)
    location = None if on_databricks else artifact_location(settings)
    experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def training_set(settings: Settings, label: str = DEFAULT_LABEL, as_of_version: int | None = None) -> pd.DataFrame:
    """``gold.features_readmission`` at one pinned Delta version as pandas, logged as an MLflow dataset input.

    Logs into the active MLflow run, or into a short run of its own when none is active.
    ``df.attrs`` carries ``delta_path``, ``delta_version`` and ``delta_table_id``.
    """
    # deferred: mlflow takes 4-8 s to import here (measured); only training and feature logging use it
    import mlflow


    catalog = Catalog(get_spark(settings), settings)
    if not catalog.exists(FEATURE_TABLE):
        raise LakehouseError(f"{FEATURE_TABLE} does not exist: run `lakehouse features` first")
    path = str(catalog.path(FEATURE_TABLE))
    table = DeltaTable(path)
    latest = table.version()  # pinned before reading: later writes do not leak into this training set
    version = latest if as_of_version is None else int(as_of_version)
    if not 0 <= version <= latest:
        raise LakehouseError(f"{FEATURE_TABLE} has versions 0..{latest}; --as-of-version {version} does not exist")
    table_id = table.metadata().id
    df = catalog.read(FEATURE_TABLE, version=version)
    if label not in df.columns:
        raise LakehouseError(f"label {label!r} is not a column of {FEATURE_TABLE} (columns: {', '.join(df.columns)})")
    dataset = mlflow.data.from_spark(df, path=path, version=version, name=FEATURE_TABLE,
                                     digest=f"{table_id[:8]}@v{version}", targets=label)
    tags = {"lineage.delta_path": path, "lineage.delta_version": str(version), "lineage.delta_table_id": table_id}

    use_tracking(settings)
    own_run = mlflow.active_run() is None
    if own_run:
        mlflow.start_run(run_name="training_set")
    try:
        with warnings.catch_warnings():  # MLflow's hint about integer columns and NaN: the model takes floats
            warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
            mlflow.log_input(dataset, context="training")
        mlflow.set_tags(tags)
    finally:
        if own_run:
            mlflow.end_run()
    pdf = df.orderBy("encounter_key").toPandas()  # a stable row order: same version, same model
    pdf.attrs.update({"delta_path": path, "delta_version": version, "delta_table_id": table_id})
    return pdf


def model_inputs(pdf: pd.DataFrame) -> pd.DataFrame:
    """The feature columns as the model takes them: floats (NaN = missing) and category strings."""

    missing = [c for c in (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES) if c not in pdf.columns]
    if missing:
        raise LakehouseError(f"the training set lacks feature columns {missing}: rebuild the features")
    out = pdf[list(NUMERIC_FEATURES)].astype("float64")
    for col in CATEGORICAL_FEATURES:
        out[col] = pdf[col].fillna("unknown").astype(str)
    return out


def model_requirements() -> list[str]:
    """Pinned from this environment (MLflow's own inference is slow and picks up test tools)."""

    return [f"{name}=={version(name)}" for name in ("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")]


def build_pipeline(c: float, random_state: int) -> Any:
    # deferred: scikit-learn takes ~2.5 s to import (measured); only training uses it
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler


    numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                        ("scale", StandardScaler())])
    categorical = OneHotEncoder(handle_unknown="ignore")
    prep = ColumnTransformer([("num", numeric, list(NUMERIC_FEATURES)),
                              ("cat", categorical, list(CATEGORICAL_FEATURES))])
    model = LogisticRegression(C=c, max_iter=2000, random_state=random_state)
    return Pipeline([("prep", prep), ("model", model)])


def split_by_patient(y: Any, groups: Any, test_size: float, random_state: int) -> tuple[Any, Any]:
    """(train, test) row indices: by patient (the same patient's stays never sit on both sides), stratified by
    outcome (on a few hundred stays an unstratified split may leave a handful of readmissions to test on and the
    AUROC swings): the first fold of ``StratifiedGroupKFold`` with ``round(1 / test_size)`` folds."""
    # deferred: scikit-learn takes ~2.5 s to import (measured); only training uses it
    from sklearn.model_selection import StratifiedGroupKFold

    split = StratifiedGroupKFold(n_splits=max(2, round(1 / test_size)), shuffle=True, random_state=random_state)
    return next(split.split(np.zeros(len(y)), y, groups=groups))


def calibration_table(y_true: Any, y_prob: Any, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Observed vs predicted rate per probability decile (equal-count bins)."""

    frame = pd.DataFrame({"y": np.asarray(y_true, dtype=float), "p": np.asarray(y_prob, dtype=float)})
    n_bins = max(1, min(bins, frame["p"].nunique()))
    frame["bin"] = pd.qcut(frame["p"].rank(method="first"), n_bins, labels=False)
    table = frame.groupby("bin").agg(n=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean"),
                                     p_min=("p", "min"), p_max=("p", "max")).reset_index()
    return table


def train(settings: Settings, label: str = DEFAULT_LABEL, as_of_version: int | None = None,
          test_size: float = 0.25, random_state: int = 42, c: float = 1.0,
          register: bool = True) -> dict[str, Any]:
    """Train, evaluate and log a logistic regression for 30-day readmission; register it as ``readmission_30d``."""
    # deferred: mlflow takes 4-8 s to import here (measured); only training and feature logging use it
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.metrics import brier_score_loss, roc_auc_score

    experiment_id = use_tracking(settings)
    with mlflow.start_run(run_name="train_readmission_30d") as active:
        pdf = training_set(settings, label=label, as_of_version=as_of_version)
        # a censored stay (under 30 days of data after discharge, no readmission yet) has no outcome to learn
        censored = int(pdf[label].isna().sum())
        pdf = pdf[pdf[label].notna()].reset_index(drop=True)
        mlflow.log_metric("censored_rows", censored)
        y = pdf[label].astype(int).to_numpy()
        if len(pdf) < 10 or len(set(y)) < 2:
            raise LakehouseError(f"cannot train on {len(pdf)} encounters with label values {sorted(set(y))}: "
                                 "need at least 10 encounters and both outcomes")
        x = model_inputs(pdf)
        train_idx, test_idx = split_by_patient(y, pdf["patient_key"], test_size, random_state)
        if len(set(y[train_idx])) < 2:
            raise LakehouseError("the training split has only one outcome; add data or change --test-size")
        pipeline = build_pipeline(c, random_state).fit(x.iloc[train_idx], y[train_idx])
        prob = pipeline.predict_proba(x.iloc[test_idx])[:, 1]
        y_test = y[test_idx]
        auroc = float(roc_auc_score(y_test, prob)) if len(set(y_test)) == 2 else math.nan
        metrics = {
            "auroc": auroc, "brier_score": float(brier_score_loss(y_test, prob)),
            "test_rows": float(len(test_idx)), "train_rows": float(len(train_idx)),
            "test_positive_rate": float(np.mean(y_test)), "mean_predicted": float(np.mean(prob)),
        }
        if math.isnan(auroc):
            log.warning("the test split has one outcome only: AUROC is undefined (logged as NaN)")
        params = {"model": "LogisticRegression", "C": c, "random_state": random_state, "test_size": test_size,
                  "label": label, "feature_table": FEATURE_TABLE, "delta_version": pdf.attrs["delta_version"],
                  "rows": len(pdf), "split": "StratifiedGroupKFold(patient_key), first fold",
                  "imputation": "median + missing indicator", "scaling": "standard"}
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        calibration = calibration_table(y_test, prob)
        mlflow.log_table(calibration, artifact_file="calibration.json")
        mlflow.log_text(calibration.to_csv(index=False), "calibration.csv")
        signature = infer_signature(x.iloc[train_idx], pipeline.predict_proba(x.iloc[train_idx]))
        info = mlflow.sklearn.log_model(
            pipeline, name="model", signature=signature, input_example=x.iloc[train_idx].head(5),
            pyfunc_predict_fn="predict_proba",  # serve risks, not 0/1 at an arbitrary threshold
            skops_trusted_types=["numpy.dtype"],  # OneHotEncoder's dtype; skops (the safe format) asks to allow it
            pip_requirements=model_requirements(),
            registered_model_name=MODEL_NAME if register else None,
        )
        result = {
            "run_id": active.info.run_id, "experiment_id": experiment_id, "model_uri": info.model_uri,
            "registered_model": MODEL_NAME if register else None,
            "model_version": getattr(info, "registered_model_version", None),
            "delta_version": pdf.attrs["delta_version"], "rows": len(pdf), "metrics": metrics,
            "tracking_uri": tracking_uri(settings),
        }
    log.info("trained %s", json.dumps(result, default=str))
    return result


def mlflow_ui_hint(settings: Settings) -> str:
    return f"mlflow ui --backend-store-uri {tracking_uri(settings)}"



def train_job(settings: Settings, run: Any, as_of_version: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """``train`` recorded in the run log: the feature table version read and the model's metrics."""
    result = train(settings, as_of_version=as_of_version, **kwargs)
    run.read(FEATURE_TABLE, result["delta_version"], result["rows"])
    for name, value in result["metrics"].items():
        run.metric(f"model.{name}", None if isinstance(value, float) and math.isnan(value) else value)
    run.metric("model.run_id", result["run_id"])
    run.metric("model.version", result["model_version"])
    return result
