-- Allocation `source_quotas`: the first $quota_rows[i] rows of the ranking from source
-- $quota_sources[i]; other sources give none. Reads `ranked`.
WITH quotas AS (
    SELECT unnest($quota_sources::VARCHAR[]) AS source, unnest($quota_rows::BIGINT[]) AS quota
),
within AS (
    SELECT r.id, r.position, q.quota,
           row_number() OVER (PARTITION BY r.source ORDER BY r.position) AS n
    FROM ranked r JOIN quotas q USING (source)
)
SELECT id, row_number() OVER (ORDER BY position)::INTEGER AS rank
FROM within
WHERE n <= quota
ORDER BY rank
