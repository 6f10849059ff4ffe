select
    cast(organization_key as string)       as organization_key,
    cast(name as string)                   as organization_name,
    cast(type_code as string)              as type_code,
    cast(type_display as string)           as type_display,
    cast(zip3 as string)                   as zip3,
    cast(state as string)                  as state,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'organization') }}
