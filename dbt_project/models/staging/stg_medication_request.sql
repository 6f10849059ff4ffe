select
    cast(medication_request_key as string) as medication_request_key,
    cast(patient_key as string)            as patient_key,
    cast(encounter_key as string)          as encounter_key,
    cast(rxnorm_code as string)            as rxnorm_code,
    cast(code_original as string)          as code_original,
    cast(code_system_original as string)   as code_system_original,
    cast(display as string)                as display,
    cast(is_mapped as boolean)             as is_mapped,
    cast(status as string)                 as medication_status,
    cast(intent as string)                 as intent,
    cast(authored_at as timestamp)         as authored_at,
    cast(practitioner_key as string)       as practitioner_key,
    cast(dosage_text as string)            as dosage_text,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'medication_request') }}
