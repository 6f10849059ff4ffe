{{ config(unique_key='department_key') }}

-- Reference departments plus every department name seen on encounters (upper-cased, trimmed).
with seen as (
    select department_key, min(department_name) as department_name
    from {{ ref('int_encounters_readmissions') }}
    group by department_key
)

select
    coalesce(r.department_key, s.department_key)       as department_key,
    coalesce(r.department_name, s.department_name, 'Unknown') as department_name,
    coalesce(r.service_line, 'Unassigned')             as service_line,
    r.department_key is not null                       as is_in_reference
from {{ ref('ref_departments') }} as r
full outer join seen as s on s.department_key = r.department_key
