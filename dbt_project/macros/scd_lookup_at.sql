{# The instant used to find the patient version valid at a fact's time; an unknown time takes the current row. #}
{% macro scd_lookup_at(ts) -%}
    coalesce({{ ts }}, to_timestamp('{{ var("scd_high_date") }}') - interval 1 second)
{%- endmacro %}
