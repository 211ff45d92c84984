-- Ranking for `method: bottom_k`: lowest score first; ties in a seeded random order.
-- Rows without a score are not candidates. Reads `candidates`; binds $seed.
SELECT id, source, cluster,
       row_number() OVER (ORDER BY score ASC, md5(concat($seed::VARCHAR, ':', id)), id) AS position
FROM candidates
WHERE score IS NOT NULL AND NOT isnan(score)
