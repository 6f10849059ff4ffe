{# Surrogate key of a coded value: md5 of "<code_system>|<code>" (null when the code is null); used by dim_code and
   every fact's code_key, so the same (system, code) gets the same key everywhere. Portable Spark SQL. #}
{% macro code_key(code_system, code) -%}
    case when {{ code }} is null then null
         else md5(concat(coalesce({{ code_system }}, ''), '|', {{ code }})) end
{%- endmacro %}
