-- header_json is left in Silver: Gold exposes the structured columns only.
select
    cast(imaging_instance_key as string)   as imaging_instance_key,
    cast(imaging_series_key as string)     as imaging_series_key,
    cast(imaging_study_key as string)      as imaging_study_key,
    cast(patient_key as string)            as patient_key,
    cast(sop_class_uid as string)          as sop_class_uid,
    cast(instance_number as int)           as instance_number,
    cast(`rows` as int)                    as pixel_rows,
    cast(`columns` as int)                 as pixel_columns,
    cast(number_of_frames as int)          as number_of_frames,
    cast(transfer_syntax_uid as string)    as transfer_syntax_uid,
    cast(silver_updated_at as timestamp)   as silver_updated_at
from {{ source('silver', 'imaging_instance') }}
