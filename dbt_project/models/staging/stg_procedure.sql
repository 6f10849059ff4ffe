select
    cast(procedure_key as string)          as procedure_key,
    cast(patient_key as string)            as patient_key,
    cast(encounter_key as string)          as encounter_key,
    cast(code as string)                   as code,
    cast(code_system as string)            as code_system,
    cast(display as string)                as display,
    cast(snomed_code as string)            as snomed_code,
    cast(status as string)                 as procedure_status,
    cast(performed_start as timestamp)     as performed_start_at,
    cast(performed_end as timestamp)       as performed_end_at,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'procedure') }}
