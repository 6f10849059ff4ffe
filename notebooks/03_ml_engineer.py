# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 30-day readmission: features, training and MLflow (ML engineers)
#
# `gold.features_readmission` has one row per discharged inpatient stay, point-in-time correct: every feature
# uses only data whose effective time is at or before discharge. `training_set()` pins the table's Delta version
# before reading it and logs it as an MLflow dataset input, so each model records exactly which rows it saw.
# Runs and models live in a local MLflow store (`<root>/_system/mlflow/mlflow.db`); open it with `mlflow ui`.

# %%
import mlflow
import pandas as pd

from gold.features import FEATURE_TABLE, LABEL
from gold.training import MODEL_NAME, model_inputs, tracking_uri, training_set, use_tracking
from lakehouse.catalog import Catalog
from lakehouse.config import get_settings
from lakehouse.engine import get_spark
from lakehouse_app import pipeline

settings = get_settings()
catalog = Catalog(get_spark(settings), settings)
if not catalog.exists(FEATURE_TABLE):
    print(pipeline.features(settings))  # build the features from Silver (what `lakehouse features` does)
print(FEATURE_TABLE, "version", catalog.version(FEATURE_TABLE))

# %% [markdown]
# ## Pull the features

# %%
pdf = training_set(settings)
print(len(pdf), "stays; Delta version", pdf.attrs["delta_version"], "; readmission rate", round(pdf[LABEL].mean(), 3))
pdf.drop(columns=["charlson_categories"]).head()

# %% [markdown]
# Missing values are explicit: `<feature>_imputed` is true when a value was carried forward (labs from up to 30
# days before admission; vitals from up to 72 h before discharge when none was taken in the last 24 h).
# A NULL value means nothing was measured in the window; the model imputes it and adds a missing indicator.

# %%
imputed = pdf[[c for c in pdf.columns if c.endswith("_imputed")]].mean().rename("carried forward")
missing = pdf[[c.removesuffix("_imputed") for c in imputed.index]].isna().mean().rename("missing")
pd.concat([imputed, missing.set_axis(imputed.index)], axis=1).round(3)

# %% [markdown]
# ## Train and register
# `pipeline.train` = `lakehouse train`: logistic regression (median imputation + scaling), split by patient,
# AUROC, Brier score and a calibration table logged to MLflow, model registered as `readmission_30d`.
# Re-running on the same table version reproduces the same metrics.

# %%
result = pipeline.train(settings)
result["metrics"]

# %% [markdown]
# ## Look at the MLflow run

# %%
use_tracking(settings)
client = mlflow.MlflowClient()
run = client.get_run(result["run_id"])
print("tracking store:", tracking_uri(settings))
print("params:", {k: run.data.params[k] for k in ("model", "C", "delta_version", "rows", "split")})
print("metrics:", {k: round(v, 4) for k, v in run.data.metrics.items()})
dataset = run.inputs.dataset_inputs[0].dataset
print("trained on:", dataset.name, dataset.source, "digest", dataset.digest)

# %%
calibration_csv = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="calibration.csv")
pd.read_csv(calibration_csv)

# %% [markdown]
# ## Use the registered model

# %%
latest = max(client.search_model_versions(f"name='{MODEL_NAME}'"), key=lambda v: int(v.version))
model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{latest.version}")
risk = model.predict(model_inputs(pdf.head(10)))[:, 1]
pdf.head(10)[["encounter_key", LABEL]].assign(predicted_risk=risk.round(3))

# %% [markdown]
# From a terminal: `mlflow ui --backend-store-uri sqlite:///<root>/_system/mlflow/mlflow.db` shows the
# experiment `readmission_30d`, its runs, the dataset input with its Delta version, and the registered model.
