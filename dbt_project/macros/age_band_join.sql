{# Age band label from ref_age_bands for an age expression; Safe Harbor "90+" patients always get '90+'. #}
{% macro age_band_join(age_expr, is_90_plus_expr, alias='ab') -%}
    left join {{ ref('ref_age_bands') }} as {{ alias }}
      on case when {{ is_90_plus_expr }} then 90 else {{ age_expr }} end between {{ alias }}.min_age and {{ alias }}.max_age
{%- endmacro %}
