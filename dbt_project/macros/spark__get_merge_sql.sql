{#
  Change-only MERGE for incremental models (overrides dbt-spark's spark__get_merge_sql).

  dbt-spark's default merge rewrites every matched row ("update set *"), which makes a new Delta version
  on every run. Here a matched row is updated only when some column differs (null-safe), new keys are
  inserted and, with `merge_delete_missing: true` (models that select their full content each run), keys
  the model no longer produces are deleted. When nothing differs the MERGE touches no file, and Delta
  (Sail, Spark and Databricks alike) commits no new version: a re-run on unchanged Silver changes no
  Gold row and no Gold version.
#}
{% macro spark__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) %}
  {%- set dest_columns = adapter.get_columns_in_relation(target) -%}
  {%- set delete_missing = config.get('merge_delete_missing', false) -%}
  {%- if unique_key is none -%}
    {{ exceptions.raise_compiler_error("merge needs a unique_key on " ~ target) }}
  {%- endif -%}
  {%- set keys = [unique_key] if unique_key is string else unique_key -%}
  {%- if delete_missing and incremental_predicates -%}
    {{ exceptions.raise_compiler_error("merge_delete_missing cannot be combined with incremental_predicates on " ~ target) }}
  {%- endif -%}
  {%- set predicates = [] if incremental_predicates is none else [] + incremental_predicates -%}
  {%- for key in keys -%}
    {%- do predicates.append("DBT_INTERNAL_DEST." ~ adapter.quote(key) ~ " <=> DBT_INTERNAL_SOURCE." ~ adapter.quote(key)) -%}
  {%- endfor -%}
  {%- set compared = [] -%}
  {%- for column in dest_columns if column.name not in keys -%}
    {%- do compared.append(column.quoted) -%}
  {%- endfor %}

  merge into {{ target }} as DBT_INTERNAL_DEST
  using {{ source }} as DBT_INTERNAL_SOURCE
  on {{ predicates | join(' and ') }}
  {%- if compared %}
  when matched and (
    {%- for col in compared %}
      not (DBT_INTERNAL_DEST.{{ col }} <=> DBT_INTERNAL_SOURCE.{{ col }}){{ ' or' if not loop.last }}
    {%- endfor %}
  ) then update set
    {%- for col in compared %}
      {{ col }} = DBT_INTERNAL_SOURCE.{{ col }}{{ ',' if not loop.last }}
    {%- endfor %}
  {%- endif %}
  when not matched then insert (
    {%- for column in dest_columns %}{{ column.quoted }}{{ ', ' if not loop.last }}{% endfor -%}
  ) values (
    {%- for column in dest_columns %}DBT_INTERNAL_SOURCE.{{ column.quoted }}{{ ', ' if not loop.last }}{% endfor -%}
  )
  {%- if delete_missing %}
  when not matched by source then delete
  {%- endif %}
{% endmacro %}
