-- Allocation `clusters_equal` (the km- variants): equal shares of $budget for every cluster,
-- best-ranked rows first inside each. Taking the 1st row of every cluster, then the 2nd,
-- and so on, gives a small cluster's unused share to the others; the last round goes to
-- the best-ranked rows. Reads `ranked`.
WITH within AS (
    SELECT id, position, row_number() OVER (PARTITION BY cluster ORDER BY position) AS n
    FROM ranked
)
SELECT id, row_number() OVER (ORDER BY n, position)::INTEGER AS rank
FROM within
QUALIFY rank <= $budget
ORDER BY rank
