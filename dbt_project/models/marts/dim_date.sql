{{ config(unique_key='date_key') }}

-- One row per day from the configured span (ref_date_spine), stretched to cover every fact date; the days of the
-- facts are the facility's local days (var facility_timezone, macros/date_key.sql), as the facts' date keys are.
with fact_dates as (
    select {{ local_day('admitted_at') }} as d from {{ ref('stg_encounter') }}
    union all select {{ local_day('discharged_at') }} from {{ ref('stg_encounter') }}
    union all select {{ local_day('effective_at') }} from {{ ref('stg_observation') }}
    union all select {{ local_day('coalesce(onset_at, recorded_at)') }} from {{ ref('stg_condition') }}
    union all select {{ local_day('authored_at') }} from {{ ref('stg_medication_request') }}
    union all select {{ local_day('performed_start_at') }} from {{ ref('stg_procedure') }}
    union all select {{ local_day('started_at') }} from {{ ref('stg_imaging_study') }}
),

bounds as (
    select
        least(min(c.spine_start), coalesce(min(f.d), min(c.spine_start)))   as first_day,
        greatest(max(c.spine_end), coalesce(max(f.d), max(c.spine_end)))    as last_day
    from {{ ref('ref_date_spine') }} as c
    cross join (select min(d) as d from fact_dates union all select max(d) from fact_dates) as f
),

days as (
    select explode(sequence(first_day, last_day, interval 1 day)) as date_day
    from bounds
)

select
    {{ day_key('date_day') }}               as date_key,
    date_day,
    year(date_day)                           as year,
    quarter(date_day)                        as quarter,
    month(date_day)                          as month,
    date_format(date_day, 'MMMM')            as month_name,
    date_format(date_day, 'yyyy-MM')         as year_month,
    dayofmonth(date_day)                     as day_of_month,
    dayofweek(date_day)                      as day_of_week,
    date_format(date_day, 'EEEE')            as day_name,
    weekofyear(date_day)                     as week_of_year,
    dayofweek(date_day) in (1, 7)            as is_weekend
from days
