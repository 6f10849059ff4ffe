-- Every (code system, code) used anywhere in Silver, with its display and mapped standard code.
with occurrences as (
    select code_system, code, display, coalesce(icd10cm_code, snomed_code) as standard_code,
           case when icd10cm_code is not null then 'http://hl7.org/fhir/sid/icd-10-cm'
                when snomed_code is not null then 'http://snomed.info/sct' end as standard_system,
           'condition' as domain
    from {{ ref('stg_condition') }}
    union all
    select code_system_original, code_original, display, loinc_code, 'http://loinc.org', 'observation'
    from {{ ref('stg_observation') }}
    union all
    select 'http://loinc.org', loinc_code, display, loinc_code, 'http://loinc.org', 'observation'
    from {{ ref('stg_observation') }}
    union all
    select code_system_original, code_original, display, rxnorm_code,
           'http://www.nlm.nih.gov/research/umls/rxnorm', 'medication'
    from {{ ref('stg_medication_request') }}
    union all
    select 'http://www.nlm.nih.gov/research/umls/rxnorm', rxnorm_code, display, rxnorm_code,
           'http://www.nlm.nih.gov/research/umls/rxnorm', 'medication'
    from {{ ref('stg_medication_request') }}
    union all
    select code_system, code, display, snomed_code, 'http://snomed.info/sct', 'procedure'
    from {{ ref('stg_procedure') }}
    union all
    select code_system, code, display, cast(null as string), cast(null as string), 'diagnostic_report'
    from {{ ref('stg_diagnostic_report') }}
    union all
    select type_system, type_code, type_display, cast(null as string), cast(null as string), 'encounter_type'
    from {{ ref('stg_encounter') }}
    union all
    select code_system, code, display, cast(null as string), cast(null as string), 'allergy'
    from {{ ref('stg_allergy') }}
    union all
    select 'http://hl7.org/fhir/sid/cvx', cvx_code, display, cvx_code, 'http://hl7.org/fhir/sid/cvx', 'immunization'
    from {{ ref('stg_immunization') }}
)

select
    {{ code_key('code_system', 'code') }}  as code_key,
    code,
    code_system,
    display,
    standard_code,
    standard_system,
    domain
from occurrences
where code is not null
