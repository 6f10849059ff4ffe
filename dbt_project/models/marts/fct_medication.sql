{{ config(unique_key='medication_request_key') }}

select
    m.medication_request_key,
    m.patient_key,
    pv.patient_sk,
    m.encounter_key,
    m.practitioner_key,
    case when m.rxnorm_code is not null
         then {{ code_key("'http://www.nlm.nih.gov/research/umls/rxnorm'", 'm.rxnorm_code') }}
         else {{ code_key('m.code_system_original', 'm.code_original') }} end   as code_key,
    m.rxnorm_code,
    m.display,
    m.medication_status,
    m.intent,
    m.dosage_text,
    m.authored_at,
    {{ date_key('m.authored_at') }}                            as authored_date_key,
    m.silver_updated_at
from {{ ref('stg_medication_request') }} as m
{{ patient_version_join('m', 'm.authored_at') }}
