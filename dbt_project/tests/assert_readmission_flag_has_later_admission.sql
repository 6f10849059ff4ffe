-- Every encounter flagged readmitted_within_30d is an inpatient discharge followed by another inpatient
-- admission of the same patient within the window.
select f.encounter_key
from {{ ref('fct_encounter') }} as f
where f.readmitted_within_30d
  and not exists (
      select 1
      from {{ ref('fct_encounter') }} as r
      where r.patient_key = f.patient_key
        and r.encounter_class_group = 'inpatient'
        and r.encounter_key <> f.encounter_key
        and r.admitted_at > f.discharged_at
        and {{ seconds_between('f.discharged_at', 'r.admitted_at') }} <= {{ var('readmission_window_days') }} * 86400
  )
