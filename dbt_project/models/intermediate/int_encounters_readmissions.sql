-- Encounters with class group, department, length of stay and the 30-day readmission flag.
-- An index admission is a discharged inpatient encounter; it is readmitted when the same patient has an
-- inpatient admission after the discharge and at most readmission_window_days later.
-- Time differences use epoch seconds (Sail computes RANGE/INTERVAL frames over DATE wrongly).
with encounters as (
    select
        e.*,
        coalesce(c.encounter_class_group, 'other')     as encounter_class_group,
        {{ department_key('e.department_name') }}     as department_key
    from {{ ref('stg_encounter') }} as e
    left join {{ ref('ref_encounter_classes') }} as c
      on lower(trim(e.encounter_class)) = c.encounter_class
),

inpatient_admissions as (
    select patient_key, encounter_key, admitted_at
    from encounters
    where encounter_class_group = 'inpatient' and admitted_at is not null
),

index_admissions as (
    select *
    from encounters
    where encounter_class_group = 'inpatient'
      and discharged_at is not null
      and admitted_at is not null
      and discharged_at >= admitted_at
),

next_admission as (
    select
        i.encounter_key,
        min(a.admitted_at) as next_inpatient_admitted_at
    from index_admissions as i
    join inpatient_admissions as a
      on  a.patient_key = i.patient_key
      and a.encounter_key <> i.encounter_key
      and a.admitted_at > i.discharged_at
    group by i.encounter_key
)

select
    e.*,
    case when e.discharged_at >= e.admitted_at
         then round({{ seconds_between('e.admitted_at', 'e.discharged_at') }} / 86400.0, 4) end
                                                        as length_of_stay_days,
    i.encounter_key is not null                         as is_index_admission,
    n.next_inpatient_admitted_at,
    round({{ seconds_between('e.discharged_at', 'n.next_inpatient_admitted_at') }} / 86400.0, 4)
                                                        as days_to_next_admission,
    coalesce(
        i.encounter_key is not null
        and {{ seconds_between('e.discharged_at', 'n.next_inpatient_admitted_at') }}
            <= {{ var('readmission_window_days') }} * 86400,
        false)                                          as readmitted_within_30d
from encounters as e
left join index_admissions as i on i.encounter_key = e.encounter_key
left join next_admission as n on n.encounter_key = e.encounter_key
