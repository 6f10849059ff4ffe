{# dim_department key of a department name: trimmed and upper-cased; a missing or blank name is 'UNKNOWN'. #}
{% macro department_key(department_name) -%}
    coalesce(nullif(upper(trim({{ department_name }})), ''), 'UNKNOWN')
{%- endmacro %}
