select
    cast(diagnostic_report_key as string)  as diagnostic_report_key,
    cast(patient_key as string)            as patient_key,
    cast(encounter_key as string)          as encounter_key,
    cast(code as string)                   as code,
    cast(code_system as string)            as code_system,
    cast(display as string)                as display,
    cast(category as string)               as category,
    cast(status as string)                 as report_status,
    cast(effective_at as timestamp)        as effective_at,
    cast(issued_at as timestamp)           as issued_at,
    cast(result_count as int)              as result_count,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'diagnostic_report') }}
