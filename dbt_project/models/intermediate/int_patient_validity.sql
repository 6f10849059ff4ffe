-- Patient versions from the snapshot with closed validity ranges [valid_from, valid_to).
-- The first version of a patient is valid from the beginning of time: facts recorded before the first
-- known patient update still find a version.
with versions as (
    select
        s.*,
        row_number() over (partition by s.patient_key order by s.dbt_valid_from, s.dbt_scd_id) as version_number
    from {{ ref('snp_patient') }} as s
)

select
    dbt_scd_id                                                          as patient_sk,
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
    source_updated_at,
    dbt_valid_from                                                      as source_valid_from,
    case when version_number = 1 then to_timestamp('{{ var("scd_low_date") }}')
         else dbt_valid_from end                                        as valid_from,
    coalesce(dbt_valid_to, to_timestamp('{{ var("scd_high_date") }}'))  as valid_to,
    dbt_valid_to is null                                                as is_current
from versions
