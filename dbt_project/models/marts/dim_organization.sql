{{ config(unique_key='organization_key') }}

select
    o.organization_key,
    o.organization_name,
    o.type_code,
    o.type_display,
    o.zip3,
    o.state,
    false as is_inferred
from {{ ref('stg_organization') }} as o
union all
select distinct
    e.organization_key,
    cast(null as string),
    cast(null as string),
    cast(null as string),
    cast(null as string),
    cast(null as string),
    true
from {{ ref('stg_encounter') }} as e
left anti join {{ ref('stg_organization') }} as o on o.organization_key = e.organization_key
where e.organization_key is not null
