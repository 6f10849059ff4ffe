{{ config(unique_key=['patient_key', 'vital_date']) }}

-- Vital signs per patient and facility-local day (var facility_timezone); empty under the safe_harbor profile. Only values in the canonical unit of ref_vital_signs count: a value
-- Silver could not convert keeps its original unit and is left out here (it stays in fct_observation).
select
    o.patient_key,
    {{ local_day('o.effective_at') }}                      as vital_date,
    {{ date_key('o.effective_at') }}                       as vital_date_key,
    count(*)                                               as measurement_count,
    round(avg(case when v.vital_sign = 'heart_rate' then o.value_num end), 4) as heart_rate_mean,
    min(case when v.vital_sign = 'heart_rate' then o.value_num end) as heart_rate_min,
    max(case when v.vital_sign = 'heart_rate' then o.value_num end) as heart_rate_max,
    round(avg(case when v.vital_sign = 'systolic_bp' then o.value_num end), 4) as systolic_bp_mean,
    min(case when v.vital_sign = 'systolic_bp' then o.value_num end) as systolic_bp_min,
    max(case when v.vital_sign = 'systolic_bp' then o.value_num end) as systolic_bp_max,
    round(avg(case when v.vital_sign = 'diastolic_bp' then o.value_num end), 4) as diastolic_bp_mean,
    min(case when v.vital_sign = 'diastolic_bp' then o.value_num end) as diastolic_bp_min,
    max(case when v.vital_sign = 'diastolic_bp' then o.value_num end) as diastolic_bp_max,
    round(avg(case when v.vital_sign = 'temperature' then o.value_num end), 4) as temperature_mean,
    min(case when v.vital_sign = 'temperature' then o.value_num end) as temperature_min,
    max(case when v.vital_sign = 'temperature' then o.value_num end) as temperature_max,
    round(avg(case when v.vital_sign = 'spo2' then o.value_num end), 4) as spo2_mean,
    min(case when v.vital_sign = 'spo2' then o.value_num end) as spo2_min,
    max(case when v.vital_sign = 'spo2' then o.value_num end) as spo2_max,
    round(avg(case when v.vital_sign = 'glucose' then o.value_num end), 4) as glucose_mean,
    min(case when v.vital_sign = 'glucose' then o.value_num end) as glucose_min,
    max(case when v.vital_sign = 'glucose' then o.value_num end) as glucose_max
from {{ ref('fct_observation') }} as o
join {{ ref('ref_vital_signs') }} as v
  on v.loinc_code = o.loinc_code and v.canonical_unit = o.unit
where o.value_num is not null and o.effective_at is not null
  -- a day is not known under safe_harbor (dates carry the year only): the mart is empty rather than one row
  -- per patient on 1 January (see its description and `lakehouse status`)
  and '{{ var("deid_profile", "expert_determination") }}' = 'expert_determination'
group by 1, 2, 3
