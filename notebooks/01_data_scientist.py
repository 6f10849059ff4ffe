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
# # Exploring the clinical lakehouse (data scientists)
#
# Silver holds de-identified, coded, harmonized clinical data (one table per domain); Gold holds the star schema
# and marts built by dbt. Everything is a Delta table you query with PySpark. The session comes from
# `lakehouse.engine.get_spark()`: on a laptop it starts the embedded Sail engine; with
# `LAKEHOUSE_ENGINE=connect` it attaches to a Spark Connect cluster (Databricks, Spark 4). Set `LAKEHOUSE_ROOT`
# to the lakehouse you want to explore (`make demo` builds one).

# %%
import matplotlib.pyplot as plt
import pandas as pd
from pyspark.sql import functions as F

from gold.features import INPATIENT_CLASSES
from lakehouse.catalog import Catalog
from lakehouse.config import get_settings
from lakehouse.engine import get_spark
from lakehouse.status import table_status

settings = get_settings()
spark = get_spark(settings)
catalog = Catalog(spark, settings)
print("lakehouse:", settings.root_path)

# %% [markdown]
# ## What is in the lakehouse
# Every table with its rows and current Delta version (read from the Delta logs, no query needed).

# %%
status = pd.DataFrame(table_status(settings))
status[status["layer"].isin(["silver", "gold"])][["layer", "table", "rows", "version"]]

# %% [markdown]
# ## Silver: patients and encounters
# Keys are pseudonyms, ZIPs are ZIP3 and dates follow the de-identification policy.

# %%
patients = spark.table("silver.patient")
encounters = spark.table("silver.encounter")
patients.groupBy("gender").count().orderBy(F.desc("count")).show()
encounters.groupBy("encounter_class").count().orderBy(F.desc("count")).show()

# %% [markdown]
# ## A cohort: inpatients aged 65+ at admission with heart failure (ICD-10-CM I50.*)
# Written in SQL over the Silver tables; the same query runs unchanged on a Spark cluster.

# %%
classes = ", ".join(f"'{c}'" for c in INPATIENT_CLASSES)
cohort = spark.sql(f"""
    WITH inpatient AS (
        SELECT e.encounter_key, e.patient_key, e.admit_at, e.discharge_at,
               (unix_timestamp(e.discharge_at) - unix_timestamp(e.admit_at)) / 86400.0 AS los_days,
               coalesce(floor(months_between(e.admit_at, CAST(p.birth_date AS TIMESTAMP)) / 12),
                        year(e.admit_at) - p.birth_year, CASE WHEN p.is_age_90_plus THEN 90 END) AS age
        FROM silver.encounter e JOIN silver.patient p ON p.patient_key = e.patient_key
        WHERE upper(e.encounter_class) IN ({classes}) AND e.discharge_at >= e.admit_at
    ),
    heart_failure AS (
        SELECT DISTINCT patient_key FROM silver.condition WHERE icd10cm_code LIKE 'I50%'
    )
    SELECT i.*, (h.patient_key IS NOT NULL AND i.age >= 65) AS in_cohort
    FROM inpatient i LEFT JOIN heart_failure h ON h.patient_key = i.patient_key
""")
summary = cohort.groupBy("in_cohort").agg(
    F.count("*").alias("stays"), F.countDistinct("patient_key").alias("patients"),
    F.round(F.avg("los_days"), 2).alias("mean_los_days"),
).orderBy("in_cohort")
summary.show()

# %% [markdown]
# ## Length of stay: cohort vs all other inpatient stays
# Only the final, small result is collected to pandas for plotting.

# %%
los = cohort.select("in_cohort", F.round("los_days", 1).alias("los_days")).toPandas()
fig, ax = plt.subplots(figsize=(7, 3.5))
for flag, label in ((False, "other inpatient stays"), (True, "65+ with heart failure")):
    values = los.loc[los["in_cohort"] == flag, "los_days"]
    if len(values):
        ax.hist(values, bins=20, alpha=0.6, label=f"{label} (n={len(values)})", density=True)
ax.set_xlabel("length of stay (days)")
ax.set_ylabel("density")
ax.legend()
plt.show()

# %% [markdown]
# ## Gold
# dbt builds the star schema and marts. Each Gold table is a Delta table: query it like any other.

# %%
gold_tables = [f"{r['layer']}.{r['table']}" for r in table_status(settings) if r["layer"] == "gold"]
print(gold_tables)
for name in ("gold.mart_readmission_30d", "gold.fct_encounter", "gold.dim_patient"):
    if name in gold_tables:
        spark.table(name).limit(5).show(truncate=40)
