-- Ranking for `method: random`: candidates in the order of a seeded md5 of their id, which
-- is the same on every machine and DuckDB version. Reads `candidates`; binds $seed.
SELECT id, source, cluster,
       row_number() OVER (ORDER BY md5(concat($seed::VARCHAR, ':', id)), id) AS position
FROM candidates
