{{ config(unique_key='practitioner_key') }}

-- Practitioners from Silver plus inferred members for keys that facts reference but Silver lacks,
-- so every fact's practitioner_key resolves (referential integrity without dropping facts).
with referenced as (
    select practitioner_key from {{ ref('stg_encounter') }} where practitioner_key is not null
    union
    select practitioner_key from {{ ref('stg_medication_request') }} where practitioner_key is not null
)

select
    p.practitioner_key,
    p.gender,
    p.specialty_code,
    p.specialty_display,
    false as is_inferred
from {{ ref('stg_practitioner') }} as p
union all
select
    r.practitioner_key,
    cast(null as string),
    cast(null as string),
    cast(null as string),
    true
from referenced as r
left anti join {{ ref('stg_practitioner') }} as p on p.practitioner_key = r.practitioner_key
