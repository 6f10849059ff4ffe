select
    cast(imaging_series_key as string)     as imaging_series_key,
    cast(imaging_study_key as string)      as imaging_study_key,
    cast(patient_key as string)            as patient_key,
    cast(modality as string)               as modality,
    cast(body_site as string)              as body_site,
    cast(series_number as int)             as series_number,
    cast(instance_count as int)            as instance_count,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'imaging_series') }}
