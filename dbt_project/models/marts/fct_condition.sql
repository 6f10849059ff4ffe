{{ config(unique_key='condition_key') }}

select
    c.condition_key,
    c.patient_key,
    pv.patient_sk,
    c.encounter_key,
    {{ code_key('c.code_system', 'c.code') }}           as code_key,
    c.code,
    c.code_system,
    c.display,
    c.icd10cm_code,
    c.snomed_code,
    c.is_icd10cm_valid,
    c.category,
    c.clinical_status,
    c.verification_status,
    c.onset_at,
    c.abatement_at,
    c.recorded_at,
    {{ date_key('coalesce(c.onset_at, c.recorded_at)') }} as onset_date_key,
    c.silver_updated_at
from {{ ref('stg_condition') }} as c
{{ patient_version_join('c', 'coalesce(c.onset_at, c.recorded_at)') }}
