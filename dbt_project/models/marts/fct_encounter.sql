{{ config(unique_key='encounter_key') }}

select
    e.encounter_key,
    e.patient_key,
    pv.patient_sk,
    e.department_key,
    e.organization_key,
    e.practitioner_key,
    {{ code_key('e.type_system', 'e.type_code') }}       as encounter_type_code_key,
    e.encounter_class,
    e.encounter_class_group,
    e.encounter_status,
    e.admitted_at,
    e.discharged_at,
    {{ date_key('e.admitted_at') }}                        as admit_date_key,
    {{ date_key('e.discharged_at') }}                      as discharge_date_key,
    e.length_of_stay_days,
    e.length_of_stay_hours,
    e.stay_sequence,
    e.days_since_previous_discharge,
    e.admit_source,
    e.discharge_disposition,
    e.age_at_admission,
    coalesce(ab.age_band, 'unknown')                       as age_band_at_admission,
    e.is_index_admission,
    e.next_inpatient_admitted_at,
    e.days_to_next_admission,
    e.readmitted_within_30d,
    e.silver_updated_at
from {{ ref('int_encounters_readmissions') }} as e
{{ patient_version_join('e', 'e.admitted_at') }}
{{ age_band_join('e.age_at_admission', 'e.age_at_admission >= 90') }}
