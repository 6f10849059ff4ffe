{{ config(unique_key='observation_key') }}

-- Values are in the canonical UCUM unit chosen by Silver (value_num/unit). The abnormal flag is Silver's
-- (HL7 interpretation) or, when absent, derived from the reference range.
select
    o.observation_key,
    o.patient_key,
    pv.patient_sk,
    o.encounter_key,
    case when o.loinc_code is not null then {{ code_key("'http://loinc.org'", 'o.loinc_code') }}
         else {{ code_key('o.code_system_original', 'o.code_original') }} end   as code_key,
    o.loinc_code,
    o.display,
    o.category,
    o.value_num,
    o.unit,
    o.is_unit_known,
    o.value_text,
    o.value_code,
    o.ref_low,
    o.ref_high,
    coalesce(
        o.abnormal_flag,
        case when o.value_num < o.ref_low then 'L'
             when o.value_num > o.ref_high then 'H'
             when o.value_num is not null and (o.ref_low is not null or o.ref_high is not null) then 'N' end
    )                                                          as abnormal_flag,
    coalesce(o.abnormal_flag not in ('N'), o.value_num < o.ref_low or o.value_num > o.ref_high, false)
                                                               as is_abnormal,
    o.observation_status,
    o.effective_at,
    {{ date_key('o.effective_at') }}                           as effective_date_key,
    o.silver_updated_at
from {{ ref('stg_observation') }} as o
{{ patient_version_join('o', 'o.effective_at') }}
