-- Encounters with class group, department, length of stay and the 30-day readmission flag.
-- An index admission is a discharged inpatient encounter; it is readmitted when the same patient has an
-- inpatient admission after the discharge and at most readmission_window_days later.
-- Every interval comes from Silver's offsets (seconds from the patient's first admission, computed from the true
-- times before de-identification), never from subtracting published dates: the numbers are the same under
-- expert_determination (shifted dates) and safe_harbor (dates reduced to the year). Days are computed as DOUBLE:
-- Sail truncates a BIGINT / DECIMAL division (4.1666 for 4 days 4 hours) where a double rounds to 4.1667.
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
    select patient_key, encounter_key, admitted_at, admit_offset_seconds
    from encounters
    where encounter_class_group = 'inpatient' and admit_offset_seconds is not null
),

index_admissions as (
    select *
    from encounters
    where encounter_class_group = 'inpatient'
      and discharge_offset_seconds is not null
      and admit_offset_seconds is not null
      and discharge_offset_seconds >= admit_offset_seconds
),

next_admission as (
    select
        encounter_key,
        next_admit_offset_seconds,
        next_inpatient_admitted_at
    from (
        select
            i.encounter_key,
            a.admit_offset_seconds                       as next_admit_offset_seconds,
            a.admitted_at                                as next_inpatient_admitted_at,
            row_number() over (partition by i.encounter_key
                               order by a.admit_offset_seconds, a.encounter_key) as rn
        from index_admissions as i
        join inpatient_admissions as a
          on  a.patient_key = i.patient_key
          and a.encounter_key <> i.encounter_key
          and a.admit_offset_seconds > i.discharge_offset_seconds
    ) as ranked
    where rn = 1
)

select
    e.*,
    case when e.discharge_offset_seconds >= e.admit_offset_seconds
         then round(cast(e.discharge_offset_seconds - e.admit_offset_seconds as double) / 86400.0, 4) end
                                                        as length_of_stay_days,
    i.encounter_key is not null                         as is_index_admission,
    n.next_inpatient_admitted_at,
    round(cast(n.next_admit_offset_seconds - e.discharge_offset_seconds as double) / 86400.0, 4)
                                                        as days_to_next_admission,
    coalesce(
        i.encounter_key is not null
        and n.next_admit_offset_seconds - e.discharge_offset_seconds
            <= {{ var('readmission_window_days') }} * 86400,
        false)                                          as readmitted_within_30d
from encounters as e
left join index_admissions as i on i.encounter_key = e.encounter_key
left join next_admission as n on n.encounter_key = e.encounter_key
