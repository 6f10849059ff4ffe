{{ config(unique_key='code_key') }}

-- One row per (code system, code). When Silver carries several displays or mappings for a code, the
-- lexicographically smallest non-null one wins, so the choice is stable across runs.
select
    c.code_key,
    min(c.code)                                          as code,
    min(c.code_system)                                   as code_system,
    coalesce(min(s.code_system_name), 'Unknown system')  as code_system_name,
    coalesce(min(s.is_standard), false)                  as is_standard,
    min(c.display)                                       as display,
    min(c.standard_code)                                 as standard_code,
    min(c.standard_system)                               as standard_system,
    min(c.domain)                                        as domain
from {{ ref('int_codes') }} as c
left join {{ ref('ref_code_systems') }} as s on s.code_system = c.code_system
group by c.code_key
