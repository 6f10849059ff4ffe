{{ config(unique_key='procedure_key') }}

select
    p.procedure_key,
    p.patient_key,
    pv.patient_sk,
    p.encounter_key,
    {{ code_key('p.code_system', 'p.code') }}                  as code_key,
    p.code,
    p.code_system,
    p.display,
    p.snomed_code,
    p.procedure_status,
    p.performed_start_at,
    p.performed_end_at,
    case when p.performed_end_at >= p.performed_start_at
         then round({{ seconds_between('p.performed_start_at', 'p.performed_end_at') }} / 60.0, 2) end
                                                               as duration_minutes,
    {{ date_key('p.performed_start_at') }}                     as performed_date_key,
    p.silver_updated_at
from {{ ref('stg_procedure') }} as p
{{ patient_version_join('p', 'p.performed_start_at') }}
