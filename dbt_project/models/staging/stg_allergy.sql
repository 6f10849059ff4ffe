select
    cast(allergy_key as string)            as allergy_key,
    cast(patient_key as string)            as patient_key,
    cast(code as string)                   as code,
    cast(code_system as string)            as code_system,
    cast(display as string)                as display,
    cast(category as string)               as category,
    cast(criticality as string)            as criticality,
    cast(clinical_status as string)        as clinical_status,
    cast(recorded_at as timestamp)         as recorded_at,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'allergy') }}
