{{ config(unique_key=['discharge_month', 'department_key']) }}

-- Inpatient length of stay (days) by department and discharge month, over every discharged inpatient stay
-- (deaths and transfers included: length of stay is not the readmission population). Lengths come from Silver's durations (true
-- times), so they are the same under both profiles; under safe_harbor the rows are per discharge YEAR
-- (period_grain says which).
{% set grain = 'year' if var('deid_profile', 'expert_determination') == 'safe_harbor' else 'month' %}
select
    f.department_key,
    cast(date_trunc('{{ grain | upper }}', {{ local_day('f.discharged_at') }}) as date) as discharge_month,
    date_format({{ local_day('f.discharged_at') }}, '{{ "yyyy" if grain == "year" else "yyyy-MM" }}') as year_month,
    '{{ grain }}'                                          as period_grain,
    count(*)                                               as discharges,
    round(sum(f.length_of_stay_days), 4)                   as total_los_days,
    round(avg(f.length_of_stay_days), 4)                   as avg_los_days,
    round(percentile(f.length_of_stay_days, 0.5), 4)       as median_los_days,
    round(min(f.length_of_stay_days), 4)                   as min_los_days,
    round(max(f.length_of_stay_days), 4)                   as max_los_days
from {{ ref('fct_encounter') }} as f
where f.is_discharged_inpatient_stay and f.length_of_stay_days is not null
group by 1, 2, 3, 4
