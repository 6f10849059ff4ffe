select
    cast(practitioner_key as string)       as practitioner_key,
    cast(gender as string)                 as gender,
    cast(specialty_code as string)         as specialty_code,
    cast(specialty_display as string)      as specialty_display,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'practitioner') }}
