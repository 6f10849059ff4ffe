{#
  Seed loading (overrides dbt-spark, with spark__reset_csv_table and spark__create_csv_table): seeds on Delta
  with a fixed location, loaded so that an unchanged CSV writes no new Delta version.

  dbt-spark drops an existing seed table and runs `create table ... location` + `insert`. Dropping an external
  table keeps its files, so the re-created table would still hold the old rows and the insert would append
  duplicates (Sail; Spark/Databricks refuse the non-empty location instead). Here:
  * a new table (or --full-refresh) is created with `create or replace table` (one Delta commit);
  * the CSV rows go to a temporary view, and a MERGE on all columns (null-safe) inserts new rows and deletes
    rows no longer in the CSV; an unchanged CSV matches every row and Delta commits nothing.
  Changing a seed's columns needs `--full-refresh` (the MERGE then fails with a clear column error).
#}
{% macro spark__load_csv_rows(model, agate_table) %}
  {%- set column_override = model['config'].get('column_types', {}) -%}
  {%- set quote_seed_column = model['config'].get('quote_columns', None) -%}
  {%- set source_view = this.identifier ~ '__dbt_seed' -%}
  {%- set cols = [] -%}
  {%- for col_name in agate_table.column_names -%}
    {%- do cols.append(adapter.quote_seed_column(col_name | string, quote_seed_column)) -%}
  {%- endfor -%}
  {% set bindings = [] %}
  {% for row in agate_table.rows %}
    {% do bindings.extend(row) %}
  {% endfor %}
  {% set view_sql %}
    create or replace temporary view {{ source_view }} as
    select * from values
    {% for row in agate_table.rows -%}
      ({%- for col_name in agate_table.column_names -%}
          {%- set type = column_override.get(col_name, adapter.convert_type(agate_table, loop.index0)) -%}
          cast({{ get_binding_char() }} as {{ type }}){%- if not loop.last %}, {% endif -%}
      {%- endfor -%}){%- if not loop.last %},{% endif %}
    {% endfor -%}
    as seed_rows({{ cols | join(', ') }})
  {% endset %}
  {% do adapter.add_query(view_sql, bindings=bindings, abridge_sql_log=True) %}
  {% set merge_sql %}
    merge into {{ this.render() }} as t
    using {{ source_view }} as s
    on {% for col in cols %}t.{{ col }} <=> s.{{ col }}{% if not loop.last %} and {% endif %}{% endfor %}
    when not matched then insert ({{ cols | join(', ') }})
      values ({% for col in cols %}s.{{ col }}{% if not loop.last %}, {% endif %}{% endfor %})
    when not matched by source then delete
  {% endset %}
  {% do adapter.add_query(merge_sql, auto_begin=False) %}
  {% do adapter.add_query('drop view if exists ' ~ source_view, auto_begin=False) %}
  {{ return(view_sql ~ ';\n' ~ merge_sql) }}
{% endmacro %}
