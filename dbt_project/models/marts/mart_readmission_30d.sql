{{ config(unique_key=['discharge_month', 'department_key']) }}

-- 30-day readmissions by discharge month and department, under the one readmission definition of
-- int_encounters_readmissions (index stays exclude deaths, discharges against advice and transfers out; transfer
-- chains are one episode; planned readmissions do not count). A censored index stay (under 30 days of data after
-- its discharge and no readmission yet) is counted in censored_discharges, never in the rate. Under the
-- expert_determination profile dates are shifted per patient (up to max_shift_days either way), so a month
-- holds the discharges whose SHIFTED date falls in it; under safe_harbor dates carry the year only and the rows
-- are per discharge YEAR (period_grain says which).
{% set grain = 'year' if var('deid_profile', 'expert_determination') == 'safe_harbor' else 'month' %}
select
    cast(date_trunc('{{ grain | upper }}', {{ local_day('f.discharged_at') }}) as date) as discharge_month,
    date_format({{ local_day('f.discharged_at') }}, '{{ "yyyy" if grain == "year" else "yyyy-MM" }}') as year_month,
    '{{ grain }}'                                          as period_grain,
    f.department_key,
    count(f.readmitted_within_30d)                         as index_discharges,
    sum(case when f.readmitted_within_30d then 1 else 0 end) as readmissions_30d,
    round(cast(sum(case when f.readmitted_within_30d then 1 else 0 end) as double)
          / nullif(count(f.readmitted_within_30d), 0), 6)  as readmission_rate,
    sum(case when f.is_censored then 1 else 0 end)         as censored_discharges
from {{ ref('fct_encounter') }} as f
where f.is_index_admission
group by 1, 2, 3, 4
