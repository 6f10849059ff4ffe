-- Every encounter flagged readmitted_within_30d is an inpatient discharge followed by another inpatient
-- admission of the same patient within the window. Measured on Silver's offsets (seconds from the patient's
-- first admission, from the true times): published dates are shifted or reduced to the year (safe_harbor).
select f.encounter_key
from {{ ref('int_encounters_readmissions') }} as f
where f.readmitted_within_30d
  and not exists (
      select 1
      from {{ ref('int_encounters_readmissions') }} as r
      where r.patient_key = f.patient_key
        and r.encounter_class_group = 'inpatient'
        and r.encounter_key <> f.encounter_key
        and r.admit_offset_seconds > f.discharge_offset_seconds
        and r.admit_offset_seconds - f.discharge_offset_seconds <= {{ var('readmission_window_days') }} * 86400
  )
