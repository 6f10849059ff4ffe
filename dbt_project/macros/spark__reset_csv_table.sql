{#
  Seed reload, step 1 (overrides dbt-spark): keep an existing seed table as it is so spark__load_csv_rows can
  MERGE the CSV into it; only --full-refresh re-creates it (spark__create_csv_table).
  Why: see spark__load_csv_rows.sql.
#}
{% macro spark__reset_csv_table(model, full_refresh, old_relation, agate_table) %}
  {% if full_refresh %}
    {{ return(create_csv_table(model, agate_table)) }}
  {% endif %}
  {{ return('') }}
{% endmacro %}
