{# Seconds between two timestamps as a double; portable (no RANGE/INTERVAL arithmetic on DATE, see DESIGN.md). #}
{% macro seconds_between(start_ts, end_ts) -%}
    cast(unix_timestamp({{ end_ts }}) - unix_timestamp({{ start_ts }}) as double)
{%- endmacro %}
