-- Allocation `clusters_proportional`: each cluster's share of $budget is proportional to its
-- candidate rows (Sainte-Lague: the n-th row of a cluster of size s comes at (n - 0.5) / s),
-- best-ranked rows first inside each. Reads `ranked`.
WITH within AS (
    SELECT id, position,
           row_number() OVER (PARTITION BY cluster ORDER BY position) AS n,
           count(*) OVER (PARTITION BY cluster) AS size
    FROM ranked
)
SELECT id, row_number() OVER (ORDER BY (n - 0.5) / size, position)::INTEGER AS rank
FROM within
QUALIFY rank <= $budget
ORDER BY rank
