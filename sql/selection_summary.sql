-- One line per selection: its method, budget and size, how it spreads over the pool's
-- sources, and what it cost to build.
WITH by_source AS (
    SELECT s.selection, p.source, count(*) AS n
    FROM selections s JOIN pool p USING (id)
    GROUP BY s.selection, p.source
)
SELECT b.selection,
       json_extract_string(m.manifest, '$.method') AS method,
       json_extract_string(m.manifest, '$.budget.requested') AS budget,
       sum(b.n) AS rows,
       string_agg(b.source || ': ' || b.n, ', ' ORDER BY b.n DESC, b.source) AS by_source,
       round(m.wall_seconds, 2) AS seconds
FROM by_source b
LEFT JOIN manifests m ON m."table" = 'selections/' || b.selection
GROUP BY b.selection, m.manifest, m.wall_seconds
ORDER BY b.selection;
