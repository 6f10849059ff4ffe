-- A month/department cannot have more 30-day readmissions than index discharges, and the rate must match.
select *
from {{ ref('mart_readmission_30d') }}
where readmissions_30d > index_discharges
   or readmissions_30d < 0
   or abs(readmission_rate - readmissions_30d / index_discharges) > 0.0001
