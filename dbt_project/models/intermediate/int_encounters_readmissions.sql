-- Encounters with class group, department, length of stay and THE 30-day readmission definition: the one the
-- mart_readmission_30d rates and the ML label (gold.features_readmission reads readmitted_within_30d from
-- gold.fct_encounter) both use. Following the CMS hospital-wide readmission measure as far as the data allow:
--
-- * A stay is a real inpatient encounter: class group inpatient, status not cancelled, entered-in-error or planned
--   (a pre-admission that never happened), with an admission time.
-- * Transfer chains are one episode: a stay discharged as a transfer to acute care (ref_discharge_dispositions)
--   and followed by the patient's next stay within 24 h, or overlapped by it, continues into that stay; the
--   earlier stay is no index ('transferred_within_episode') and the later one is no readmission (transfer in).
-- * An index admission is a discharged stay (discharge >= admission) that was not a death in hospital, a
--   discharge against medical advice, a transfer out to another acute care hospital or continued in a chain;
--   index_exclusion_reason says which rule left a stay out.
-- * The readmission is the patient's first stay admitted after the index discharge that is not a transfer in.
--   Within readmission_window_days it counts unless it is planned: admission type elective or routine
--   (ref_admission_types; HL7 PV1-4, FHIR Encounter.priority) or a reason that is always planned
--   (ref_planned_readmission_reasons: chemotherapy, radiotherapy, rehabilitation, transplant, obstetrics).
--   Simplified from CMS: no procedure-category lists and no "acute diagnosis overrides planned" rule, because
--   Silver does not link procedures to the admission's principal diagnosis. As in CMS, a planned first
--   readmission means the index stay is not readmitted, whatever follows.
-- * Censoring: an index stay with no readmission and less than 30 days of data after its discharge (Silver's
--   has_30_day_follow_up, judged on the true times) has readmitted_within_30d NULL and is_censored true: not
--   "not readmitted". A NULL flag (a Silver built before it existed) counts as followed up.
--
-- Every interval comes from Silver's offsets (seconds from the patient's first admission, computed from the true
-- times before de-identification), never from subtracting published dates: the numbers are the same under
-- expert_determination (shifted dates) and safe_harbor (dates reduced to the year). Days are computed as DOUBLE:
-- Sail truncates a BIGINT / DECIMAL division (4.1666 for 4 days 4 hours) where a double rounds to 4.1667.
with encounters as (
    select
        e.*,
        coalesce(c.encounter_class_group, 'other')     as encounter_class_group,
        {{ department_key('e.department_name') }}     as department_key,
        case when trim(e.discharge_disposition) <> ''
             then coalesce(d.disposition_category, 'other') end as discharge_disposition_category,
        coalesce(t.is_planned, false)                  as is_planned_admission_type
    from {{ ref('stg_encounter') }} as e
    left join {{ ref('ref_encounter_classes') }} as c
      on lower(trim(e.encounter_class)) = c.encounter_class
    left join {{ ref('ref_discharge_dispositions') }} as d
      on lower(trim(e.discharge_disposition)) = lower(d.discharge_disposition)
    left join {{ ref('ref_admission_types') }} as t
      on upper(trim(e.admission_type)) = upper(t.admission_type)
),

planned_reasons as (
    select distinct e.encounter_key
    from encounters as e
    join {{ ref('ref_planned_readmission_reasons') }} as r
      on replace(upper(trim(e.reason_code)), '.', '')
         like concat(replace(upper(trim(r.reason_code_prefix)), '.', ''), '%')
),

stays as (
    select
        e.encounter_key,
        e.patient_key,
        e.admitted_at,
        e.admit_offset_seconds,
        e.discharge_offset_seconds,
        e.discharge_disposition_category,
        e.is_planned_admission_type or p.encounter_key is not null as is_planned_admission
    from encounters as e
    left join planned_reasons as p on p.encounter_key = e.encounter_key
    where e.encounter_class_group = 'inpatient'
      and coalesce(lower(trim(e.encounter_status)), '') not in ('cancelled', 'entered-in-error', 'planned')
      and e.admit_offset_seconds is not null
),

ordered as (
    select
        s.*,
        lead(s.admit_offset_seconds) over (partition by s.patient_key
                                           order by s.admit_offset_seconds, s.encounter_key) as next_admit_offset
    from stays as s
),

