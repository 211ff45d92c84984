-- Overlap between every pair of selections: rows in both, and the Jaccard index
-- |A and B| / |A or B|. One row per ordered pair (a selection with itself included).
WITH sizes AS (
    SELECT selection, count(*) AS n FROM selections GROUP BY selection
),
shared AS (
    SELECT a.selection AS a, b.selection AS b, count(*) AS shared
    FROM selections a JOIN selections b USING (id)
    GROUP BY a.selection, b.selection
)
SELECT sa.selection AS a, sb.selection AS b, coalesce(s.shared, 0) AS shared,
       round(coalesce(s.shared, 0) / (sa.n + sb.n - coalesce(s.shared, 0)), 4) AS jaccard
FROM sizes sa CROSS JOIN sizes sb
LEFT JOIN shared s ON s.a = sa.selection AND s.b = sb.selection
ORDER BY a, b;
