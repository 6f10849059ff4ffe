"""The dbt project of Gold (dbt-spark), shipped inside the wheel as package data: ``gold.dbt_runner`` finds it
through the package, so an installed lakehouse needs no checkout."""
