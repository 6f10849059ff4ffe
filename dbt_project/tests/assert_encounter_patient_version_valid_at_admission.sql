-- The patient version a fact points to must be valid at the fact's admission time.
select f.encounter_key
from {{ ref('fct_encounter') }} as f
join {{ ref('dim_patient') }} as p on p.patient_sk = f.patient_sk
where f.admitted_at is not null
  and not (f.admitted_at >= p.valid_from and f.admitted_at < p.valid_to)
