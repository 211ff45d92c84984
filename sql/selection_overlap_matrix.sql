-- The Jaccard index between every pair of selections, as a matrix (rows and columns sorted).
WITH sizes AS (
    SELECT selection, count(*) AS n FROM selections GROUP BY selection
),
shared AS (
    SELECT a.selection AS a, b.selection AS b, count(*) AS shared
    FROM selections a JOIN selections b USING (id)
    GROUP BY a.selection, b.selection
),
pairs AS (
    SELECT sa.selection AS selection, sb.selection AS other,
           round(coalesce(s.shared, 0) / (sa.n + sb.n - coalesce(s.shared, 0)), 3) AS jaccard
    FROM sizes sa CROSS JOIN sizes sb
    LEFT JOIN shared s ON s.a = sa.selection AND s.b = sb.selection
)
PIVOT pairs ON other USING first(jaccard) GROUP BY selection ORDER BY selection;
