select
    cast(immunization_key as string)       as immunization_key,
    cast(patient_key as string)            as patient_key,
    cast(encounter_key as string)          as encounter_key,
    cast(cvx_code as string)               as cvx_code,
    cast(display as string)                as display,
    cast(status as string)                 as immunization_status,
    cast(occurrence_at as timestamp)       as occurred_at,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'immunization') }}
