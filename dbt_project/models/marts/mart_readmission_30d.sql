{{ config(unique_key=['discharge_month', 'department_key']) }}

-- 30-day readmissions by discharge month and department (index = discharged inpatient encounter). Under the
-- safe_harbor profile dates carry the year only: the rows are per discharge YEAR (period_grain says which).
{% set grain = 'year' if var('deid_profile', 'expert_determination') == 'safe_harbor' else 'month' %}
select
    cast(date_trunc('{{ grain | upper }}', f.discharged_at) as date) as discharge_month,
    date_format(f.discharged_at, '{{ "yyyy" if grain == "year" else "yyyy-MM" }}') as year_month,
    '{{ grain }}'                                          as period_grain,
    f.department_key,
    count(*)                                               as index_discharges,
    sum(case when f.readmitted_within_30d then 1 else 0 end) as readmissions_30d,
    round(cast(sum(case when f.readmitted_within_30d then 1 else 0 end) as double) / count(*), 6) as readmission_rate
from {{ ref('fct_encounter') }} as f
where f.is_index_admission
group by 1, 2, 3, 4
