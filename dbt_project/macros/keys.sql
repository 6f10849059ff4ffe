{# Surrogate keys and lookups shared by the Gold models (portable Spark SQL). #}

{% macro code_key(code_system, code) -%}
    case when {{ code }} is null then null
         else md5(concat(coalesce({{ code_system }}, ''), '|', {{ code }})) end
{%- endmacro %}

{% macro date_key(ts) -%}
    cast(date_format({{ ts }}, 'yyyyMMdd') as int)
{%- endmacro %}

{% macro department_key(department_name) -%}
    coalesce(nullif(upper(trim({{ department_name }})), ''), 'UNKNOWN')
{%- endmacro %}

{# Seconds between two timestamps as a double; portable (no RANGE/INTERVAL arithmetic on DATE, see DESIGN.md). #}
{% macro seconds_between(start_ts, end_ts) -%}
    cast(unix_timestamp({{ end_ts }}) - unix_timestamp({{ start_ts }}) as double)
{%- endmacro %}

{# The instant used to find the patient version valid at a fact's time; an unknown time takes the current row. #}
{% macro scd_lookup_at(ts) -%}
    coalesce({{ ts }}, to_timestamp('{{ var("scd_high_date") }}') - interval 1 second)
{%- endmacro %}

{# Join a fact CTE to the dim_patient row valid at `ts` (valid_from inclusive, valid_to exclusive). #}
{% macro patient_version_join(fact_alias, ts, dim_alias='pv') -%}
    left join {{ ref('int_patient_validity') }} as {{ dim_alias }}
      on  {{ dim_alias }}.patient_key = {{ fact_alias }}.patient_key
      and {{ scd_lookup_at(ts) }} >= {{ dim_alias }}.valid_from
      and {{ scd_lookup_at(ts) }} <  {{ dim_alias }}.valid_to
{%- endmacro %}
