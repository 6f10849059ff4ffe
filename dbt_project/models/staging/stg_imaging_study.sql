select
    cast(imaging_study_key as string)      as imaging_study_key,
    cast(patient_key as string)            as patient_key,
    cast(encounter_key as string)          as encounter_key,
    -- sorted and joined so the column compares by value (MERGE change detection) and reads well in BI tools
    array_join(array_sort(modalities), ',') as modalities,
    cast(started_at as timestamp)          as started_at,
    cast(series_count as int)              as series_count,
    cast(instance_count as int)            as instance_count,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'imaging_study') }}
