"""Airflow DAG: the same pipeline steps as the Databricks job, each one ``lakehouse`` CLI call (BashOperator).

Drop this file into the Airflow ``dags/`` folder of an environment where the project is installed. Settings come
from the environment of the worker (``LAKEHOUSE_ROOT``, ``LAKEHOUSE_ENGINE``, ...) or the Airflow Variable
``lakehouse_root``. Airflow is optional: without it this module imports and ``dag`` is None.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta
from typing import Any

from jobs.run import STEPS

DAG_ID = "clinical_lakehouse"
ROOT_TEMPLATE = "{{ var.value.get('lakehouse_root', '') or '${LAKEHOUSE_ROOT:-./lakehouse}' }}"

# step -> CLI command; --json keeps the task log machine-readable. `report html` runs last, after train.
COMMANDS: dict[str, str] = {step: f"lakehouse --root \"{ROOT_TEMPLATE}\" {step} --json" for step in STEPS}
COMMANDS["report"] = f"lakehouse --root \"{ROOT_TEMPLATE}\" report html"
ORDER: tuple[str, ...] = (*STEPS, "report")


def build_dag() -> Any:
    # deferred: Airflow is optional
    from airflow import DAG

    try:
        from airflow.providers.standard.operators.bash import BashOperator  # Airflow 3
    except ImportError:
        from airflow.operators.bash import BashOperator  # Airflow 2

    with DAG(
        dag_id=DAG_ID,
        description="HL7 v2 / FHIR / DICOM -> Bronze -> Silver -> Gold -> features -> model",
        schedule="@daily",
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
        tags=["clinical-lakehouse"],
    ) as dag:
        previous = None
        for step in ORDER:
            task = BashOperator(task_id=step, bash_command=COMMANDS[step])
            if previous is not None:
                previous >> task
            previous = task
    return dag


dag = build_dag() if importlib.util.find_spec("airflow") is not None else None
