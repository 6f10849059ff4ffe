{#
  Calendar days are the facility's local days (var facility_timezone, an IANA zone from the lakehouse setting of
  the same name; UTC by default): a result at 23:30 in New York (04:30 UTC the next day) belongs to the day it
  happened on the ward. Timestamps are stored in UTC; only the day is local.
#}

{# The facility's local calendar day of a UTC timestamp, as a DATE; null stays null. Under safe_harbor a published
   time is 1 January 00:00 UTC of its year, a year and not an instant: it is never moved to another day (or year). #}
{% macro local_day(ts) -%}
    {%- if var("deid_profile", "expert_determination") == "safe_harbor" -%}
    cast({{ ts }} as date)
    {%- else -%}
    cast(from_utc_timestamp({{ ts }}, '{{ var("facility_timezone", "UTC") }}') as date)
    {%- endif -%}
{%- endmacro %}

{# dim_date key of a UTC timestamp: its facility-local calendar day as an int yyyymmdd (e.g. 20240131). #}
{% macro date_key(ts) -%}
    {{ day_key(local_day(ts)) }}
{%- endmacro %}

{# dim_date key of a DATE (already a calendar day, never shifted by a time zone). #}
{% macro day_key(d) -%}
    cast(date_format({{ d }}, 'yyyyMMdd') as int)
{%- endmacro %}
