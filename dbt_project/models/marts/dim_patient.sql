{{ config(unique_key='patient_sk') }}

select
    pv.patient_sk,
    pv.patient_key,
    pv.version_number,
    pv.gender,
    pv.birth_year,
    pv.is_age_90_plus,
    -- age band when the source recorded the change that opened this version (stable: does not drift with the run date)
    coalesce(ab.age_band, 'unknown')     as age_band,
    pv.zip3,
    pv.state,
    pv.country,
    pv.is_deceased,
    pv.deceased_date,
    pv.insurance,
    pv.race,
    pv.ethnicity,
    pv.marital_status,
    pv.language,
    pv.source_valid_from                 as changed_at,
    pv.valid_from,
    pv.valid_to,
    pv.is_current
from {{ ref('int_patient_validity') }} as pv
{{ age_band_join('year(pv.source_valid_from) - pv.birth_year', 'pv.is_age_90_plus') }}
