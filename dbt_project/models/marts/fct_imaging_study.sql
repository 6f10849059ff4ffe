{{ config(unique_key='imaging_study_key') }}

select
    s.imaging_study_key,
    s.patient_key,
    pv.patient_sk,
    s.encounter_key,
    s.modalities,
    s.started_at,
    {{ date_key('s.started_at') }}                             as started_date_key,
    s.series_count,
    s.instance_count,
    s.silver_updated_at
from {{ ref('stg_imaging_study') }} as s
{{ patient_version_join('s', 's.started_at') }}
