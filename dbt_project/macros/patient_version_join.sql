{# Join a fact CTE to the dim_patient row valid at `ts` (valid_from inclusive, valid_to exclusive). #}
{% macro patient_version_join(fact_alias, ts, dim_alias='pv') -%}
    left join {{ ref('int_patient_validity') }} as {{ dim_alias }}
      on  {{ dim_alias }}.patient_key = {{ fact_alias }}.patient_key
      and {{ scd_lookup_at(ts) }} >= {{ dim_alias }}.valid_from
      and {{ scd_lookup_at(ts) }} <  {{ dim_alias }}.valid_to
{%- endmacro %}
