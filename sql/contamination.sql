-- Pool rows that contain a benchmark question (scores/contamination), by source and benchmark:
-- rows flagged, how many by an exact match of the whole normalised question, the mean overlap
-- (the question's n-grams found in the row), and a few flagged ids.
SELECT
    p.source,
    c.benchmark,
    count(*) AS rows,
    count(*) FILTER (WHERE c.match = 'exact') AS exact,
    round(avg(c.overlap), 3) AS mean_overlap,
    list(c.id ORDER BY c.overlap DESC, c.id)[1:3] AS example_ids
FROM scores_contamination AS c
JOIN pool AS p USING (id)
WHERE c.contaminated
GROUP BY p.source, c.benchmark
ORDER BY rows DESC, p.source, c.benchmark;
