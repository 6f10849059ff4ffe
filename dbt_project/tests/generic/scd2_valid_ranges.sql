{#
  SCD2 rule for a versioned dimension: every entity has exactly one current row, every range is non-empty
  (valid_from < valid_to), ranges of an entity do not overlap, and the current row is the latest one.
  Returns one row per violation (entity, reason). Overlaps are found between neighbours in valid_from order:
  if any two ranges overlap, some pair of neighbours does, so no self-join is needed.
#}
{% test scd2_valid_ranges(model, entity_column, valid_from='valid_from', valid_to='valid_to', is_current='is_current') %}

with ranges as (
    select
        {{ entity_column }} as entity,
        {{ valid_from }}    as range_from,
        {{ valid_to }}      as range_to,
        {{ is_current }}    as range_is_current,
        lead({{ valid_from }}) over (
            partition by {{ entity_column }} order by {{ valid_from }}, {{ valid_to }}
        )                   as next_from
    from {{ model }}
),

current_rows as (
    select
        entity,
        'has ' || cast(sum(case when range_is_current then 1 else 0 end) as string) || ' current rows' as reason
    from ranges
    group by entity
    having sum(case when range_is_current then 1 else 0 end) <> 1
),

empty_ranges as (
    select entity, 'empty or inverted range starting ' || cast(range_from as string) as reason
    from ranges
    where range_from is null or range_to is null or range_from >= range_to
),

overlaps as (
    select entity, 'range starting ' || cast(range_from as string) || ' overlaps the next one' as reason
    from ranges
    where next_from < range_to
),

current_not_latest as (
    select entity, 'current row is not the latest version' as reason
    from ranges
    where range_is_current and next_from is not null
)

select * from current_rows
union all select * from empty_ranges
union all select * from overlaps
union all select * from current_not_latest

{% endtest %}
