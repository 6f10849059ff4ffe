{# dim_date key of a timestamp or date: the UTC calendar day as an int yyyymmdd (e.g. 20240131); null stays null. #}
{% macro date_key(ts) -%}
    cast(date_format({{ ts }}, 'yyyyMMdd') as int)
{%- endmacro %}
