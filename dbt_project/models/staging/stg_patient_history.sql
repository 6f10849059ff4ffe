-- One row per version of a de-identified patient (silver.patient_history). Renaming and casting only.
select
    cast(patient_key as string)                      as patient_key,
    -- the (de-identified) time of the change that opened the version
    cast(valid_from as timestamp)                    as changed_at,
    cast(gender as string)                           as gender,
    cast(birth_year as int)                          as birth_year,
    cast(coalesce(is_age_90_plus, false) as boolean) as is_age_90_plus,
    cast(zip3 as string)                             as zip3,
    cast(state as string)                            as state,
    cast(country as string)                          as country,
    cast(coalesce(deceased, false) as boolean)       as is_deceased,
    cast(deceased_date as date)                      as deceased_date,
    cast(race as string)                             as race,
    cast(ethnicity as string)                        as ethnicity,
    cast(marital_status as string)                   as marital_status,
    cast(language as string)                         as language,
    cast(insurance as string)                        as insurance,
    cast(silver_updated_at as timestamp)             as silver_updated_at
from {{ source('silver', 'patient_history') }}