chained as (
    select
        o.*,
        o.discharge_offset_seconds is not null
          and o.next_admit_offset is not null
          and (o.next_admit_offset <= o.discharge_offset_seconds
               or (o.discharge_disposition_category = 'transfer_acute'
                   and o.next_admit_offset - o.discharge_offset_seconds <= 86400))  as continues_in_transfer
    from ordered as o
),

transfer_flags as (
    select
        c.*,
        coalesce(lag(c.continues_in_transfer) over (partition by c.patient_key
                                                    order by c.admit_offset_seconds, c.encounter_key), false)
                                                       as is_transfer_in
    from chained as c
),

classified as (
    select
        f.*,
        case
            when f.discharge_offset_seconds is null
              or f.discharge_disposition_category = 'still_patient'      then 'not_discharged'
            when f.discharge_offset_seconds < f.admit_offset_seconds     then 'discharge_before_admission'
            when f.continues_in_transfer                                 then 'transferred_within_episode'
            when f.discharge_disposition_category = 'died'               then 'died_in_hospital'
            when f.discharge_disposition_category = 'against_advice'     then 'left_against_medical_advice'
            when f.discharge_disposition_category = 'transfer_acute'     then 'transferred_out'
        end                                                              as index_exclusion_reason
    from transfer_flags as f
),

next_admission as (
    select
        encounter_key,
        next_admit_offset_seconds,
        next_inpatient_admitted_at,
        is_next_admission_planned
    from (
        select
            i.encounter_key,
            a.admit_offset_seconds                       as next_admit_offset_seconds,
            a.admitted_at                                as next_inpatient_admitted_at,
            a.is_planned_admission                       as is_next_admission_planned,
            row_number() over (partition by i.encounter_key
                               order by a.admit_offset_seconds, a.encounter_key) as rn
        from classified as i
        join classified as a
          on  a.patient_key = i.patient_key
          and a.encounter_key <> i.encounter_key
          and not a.is_transfer_in
          and a.admit_offset_seconds > i.discharge_offset_seconds
        where i.index_exclusion_reason is null
    ) as ranked
    where rn = 1
),

outcomes as (
    select
        s.encounter_key,
        s.is_planned_admission,
        s.index_exclusion_reason,
        s.index_exclusion_reason is null                 as is_index_admission,
        n.next_inpatient_admitted_at,
        n.next_admit_offset_seconds,
        n.is_next_admission_planned,
        n.next_admit_offset_seconds - s.discharge_offset_seconds
            <= {{ var('readmission_window_days') }} * 86400 as has_admission_in_window
    from classified as s
    left join next_admission as n on n.encounter_key = s.encounter_key
)

select
    e.*,
    case when e.discharge_offset_seconds >= e.admit_offset_seconds
         then round(cast(e.discharge_offset_seconds - e.admit_offset_seconds as double) / 86400.0, 4) end
                                                        as length_of_stay_days,
    coalesce(o.encounter_key is not null
             and e.discharge_offset_seconds >= e.admit_offset_seconds, false) as is_discharged_inpatient_stay,
    coalesce(o.is_planned_admission, false)             as is_planned_admission,
    case when o.encounter_key is null then 'not_an_inpatient_stay'
         else o.index_exclusion_reason end              as index_exclusion_reason,
    coalesce(o.is_index_admission, false)               as is_index_admission,
    o.next_inpatient_admitted_at,
    round(cast(o.next_admit_offset_seconds - e.discharge_offset_seconds as double) / 86400.0, 4)
                                                        as days_to_next_admission,
    case when o.has_admission_in_window then o.is_next_admission_planned end as is_next_admission_planned,
    case
        when not coalesce(o.is_index_admission, false)                        then false
        when o.has_admission_in_window                                        then not o.is_next_admission_planned
        when not coalesce(e.has_30_day_follow_up, true)                       then null
        else false
    end                                                 as readmitted_within_30d,
    coalesce(o.is_index_admission, false)
      and not coalesce(o.has_admission_in_window, false)
      and not coalesce(e.has_30_day_follow_up, true)    as is_censored
from encounters as e
left join outcomes as o on o.encounter_key = e.encounter_key
