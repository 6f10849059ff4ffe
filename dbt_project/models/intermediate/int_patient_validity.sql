-- Patient versions from Silver's patient history (one per change of the de-identified attributes) with closed
-- validity ranges [valid_from, valid_to). The first version of a patient is valid from the beginning of time:
-- facts recorded before the first known change still find a version. History is rebuilt from all of Bronze by
-- every Silver build, so a value suppressed later (90+, a new ZIP3 rule) is gone from every version here.
with versions as (
    select
        h.*,
        row_number() over (partition by h.patient_key order by h.changed_at)  as version_number,
        lead(h.changed_at) over (partition by h.patient_key order by h.changed_at) as next_changed_at
    from {{ ref('stg_patient_history') }} as h
)

select
    sha2(concat_ws('|', patient_key, cast(changed_at as string)), 256)  as patient_sk,
    patient_key,
    version_number,
    gender,
    birth_year,
    is_age_90_plus,
    zip3,
    state,
    country,
    is_deceased,
    deceased_date,
    race,
    ethnicity,
    marital_status,
    language,
    insurance,
    changed_at                                                          as source_valid_from,
    case when version_number = 1 then to_timestamp('{{ var("scd_low_date") }}')
         else changed_at end                                            as valid_from,
    coalesce(next_changed_at, to_timestamp('{{ var("scd_high_date") }}')) as valid_to,
    next_changed_at is null                                             as is_current
from versions
